// Admission under attack (issue "Hardening", points 1-5): a real server in the lab, flooded by
// src/tools/flood.ts (one address, many ports) and by tcpreplay (spoofed sources), and what
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

/** Spawn to "tunnel up", in ms. */
async function timeToUp(lab: Lab, f: VpnFixture, i: number, name: string): Promise<{ ms: number; proc: ChildProcess }> {
  const t0 = Date.now();
  const proc = spawnClient(lab, f, i, name);
  await lab.waitForLine(proc, /tunnel up: /, 30_000);
  return { ms: Date.now() - t0, proc };
}

interface PingResult { sent: number; received: number; lossPct: number }

/**
 * Pings the server's tunnel address from `host` every 50 ms, `count` times. Resolves once the
 * first reply is in (the tunnel carries traffic), with `done` for the end result.
 */
async function startPing(lab: Lab, host: string, count: number): Promise<{ done: Promise<PingResult> }> {
  const p = lab.spawn(host, ['ping', '-n', '-i', '0.05', '-c', String(count), '-W', '2', '10.8.0.1']);
  await lab.waitForLine(p, /bytes from 10\.8\.0\.1/, 10_000);
  const done = exited(p, count * 50 + 30_000).then(() => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(lab.output(p));
    if (!m) throw new Error(`no ping summary: ${lab.output(p).slice(-500)}`);
    const sent = Number(m[1]), received = Number(m[2]);
    return { sent, received, lossPct: (100 * (sent - received)) / sent };
  });
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

/** tcpreplay of `file` at top speed for `seconds`, from inet into the server's cable; the rate reached. */
async function replay(lab: Lab, file: string, seconds: number): Promise<{ pps: number; packets: number }> {
  const r = await lab.exec('inet', ['tcpreplay', '-q', '-i', 'to-server', '--topspeed', '--preload-pcap', '--loop', '100000',
    '--duration', String(seconds), file], { timeoutMs: seconds * 1000 + 60_000 });
  const out = r.stdout + r.stderr;
  const pps = /Rated:.*?([\d.]+) pps/.exec(out), n = /Successful packets:\s+(\d+)/.exec(out);
  if (r.code !== 0 || !pps || !n) throw new Error(`tcpreplay failed (exit ${r.code}): ${out}`);
  return { pps: Math.round(Number(pps[1])), packets: Number(n[1]) };
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
    t.ok(rss < 200, `server RSS stays under 200 MiB (${rss.toFixed(1)} MiB)`);
    alice.proc.kill('SIGTERM');
    await exited(alice.proc, 10_000);
    server.kill('SIGTERM');
    t.equal(await exited(server, 10_000), 0, 'the server exits 0');
  });
});
