// The TUN device, for real, inside a network namespace this test creates and removes.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { Tun } from '../src/tun/tun';
import { HANDOFF_YIELD_MAX_BATCH } from '../src/os/latency';

const NS = `mvtun-${process.pid}`;
const fixture = (name: string) => path.join(__dirname, 'fixtures', name);

function inNs(args: string[], timeout = 30000) {
  return spawnSync('ip', ['netns', 'exec', NS, process.execPath, ...args], { encoding: 'utf8', timeout });
}
const events = (stdout: string) => stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));

t.before(() => {
  execFileSync('ip', ['netns', 'add', NS]);
  execFileSync('ip', ['netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up']);
});
t.teardown(() => {
  spawnSync('ip', ['netns', 'del', NS]);
});

for (const gro of [false, true]) {
  const what = gro ? ' (GRO: a virtio_net_hdr on every read and write)' : '';
  t.test(`ping routed into a TUN is answered from JavaScript; close removes the interface; the process exits${what}`, async (t) => {
    const r = inNs([fixture('tun-echo.js'), ...(gro ? ['gro'] : [])]);
    t.equal(r.status, 0, `fixture exits 0 by itself (stderr: ${r.stderr})`);
    const ev = events(r.stdout);
    t.same(ev[0], { event: 'opened', name: 'mvtest0', gro }, 'the real interface name is returned');
    const busy = ev.find((e) => e.event === 'second-open');
    t.equal(busy?.code, 'EBUSY', 'opening a name in use fails with EBUSY');
    t.match(busy?.message ?? '', /in use by another device or process/);
    const ping = ev.find((e) => e.event === 'ping');
    t.equal(ping?.code, 0, `ping succeeded: ${ping?.summary}`);
    t.equal(ping?.requests, 3, 'three echo requests read from the TUN');
    t.equal(ping?.coalesced, 0, 'nothing merged: ICMP is written as it is');
    t.equal(ping?.handoffYields, 3, 'each reply written from a batch of one is a hand-off: one yield per ping');
    t.ok(ev.filter((e) => e.event === 'echo-request').every((e) => e.len === 84 && e.written), 'replies written');
    t.same(ev.find((e) => e.event === 'closed'), { event: 'closed', interfaceRemoved: true });
    t.equal(ev[ev.length - 1].event, 'exit', 'nothing kept the event loop alive after close');
  });
}

t.test('what the kernel answers within a TUN write is read at the end of a small batch, in the same call', async (t) => {
  const r = inNs([fixture('tun-answer.js')]);
  t.equal(r.status, 0, `fixture exits 0 (stderr: ${r.stderr})`);
  const ev = events(r.stdout);
  const small = ev.find((e) => e.event === 'small');
  t.same(small?.replies, [{ seq: 1, inEndBatch: true }], 'a batch of one: the echo reply reached the TUN callback inside endBatch');
  t.equal(small?.returned, false, 'and endBatch returns what the callback returned (false: only packets)');
  t.equal(ev.find((e) => e.event === 'slow')?.returned, true, 'a callback that did more says so through endBatch');
  const full = ev.find((e) => e.event === 'full');
  t.equal(full?.during, 0, 'a fuller batch (bulk traffic): no read in endBatch');
  t.same(full?.replies, [{ seq: 3, inEndBatch: false }], 'its reply came through the event loop');
  const none = ev.find((e) => e.event === 'unanswered');
  t.equal(none?.returned, false, 'nothing answered: the read finds nothing');
  t.same(none?.replies, [], 'and nothing arrives later either');
  t.same(ev.find((e) => e.event === 'counted')?.counted, [
    { replies: HANDOFF_YIELD_MAX_BATCH - 1, yields: 1 },
    { replies: HANDOFF_YIELD_MAX_BATCH, yields: 0 },
  ], 'replies read in endBatch count towards the UDP callback\'s batch: past the limit, the send does not yield');
});

t.test('GRO merges only in-order segments of one TCP connection with right checksums', async (t) => {
  const r = inNs([fixture('tun-gro.js')]);
  t.equal(r.status, 0, `fixture exits 0 (stderr: ${r.stderr})`);
  const m = JSON.parse(r.stdout.trim());
  t.equal(m.gro, true, 'the kernel took the merged writes');
  // [packets written, segments merged into an earlier one]
  t.same(m.inOrder, [3, 2], 'three in-order segments: one write');
  t.same(m.shortLast, [3, 2], 'a shorter last segment still joins');
  t.same(m.afterShort, [2, 0], 'nothing joins after a short segment');
  t.same(m.badChecksum, [3, 0], 'a segment with a wrong checksum is not merged (the kernel drops it alone)');
  t.same(m.badFirst, [2, 0], 'nor is one with a wrong checksum at the start');
  t.same(m.gap, [2, 0], 'a gap in the sequence numbers stops a merge');
  t.same(m.otherFlow, [2, 0], 'another connection is not merged');
  t.same(m.syn, [2, 0], 'a SYN is not merged');
  t.same(m.fin, [2, 0], 'a FIN is not merged');
  t.same(m.inOrder6, [3, 2], 'IPv6: three in-order segments, one write (TCPV6)');
  t.same(m.badChecksum6, [3, 0], 'IPv6: a wrong checksum is not merged');
  t.same(m.otherFlow6, [2, 0], 'IPv6: another connection is not merged');
  t.same(m.hopLimit6, [2, 0], 'IPv6: another hop limit is not merged');
  t.same(m.families, [2, 0], 'an IPv4 and an IPv6 segment are not merged');
});

t.test('a worker thread that ends with a live reader does not abort the process', async (t) => {
  for (const mode of ['terminate', 'exit']) {
    const r = inNs([fixture('tun-worker.js'), mode]);
    t.equal(r.status, 0, `${mode}: process exits 0 (signal ${r.signal}, stderr ${r.stderr.slice(0, 300)})`);
    const ev = events(r.stdout);
    t.ok(ev.some((e) => e.event === 'worker-exit'), `${mode}: worker ended`);
    t.ok(ev.some((e) => e.event === 'reopened'), `${mode}: the name is free again (fd closed by the cleanup hook)`);
  }
});

t.test('errors carry the errno code and say what to do', async (t) => {
  t.throws(() => Tun.open({ name: 'this-name-is-too-long-for-linux' }), { code: 'EINVAL', message: /at most 15 characters/ });
  // Without privileges: same binary, run as nobody.
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e',
    `try { require(${JSON.stringify(path.join(__dirname, '..', 'src', 'tun', 'tun.js'))}).Tun.open({name:'x'}) } catch (e) { console.log(JSON.stringify({code: e.code, message: e.message})) }`], { encoding: 'utf8' });
  const e = JSON.parse(r.stdout.trim());
  t.match(e.code, /^(EACCES|EPERM)$/);
  t.match(e.message, /run as root or give the process CAP_NET_ADMIN/);
});

t.test('a TAP device carries Ethernet frames: the kernel ARPs through it; GRO looks past the Ethernet header', async (t) => {
  const r = inNs([fixture('tap-frames.js')]);
  t.equal(r.status, 0, `fixture exits 0 (stderr: ${r.stderr})`);
  const ev = events(r.stdout);
  const opened = ev.find((e) => e.event === 'opened');
  t.equal(opened?.kind, 'tap', 'ip -d link says: tun type tap');
  const arp = ev.find((e) => e.event === 'arp');
  t.same([arp?.dst, arp?.src, arp?.target], ['ff:ff:ff:ff:ff:ff', opened?.mac, '10.78.1.2'], "the kernel's ARP request, read whole: broadcast, from the TAP's MAC, for the neighbour");
  const gro = ev.find((e) => e.event === 'gro');
  t.same(gro?.inOrder, [3, 2], 'three segments of one flow behind one Ethernet header: one write');
  t.same(gro?.otherMac, [2, 0], 'another source MAC: not merged');
  t.same(gro?.typeMismatch, [2, 0], 'IPv4 packets behind an IPv6 EtherType: not merged');
  t.same(gro?.ipv6, [3, 2], 'three IPv6 segments of one flow behind one Ethernet header: one write');
});

t.test('TUNs from a template share one read batch; each answers its own link; closing one leaves the others', async (t) => {
  const r = inNs([fixture('tun-shared.js')]);
  t.equal(r.status, 0, `fixture exits 0 (stderr: ${r.stderr})`);
  const ev = events(r.stdout);
  const opened = ev.find((e) => e.event === 'opened');
  t.same(opened?.names, ['mvsh0', 'mvsh1', 'mvsh2'], 'the kernel numbers the template');
  t.equal(opened?.shared, true, 'one read batch for all of them');
  const pinged = ev.find((e) => e.event === 'pinged');
  t.same(pinged?.codes, [0, 0, 0], 'every link answered its pings');
  t.same(pinged?.seen, [['10.78.0.2', '10.78.0.2'], ['10.78.0.3', '10.78.0.3'], ['10.78.0.4', '10.78.0.4']], 'each device read only its own peer\'s packets');
  t.same(ev.find((e) => e.event === 'one-closed'), { event: 'one-closed', interfaceRemoved: true, others: [0, 0] }, 'closing one removes its interface; the others still answer');
  t.equal(ev[ev.length - 1].event, 'exit', 'nothing kept the event loop alive after close');
});
