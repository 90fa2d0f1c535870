// The batched UDP socket (native/udp.cc through src/conn/udp.ts), on loopback: a batch sent
// with one sendmmsg arrives as the same datagrams, in order, with or without segmentation
// offload on the sending side (UDP_SEGMENT) and on the receiving side (UDP_GRO), and GSO falls
// back to plain sends where the route refuses it.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { SIZES } from './fixtures/udp-batch';

const FIXTURE = path.join(__dirname, 'fixtures', 'udp-batch.js');
const NS = `mvudp-${process.pid}`;

interface Result { sent: number; received: number; lens: number[]; intact: boolean; gso: string; callbacks: number }

function run(o: { gso: boolean; gro: boolean; host?: string; repeat?: number; ns?: string }): Result {
  const args = [FIXTURE, o.gso ? '1' : '0', o.gro ? '1' : '0', o.host ?? '127.0.0.1', String(o.repeat ?? 1)];
  const cmd = o.ns ? ['ip', ['netns', 'exec', o.ns, process.execPath, ...args]] as const : [process.execPath, args] as const;
  const r = spawnSync(cmd[0], [...cmd[1]], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`fixture exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Result;
}

t.test('without offload: every datagram of the batch arrives, intact and in order', async (t) => {
  const r = run({ gso: false, gro: false });
  t.equal(r.gso, 'off');
  t.equal(r.sent, SIZES.length, 'sendBatch reports every datagram taken');
  t.same(r.lens, SIZES, 'the receiver sees the same datagram sizes, in order');
  t.ok(r.intact, 'and the same bytes');
});

t.test('GSO to a plain receiver: the kernel cuts the runs back into the original datagrams', async (t) => {
  const r = run({ gso: true, gro: false });
  t.equal(r.gso, 'on', 'loopback takes segmentation offload');
  t.equal(r.sent, SIZES.length, 'sendBatch counts datagrams, not runs');
  t.same(r.lens, SIZES, 'same sizes, in order');
  t.ok(r.intact, 'and the same bytes');
});

t.test('GSO to a GRO receiver: the runs arrive whole and are cut by the socket', async (t) => {
  const r = run({ gso: true, gro: true });
  t.same(r.lens, SIZES, 'same sizes, in order');
  t.ok(r.intact, 'and the same bytes');
});

t.test('GRO: more datagrams in one read than the batch holds go to JS in several batches', async (t) => {
  const r = run({ gso: true, gro: true, repeat: 3 });
  t.equal(r.received, 3 * SIZES.length, 'all of them');
  t.ok(r.intact, 'in order, intact');
  t.ok(r.callbacks >= 3, `at least 3 callbacks for ${3 * SIZES.length} datagrams in batches of 64 (got ${r.callbacks})`);
});

t.test('GSO and GRO over IPv6 (::1)', async (t) => {
  const r = run({ gso: true, gro: true, host: '::1' });
  t.equal(r.gso, 'on');
  t.same(r.lens, SIZES, 'every datagram, in order');
  t.ok(r.intact);
});

t.test('GSO from a dual-stack socket ([::]) to an IPv4 peer, as the server sends by default', async (t) => {
  const r = run({ gso: true, gro: true, host: 'dual' });
  t.equal(r.gso, 'on');
  t.equal(r.sent, SIZES.length);
  t.same(r.lens, SIZES, 'every datagram, in order');
  t.ok(r.intact);
});

t.test('GSO on a route that refuses it (MTU below the datagram size): plain sends, nothing lost', async (t) => {
  execFileSync('ip', ['netns', 'add', NS]);
  t.teardown(() => { spawnSync('ip', ['netns', 'del', NS]); });
  // Segments larger than the MTU make the kernel refuse the GSO send (EMSGSIZE); plain
  // datagrams that size are still sent, as IP fragments.
  execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'mtu', '1000', 'up']);
  const r = run({ gso: true, gro: true, ns: NS });
  t.equal(r.gso, 'refused by the route', 'the socket says why GSO is off');
  t.equal(r.sent, SIZES.length, 'every datagram was still sent');
  t.same(r.lens, SIZES, 'and arrived, in order');
  t.ok(r.intact);
});

t.test('a connect that fails closes its socket at once (a roaming client retries ten times a second)', async (t) => {
  const { UdpSocket } = await import('../src/conn/udp');
  const fds = () => fs.readdirSync('/proc/self/fd').length;
  const before = fds();
  let failed = 0;
  for (let k = 0; k < 20; k++) {
    try { UdpSocket.connect('192.0.2.256', 1194); } catch (err) { if (/bad address/.test((err as Error).message)) failed++; }
  }
  t.equal(failed, 20, 'a bad address fails each connect');
  t.equal(fds(), before, `open descriptors: ${before} before 20 failed connects, ${fds()} after`);
  const s = UdpSocket.connect('127.0.0.1', 1194);
  t.equal(fds(), before + 1, 'a connect that works keeps its socket');
  s.close();
  t.equal(fds(), before, 'until it is closed');
});
