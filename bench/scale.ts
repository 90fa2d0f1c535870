// npm run bench:scale: one minivpn server and many clients (default 1,000), in the namespace lab,
// once per topology: subnet (one shared TUN) and p2p (a TUN per session: 1,000 sessions are
// 1,000 TUN devices on the server), side by side in one report; then one client's throughput
// through each topology, in turns (bench/topology-throughput.ts).
//
// The server runs in the lab's server host as `npm run server` would (DTLS, a /21 pool).
// The clients are simulated by the load generator (src/loadgen/loadgen.ts), running as a
// worker process in the client1 host: real DTLS handshakes, hello, config, keepalives, but
// no TUN devices. A second worker holds one sample session that pings the server's tunnel
// address every 20 ms while the others connect. This driver measures the server process
// from outside (/proc/PID/status and /proc/PID/stat) and prints a markdown table.
//
//   npm run bench:scale -- [--clients 1000] [--concurrency 64] [--keepalive-sec 1]
//                          [--idle-sec 10] [--runs 20] [--pki DIR] [--json FILE]
//                          [--topology subnet|p2p|both] [--throughput-sec 5] [--throughput-rounds 4]
//
// (`--worker ...` is the mode the driver starts inside the lab; see runWorker.)
import { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { ADDR, Lab, uniquePrefix, withLab } from '../src/lab/topology';
import { median, parseWorkerArgs, RampResult, runWorker, WorkerHandle, PingStats } from '../src/loadgen/loadgen';
import { writeLabPki } from '../src/pki/pki';
import { readStatus } from '../src/server/status';
import type { ServerStatus } from '../src/server/server';
import { eachFlag } from './args';
import { compareThroughput, throughputTable, ThroughputResult } from './topology-throughput';

const SERVER_MAIN = path.resolve(__dirname, '..', 'src', 'server', 'main.js');
const SERVER_NAME = 'server.minivpn.test';
const SERVER_TUN_ADDR = '10.8.0.1';
const POOL = '10.8.0.0/21'; // 2045 client addresses
const TARGET_TUNNEL_UP_MS = 50;
const PING_INTERVAL_MS = 20;

/** The server's topologies (--topology); 'both' measures subnet, then p2p. */
type Topology = 'subnet' | 'p2p';
const TOPOLOGY_CHOICES = ['subnet', 'p2p', 'both'] as const;

interface Options {
  clients: number;
  topology: typeof TOPOLOGY_CHOICES[number];
  /** One client's iperf3 through each topology: seconds per run, rounds (0: none; needs both). */
  throughputSec: number;
  throughputRounds: number;
  concurrency: number;
  keepaliveSec: number;
  idleSec: number;
  runs: number;
  pki?: string;
  json?: string;
}

function say(line: string): void {
  process.stdout.write(`[scale] ${line}\n`);
}

function usage(): string {
  return 'usage: npm run bench:scale -- [--clients N (default 1000, max 2000)] [--concurrency N (64)] [--keepalive-sec S (1)] ' +
    '[--idle-sec S (10)] [--runs N (20)] [--pki DIR (reuse certificates)] [--json FILE] ' +
    '[--topology subnet|p2p|both (both)] [--throughput-sec S (5)] [--throughput-rounds N (4; 0: none)]';
}

export function parseArgs(argv: string[]): Options {
  const o: Options = { clients: 1000, topology: 'both', throughputSec: 5, throughputRounds: 4, concurrency: 64, keepaliveSec: 1, idleSec: 10, runs: 20 };
  eachFlag(argv, usage, (f) => {
    if (f.name === '--clients') o.clients = f.number(1, 2000);
    else if (f.name === '--concurrency') o.concurrency = f.number(1, 1024);
    else if (f.name === '--keepalive-sec') o.keepaliveSec = f.number(0.1, 3600, false);
    else if (f.name === '--idle-sec') o.idleSec = f.number(1, 600);
    else if (f.name === '--runs') o.runs = f.number(1, 1000);
    else if (f.name === '--pki') o.pki = path.resolve(f.value());
    else if (f.name === '--json') o.json = f.value();
    else if (f.name === '--topology') o.topology = topologyChoice(f.value());
    else if (f.name === '--throughput-sec') o.throughputSec = f.number(1, 60);
    else if (f.name === '--throughput-rounds') o.throughputRounds = f.number(0, 20);
    else return false;
    return true;
  });
  return o;
}

function topologyChoice(v: string): Options['topology'] {
  const c = TOPOLOGY_CHOICES.find((x) => x === v);
  if (!c) throw new Error(`bad --topology ${JSON.stringify(v)}: expected subnet, p2p or both\n${usage()}`);
  return c;
}

// ---- the server process, seen from outside --------------------------------------------

/** Resident set size in KiB (VmRSS in /proc/PID/status). */
function rssKiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]);
}

/**
 * The kernel's slab memory in KiB (Slab in /proc/meminfo): where a TUN device's structures
 * live, which the server's RSS does not show. Machine-wide: others' work moves it too.
 */
function slabKiB(): number {
  const m = /^Slab:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
  return m ? Number(m[1]) : NaN;
}

const CLK_TCK = 100; // USER_HZ on Linux
/** utime + stime in seconds (all threads). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
function machineJiffies(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - (f[4] ?? 0), total }; // minus idle and iowait
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * While fn runs: the CPU share of one core the process used (0.05 = 5 %), the same for a
 * second process (the generator), and how busy the whole machine was (0..1 of all CPUs).
 */
async function cpuDuring<T>(pid: number, fn: () => Promise<T>, otherPid?: number): Promise<{ cpu: number; otherCpu: number; machineBusy: number; seconds: number; result: T }> {
  const c0 = cpuSeconds(pid), o0 = otherPid ? cpuSeconds(otherPid) : 0, m0 = machineJiffies(), t0 = performance.now();
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const m1 = machineJiffies();
  return {
    cpu: (cpuSeconds(pid) - c0) / seconds,
    otherCpu: otherPid ? (cpuSeconds(otherPid) - o0) / seconds : NaN,
    machineBusy: (m1.busy - m0.busy) / Math.max(1, m1.total - m0.total),
    seconds, result,
  };
}

// ---- the run ---------------------------------------------------------------------------

function cnOf(i: number): string {
  return `load${String(i).padStart(4, '0')}`;
}

export interface ScaleResult {
  topology: Topology;
  clients: number;
  /** TUN devices in the server's host with every session up (subnet: 1; p2p: one per session). */
  tunDevices: number;
  pkiSeconds: number;
  ramp: RampResult;
  rampServerCpuMsPerHandshake: number;
  rampGeneratorCpuMsPerHandshake: number;
  rampServerCpu: number;
  rampMachineBusy: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  kibPerSession: number;
  /** Growth of the kernel's slab memory per session during ramp-up (machine-wide). */
  slabKibPerSession: number;
  idleBaselineCpu: number;
  idleCpu: number;
  /** Keepalive exchanges (KEEPALIVE + KEEPALIVE_REPLY, whichever side started) per second. */
  keepalivesPerSec: number;
  serverCpuUsPerKeepalive: number;
  idleMachineBusy: number;
  statusClients: number;
  statusMaxLastSeenSec: number;
  ping: PingStats;
  tunnelUpIdleMs: number[];
  tunnelUpLoadedMs: number[];
}

/**
 * Starts a load generator worker (this file, --worker) in a lab host; the test uses it too.
 * The certificates in `pki` must be for `serverName` (SERVER_NAME by default).
 */
export function startWorker(lab: Lab, pki: string, opts: { host?: string; serverName?: string; clientKeepalives?: boolean } = {}): WorkerHandle {
  const child: ChildProcess = lab.spawn(opts.host ?? 'client1', [process.execPath, __filename, '--worker',
    '--pki', pki, '--server', `${ADDR.server}:1194`, '--server-name', opts.serverName ?? SERVER_NAME,
    ...(opts.clientKeepalives === false ? ['--no-client-keepalives'] : [])], { stdio: ['pipe', 'pipe', 'pipe'] });
  return new WorkerHandle(child);
}

export interface ScaleReport { results: ScaleResult[]; throughput: ThroughputResult | null }

async function run(o: Options): Promise<ScaleReport> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-scale-'));
  try {
    const pki = o.pki ?? path.join(tmp, 'pki');
    const cns = Array.from({ length: o.clients }, (_, i) => cnOf(i + 1));
    say(`issuing certificates for ${o.clients} + 3 clients in ${pki} ...`);
    const p0 = performance.now();
    await writeLabPki(pki, { clients: [...cns, 'probe', 'pinger', 'bench'], serverName: SERVER_NAME, days: 30 });
    const pkiSeconds = (performance.now() - p0) / 1000;
    say(`certificates ready in ${pkiSeconds.toFixed(1)} s`);
    const topologies: Topology[] = o.topology === 'both' ? ['subnet', 'p2p'] : [o.topology];
    const results: ScaleResult[] = [];
    for (const topology of topologies) {
      say(`---- topology ${topology} ----`);
      const m = await withLab({ prefix: uniquePrefix('sc'), clients: 1 }, (lab) => measure(lab, pki, tmp, cns, o, topology));
      results.push(figures(o, topology, pkiSeconds, m));
    }
    let throughput: ThroughputResult | null = null;
    if (o.topology === 'both' && o.throughputRounds > 0) {
      say(`---- one client's throughput, subnet and p2p in turns: ${o.throughputRounds} rounds, iperf3 ${o.throughputSec} s each way ----`);
      throughput = await compareThroughput(tmp, pki, o.throughputSec, o.throughputRounds, say);
    }
    return { results, throughput };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

type CpuMeasure = Awaited<ReturnType<typeof cpuDuring<unknown>>>;

/** What one run measured, before it is turned into per-handshake and per-session figures. */
interface Measured {
  tunDevices: number;
  ramp: CpuMeasure & { result: RampResult };
  baseline: CpuMeasure;
  idle: CpuMeasure;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  slabBeforeKiB: number;
  slabAfterKiB: number;
  keepalives: number;
  status: ServerStatus;
  ping: PingStats;
  idleUp: number[];
  loadedUp: number[];
}

/** Starts the server in the lab, with its status socket in `tmp`; resolves when it listens. */
async function startServer(lab: Lab, pki: string, tmp: string, o: Options, topology: Topology): Promise<{ pid: number; statusSocket: string }> {
  const statusSocket = path.join(tmp, `status-${topology}.sock`);
  const server = lab.spawn('server', [process.execPath, SERVER_MAIN,
    '--listen', `${ADDR.server}:1194`, '--pool', POOL,
    '--ca', `${pki}/ca.crt`, '--cert', `${pki}/server.crt`, '--key', `${pki}/server.key`,
    '--authorized-dir', `${pki}/authorized`, '--leases-file', `${tmp}/leases-${topology}.json`,
    '--status-socket', statusSocket, '--keepalive-sec', String(o.keepaliveSec),
    '--timeout-sec', String(Math.max(10, 4 * o.keepaliveSec)), '--topology', topology]);
  await lab.waitForLine(server, /listening on udp/, 15_000);
  return { pid: server.pid!, statusSocket };
}

/**
 * One run's phases, in order, on the same server and workers: tunnel-up time on an idle
 * server, idle baseline, ramp-up (with a session pinging), idle with keepalives, tunnel-up
 * time with every session up.
 */
async function measure(lab: Lab, pki: string, tmp: string, cns: string[], o: Options, topology: Topology): Promise<Measured> {
  const { pid, statusSocket } = await startServer(lab, pki, tmp, o, topology);
  const gen = startWorker(lab, pki);
  const pinger = startWorker(lab, pki);
  await Promise.all([gen.ready(), pinger.ready()]);

  say(`tunnel-up time, ${o.runs} sessions one after the other, idle server ...`);
  const idleUp = (await gen.call<{ ms: number[] }>({ cmd: 'tunnel-up', cn: 'probe', count: o.runs })).ms;

  await sleep(1000);
  const rssBeforeKiB = rssKiB(pid);
  const slabBeforeKiB = slabKiB();
  const baseline = await cpuDuring(pid, () => sleep(Math.min(5, o.idleSec) * 1000));

  say(`ramp-up: ${o.clients} sessions, ${o.concurrency} handshakes at a time, one session pinging ${SERVER_TUN_ADDR} every ${PING_INTERVAL_MS} ms ...`);
  await pinger.call({ cmd: 'ping-start', cn: 'pinger', dst: SERVER_TUN_ADDR, intervalMs: PING_INTERVAL_MS });
  const ramp = await cpuDuring(pid, () => gen.call<RampResult>({ cmd: 'ramp', cns, concurrency: o.concurrency }, 900_000), gen.child.pid);
  const ping = await pinger.call<PingStats>({ cmd: 'ping-stop', cn: 'pinger', graceMs: 1000 });
  say(`ramp-up: ${ramp.result.up} up, ${ramp.result.failed} failed in ${(ramp.result.ms / 1000).toFixed(1)} s; ping ${ping.received}/${ping.sent}`);
  if (ramp.result.failed) say(`first errors: ${ramp.result.errors.join(' | ')}`);

  await sleep(2000);
  const rssAfterKiB = rssKiB(pid);
  const slabAfterKiB = slabKiB();
  const tunDevices = await countTuns(lab);
  say(`TUN devices in the server's host: ${tunDevices}`);

  say(`idle with keepalives every ${o.keepaliveSec} s for ${o.idleSec} s ...`);
  // Both sides send KEEPALIVE after keepaliveSec of silence; each exchange is one
  // KEEPALIVE and one KEEPALIVE_REPLY, whoever started it.
  type KaStats = { keepalivesAnswered: number; keepalivesSent: number; up: number };
  const k0 = await gen.call<KaStats>({ cmd: 'stats' });
  const idle = await cpuDuring(pid, () => sleep(o.idleSec * 1000));
  const k1 = await gen.call<KaStats>({ cmd: 'stats' });
  const keepalives = k1.keepalivesAnswered + k1.keepalivesSent - k0.keepalivesAnswered - k0.keepalivesSent;
  const status = (await readStatus(statusSocket, 10_000)) as ServerStatus;

  say(`tunnel-up time, ${o.runs} sessions, with ${k1.up} sessions up ...`);
  const loadedUp = (await gen.call<{ ms: number[] }>({ cmd: 'tunnel-up', cn: 'probe', count: o.runs })).ms;

  await Promise.all([gen.call({ cmd: 'close' }, 60_000), pinger.call({ cmd: 'close' }, 60_000)]);
  return { tunDevices, ramp, baseline, idle, rssBeforeKiB, rssAfterKiB, slabBeforeKiB, slabAfterKiB, keepalives, status, ping, idleUp, loadedUp };
}

/** TUN devices in the server's host (`ip -o link show type tun`: one line each). */
async function countTuns(lab: Lab): Promise<number> {
  const r = await lab.exec('server', ['ip', '-o', 'link', 'show', 'type', 'tun']);
  if (r.code !== 0) throw new Error(`ip link show type tun: ${r.stderr.trim()}`);
  return r.stdout.split('\n').filter((l) => l.trim()).length;
}

/** The figures of a run: per handshake, per session and per keepalive. */
function figures(o: Options, topology: Topology, pkiSeconds: number, m: Measured): ScaleResult {
  const { ramp, baseline, idle, keepalives } = m;
  const clientsUp = ramp.result.up;
  return {
    topology,
    clients: o.clients,
    tunDevices: m.tunDevices,
    pkiSeconds,
    ramp: ramp.result,
    rampServerCpuMsPerHandshake: clientsUp ? (ramp.cpu * ramp.seconds * 1000) / clientsUp : NaN,
    rampGeneratorCpuMsPerHandshake: clientsUp ? (ramp.otherCpu * ramp.seconds * 1000) / clientsUp : NaN,
    rampServerCpu: ramp.cpu,
    rampMachineBusy: ramp.machineBusy,
    rssBeforeKiB: m.rssBeforeKiB,
    rssAfterKiB: m.rssAfterKiB,
    kibPerSession: clientsUp ? (m.rssAfterKiB - m.rssBeforeKiB) / clientsUp : NaN,
    slabKibPerSession: clientsUp ? (m.slabAfterKiB - m.slabBeforeKiB) / clientsUp : NaN,
    idleBaselineCpu: baseline.cpu,
    idleCpu: idle.cpu,
    keepalivesPerSec: keepalives / idle.seconds,
    serverCpuUsPerKeepalive: keepalives ? ((idle.cpu - baseline.cpu) * idle.seconds * 1e6) / keepalives : NaN,
    idleMachineBusy: idle.machineBusy,
    statusClients: m.status.clients.length,
    statusMaxLastSeenSec: Math.max(0, ...m.status.clients.map((c) => c.lastSeenSec)),
    ping: m.ping,
    tunnelUpIdleMs: m.idleUp,
    tunnelUpLoadedMs: m.loadedUp,
  };
}

/** The rows of one topology's column: [measure, value]; the same measures, in the same order, for each. */
function rows(r: ScaleResult, o: Options): [string, string][] {
  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`;
  const mi = median(r.tunnelUpIdleMs), ml = median(r.tunnelUpLoadedMs);
  return [
    ['sessions up / requested', `${r.ramp.up} / ${r.ramp.requested}${r.ramp.failed ? ` (${r.ramp.failed} failed)` : ''}`],
    ['distinct tunnel addresses', String(r.ramp.distinctAddresses)],
    ['TUN devices on the server, all sessions up', String(r.tunDevices)],
    [`ramp-up time (${o.concurrency} handshakes in flight)`, `${f(r.ramp.ms / 1000)} s`],
    ['handshakes per second', f(r.ramp.handshakesPerSec, 0)],
    ['tunnel-up during ramp-up: median / p95 / max', `${f(r.ramp.tunnelUpMs.median)} / ${f(r.ramp.tunnelUpMs.p95)} / ${f(r.ramp.tunnelUpMs.max)} ms`],
    ['CPU per handshake: server / generator (client side)', `${f(r.rampServerCpuMsPerHandshake, 2)} / ${f(r.rampGeneratorCpuMsPerHandshake, 2)} ms`],
    ['during ramp-up: server CPU (of one core) / whole machine busy', `${pct(r.rampServerCpu)} / ${pct(r.rampMachineBusy)}`],
    ['server RSS before -> after', `${mib(r.rssBeforeKiB)} -> ${mib(r.rssAfterKiB)}`],
    ['server memory per session (RSS)', `${f(r.kibPerSession)} KiB`],
    ['kernel slab memory per session (machine-wide, so only indicative)', `${f(r.slabKibPerSession)} KiB`],
    ['server CPU idle, 0 sessions', pct(r.idleBaselineCpu)],
    [`server CPU idle, all sessions up, keepalive ${o.keepaliveSec} s`, pct(r.idleCpu)],
    ['keepalive exchanges per second (either side starting)', f(r.keepalivesPerSec, 0)],
    ['server CPU per keepalive (above the idle baseline)', `${f(r.serverCpuUsPerKeepalive, 0)} µs`],
    ['server status: clients / max last seen', `${r.statusClients} / ${r.statusMaxLastSeenSec} s`],
    [`sample session ping ${SERVER_TUN_ADDR} every ${PING_INTERVAL_MS} ms during ramp-up: lost / sent`, `${r.ping.lost} / ${r.ping.sent} (${pct(r.ping.sent ? r.ping.lost / r.ping.sent : 0)})`],
    ['sample session ping RTT: avg / max', `${f(r.ping.avgRttMs, 2)} / ${f(r.ping.maxRttMs, 1)} ms`],
    [`tunnel-up, one session, idle server (median of ${r.tunnelUpIdleMs.length})`, `${f(mi)} ms (target ${TARGET_TUNNEL_UP_MS} ms: ${mi <= TARGET_TUNNEL_UP_MS ? 'met' : 'missed'})`],
    [`tunnel-up, one session, all sessions up (median of ${r.tunnelUpLoadedMs.length})`, `${f(ml)} ms (target ${TARGET_TUNNEL_UP_MS} ms: ${ml <= TARGET_TUNNEL_UP_MS ? 'met' : 'missed'})`],
    ['certificates issued (writeLabPki)', `${f(r.pkiSeconds)} s`],
  ];
}

/** One markdown table, a column per topology measured. */
export function table(results: ScaleResult[], o: Options): string {
  const cols = results.map((r) => rows(r, o));
  const lines = [`| measure | ${results.map((r) => r.topology).join(' | ')} |`, `| --- |${results.map(() => ' ---: |').join('')}`];
  for (let i = 0; i < cols[0].length; i++) lines.push(`| ${cols[0][i][0]} | ${cols.map((c) => c[i][1]).join(' | ')} |`);
  return lines.join('\n');
}

/** p2p against subnet, from the same run: the figures the p2p topology is judged by. */
export function ratioLines(results: ScaleResult[]): string[] {
  const sub = results.find((r) => r.topology === 'subnet'), p2p = results.find((r) => r.topology === 'p2p');
  if (!sub || !p2p) return [];
  // (A ratio of a figure that noise made zero or negative says nothing: none then.)
  const x = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && a > 0 && b > 0 ? `${(a / b).toFixed(2)}×` : '-');
  return [
    `p2p / subnet: tunnel-up idle ${x(median(p2p.tunnelUpIdleMs), median(sub.tunnelUpIdleMs))}, ` +
      `tunnel-up with all sessions up ${x(median(p2p.tunnelUpLoadedMs), median(sub.tunnelUpLoadedMs))}, ` +
      `ramp-up time ${x(p2p.ramp.ms, sub.ramp.ms)}, memory per session ${x(p2p.kibPerSession, sub.kibPerSession)}, ` +
      `idle CPU ${x(p2p.idleCpu, sub.idleCpu)}`,
  ];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === '--worker') {
    await runWorker(parseWorkerArgs(argv.slice(1)));
    process.exit(0);
  }
  let o: Options;
  try {
    o = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const r = await run(o);
  process.stdout.write(`\n## minivpn scale: ${o.clients} clients (Node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(1)})\n\n`);
  process.stdout.write(table(r.results, o) + '\n');
  for (const l of ratioLines(r.results)) process.stdout.write(`\n${l}\n`);
  if (r.throughput) process.stdout.write(`\n${throughputTable(r.throughput)}\n`);
  if (o.json) fs.writeFileSync(o.json, JSON.stringify(r, null, 2) + '\n');
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench:scale failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  });
}
