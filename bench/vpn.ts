// npm run bench: minivpn side by side with OpenVPN, in the namespace lab.
//
// For each run it measures, one after the other, on the same pair of namespaces (client1 and
// server joined by one veth, `lab.sh up --pair`): the bare underlay, minivpn with DTLS, minivpn in plaintext
// mode, minivpn with DTLS and --dev tap (Ethernet frames, the TAP row: its ratio to the TUN row is printed),
// OpenVPN 2.6 (UDP, AES-256-GCM, no DCO) and wireguard-go (Debian's, user space). Per system: iperf3 TCP both ways,
// ping RTT through the tunnel, and the CPU seconds the VPN processes (server + client)
// spent per megabyte moved. Then, with all of them up at once, the RTT again, pinging each
// system in turn (see alternatingRtt). Prints medians, min-max and ratios to OpenVPN.
//
//   npm run bench -- [--runs 3] [--seconds 10] [--alt-rounds 8] [--json FILE] [--chart FILE (default bench-results.svg)] [--float-check]
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ADDR, Lab, uniquePrefix, withLab } from '../src/lab/topology';
import { writeLabPki } from '../src/pki/pki';
import { eachFlag } from './args';
import { ensureTools, openvpnVersion } from './openvpn';
import { wireguardMtu, wireguardVersion } from './wireguard';
import {
  MINIVPN_2, MINIVPN_2_SERVER_TUN, MINIVPN_SERVER_TUN, MINIVPN_SERVER_TUN6, mainsOf, OVPN_SERVER_TUN, Mains, PacketCounter, stop, THIS_BUILD,
  WG_SERVER_TUN, withMinivpn, withOpenvpn, withWireguard,
} from './systems';

/**
 * The systems measured, in table order (minivpn-ipv6: minivpn-dtls's tunnel, iperf3 and ping to
 * the server's inner IPv6 address); minivpn-baseline only with --baseline DIR (another build
 * of minivpn, DTLS), minivpn-nofloat only with --float-check (this build, DTLS, the server with --no-float).
 */
const SYSTEMS = ['raw', 'minivpn-dtls', 'minivpn-ipv6', 'minivpn-tap', 'minivpn-plaintext', 'openvpn', 'wireguard-go', 'minivpn-baseline', 'minivpn-nofloat'] as const;
type System = typeof SYSTEMS[number];

/** The systems a set of runs has (minivpn-baseline only with --baseline). */
function present(runs: Array<Partial<Record<System, Sample>>>): System[] {
  return SYSTEMS.filter((sys) => runs.length > 0 && runs[0][sys] !== undefined);
}

interface Sample {
  fwd_mbps: number; rev_mbps: number;
  /** Median ping RTT after the transfers (the tunnel in use), and right after it came up. */
  rtt_ms: number; rtt_first_ms: number;
  cpu_s_per_mb: number | null; cpu_us_per_packet: number | null;
  /**
   * Median RTT with the systems pinged in turn (alternatingRtt), and that minus the raw veth's
   * from the same pings: the RTT the tunnel adds. null when --alt-rounds 0 (added: also for raw).
   */
  rtt_alt_ms: number | null; rtt_added_ms: number | null;
}

interface Options { runs: number; seconds: number; altRounds: number; json?: string; chart: string; udpGso: boolean; tunGro: boolean; handoffYield: boolean; baseline?: string; floatCheck?: boolean }

function say(line: string): void {
  process.stdout.write(`[bench] ${line}\n`);
}

function usage(): string {
  return 'usage: npm run bench -- [--runs N (default 3)] [--seconds N (default 10)] [--alt-rounds N (default 8; 0: no alternating RTT)] [--json FILE] [--chart FILE (default bench-results.svg)] [--udp-gso (minivpn with UDP segmentation offload)] [--no-tun-gro (minivpn without merging TCP segments on TUN writes)] [--no-handoff-yield (minivpn without yielding the CPU after passing packets on)] [--baseline DIR (also measure the minivpn built in checkout DIR, e.g. a git worktree of an older commit after npm ci: before and after in one run)] [--float-check (also minivpn-dtls with --no-float on the server: what roaming costs the data path)]';
}

export function parseArgs(argv: string[]): Options {
  const o: Options = { runs: 3, seconds: 10, altRounds: 8, chart: 'bench-results.svg', udpGso: false, tunGro: true, handoffYield: true };
  eachFlag(argv, usage, (f) => {
    if (f.name === '--runs') o.runs = f.number(1, 100);
    else if (f.name === '--seconds') o.seconds = f.number(1, 600);
    else if (f.name === '--alt-rounds') o.altRounds = f.number(0, 100);
    else if (f.name === '--json') o.json = f.value();
    else if (f.name === '--chart') o.chart = f.value();
    else if (f.name === '--udp-gso') o.udpGso = true;
    else if (f.name === '--no-tun-gro') o.tunGro = false;
    else if (f.name === '--no-handoff-yield') o.handoffYield = false;
    else if (f.name === '--baseline') o.baseline = path.resolve(f.value());
    else if (f.name === '--float-check') o.floatCheck = true;
    else return false;
    return true;
  });
  return o;
}

// ---- measurements ------------------------------------------------------------------

/** utime + stime of a process, in seconds (from /proc/PID/stat; threads included). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may contain spaces; the fields after ")" are fixed.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);   // field 14
  const stime = Number(rest[12]);   // field 15
  return (utime + stime) / CLK_TCK;
}
const CLK_TCK = 100; // USER_HZ: 100 on every Linux architecture Debian ships

function totalCpu(pids: number[]): number {
  return pids.reduce((s, p) => s + cpuSeconds(p), 0);
}

interface Iperf { mbps: number; bytes: number }

/** iperf3 from client1 to `target` (an iperf3 server listening there) for `seconds`; -R: the other way. */
export async function iperf(lab: Lab, target: string, seconds: number, reverse: boolean): Promise<Iperf> {
  const args = ['iperf3', '-c', target, '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])];
  const r = await lab.exec('client1', args, { timeoutMs: (seconds + 20) * 1000 });
  let j: { error?: string; end?: { sum_received?: { bits_per_second: number; bytes: number } } };
  try { j = JSON.parse(r.stdout); } catch { throw new Error(`iperf3 to ${target} gave no JSON (exit ${r.code}): ${r.stderr.trim() || r.stdout.slice(0, 300)}`); }
  if (j.error || !j.end?.sum_received) throw new Error(`iperf3 to ${target}${reverse ? ' -R' : ''} failed: ${j.error ?? 'no summary'}`);
  return { mbps: j.end.sum_received.bits_per_second / 1e6, bytes: j.end.sum_received.bytes };
}

/**
 * Median RTT of 40 pings 50 ms apart. The median, not ping's average: on a shared machine one
 * ping in forty that waited for a busy CPU moves the average by more than the VPNs differ.
 */
async function pingRtt(lab: Lab, target: string): Promise<number> {
  return median(await pingTimes(lab, target, 40));
}

/** The RTTs (ms) of `count` pings 50 ms apart; fails when fewer than half were answered. */
async function pingTimes(lab: Lab, target: string, count: number): Promise<number[]> {
  const r = await lab.exec('client1', ['ping', '-c', String(count), '-i', '0.05', '-W', '2', target], { timeoutMs: 30_000 });
  const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  if (times.length < count / 2) throw new Error(`ping ${target}: ${times.length} of ${count} answered (exit ${r.code}): ${r.stdout.trim().split('\n').slice(-2).join(' ')} ${r.stderr.trim()}`);
  return times;
}

const ALT_PINGS = 20;  // pings per system per round of alternatingRtt

/**
 * The RTT of every system, measured with all of them up at once and pinged in turn: ALT_PINGS
 * pings to each, `rounds` times, in the order turnOrder gives each round. Measured one after
 * the other, minutes apart, two systems' RTTs differ by as much as the machine's load changes
 * in between (per-run ratios from 0.6 to 1.5 for the same code); pinged in turn, they see the
 * same load, and their ratio is what the code makes of it. An idle tunnel costs nothing but its
 * keepalives, so the others do not disturb the one being pinged. Each tunnel first carries
 * 2 s of iperf3 each way, as in measure(): the RTT of code that has just started (before
 * V8 compiled the data path) is another figure, rtt_first_ms.
 */
async function alternatingRtt(lab: Lab, targets: Array<[System, string]>, rounds: number): Promise<Map<System, number[]>> {
  for (const [name, target] of targets) {
    if (name === 'raw') continue;
    await iperf(lab, target, 2, false);
    await iperf(lab, target, 2, true);
  }
  const times = new Map<System, number[]>(targets.map(([name]) => [name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, target] of turnOrder(targets, r)) times.get(name)!.push(...await pingTimes(lab, target, ALT_PINGS));
  }
  return times;
}

/**
 * The order of round r of alternatingRtt, a Williams design: the first round is 0, 1, n-1, 2,
 * n-2, ... and round r adds r to each (mod n); with an odd count, every other cycle of rounds is
 * reversed. So within n rounds (2n when odd) each system is pinged first equally often and comes
 * right after each of the others once: what ran just before a system's pings, which could warm
 * or cool the paths it shares with them, is the same for all.
 */
export function turnOrder<T>(xs: T[], r: number): T[] {
  const n = xs.length;
  const order = xs.map((_, i) => ((i % 2 ? (i + 1) / 2 : n - i / 2) + r) % n);
  if (n % 2 && Math.floor(r / n) % 2) order.reverse();
  return order.map((k) => xs[k]);
}

/** Per system: the median of its alternating pings, and that minus raw's (the RTT the tunnel adds). */
export function alternatingSummary(times: Map<System, number[]>): Map<System, { rtt_alt_ms: number; rtt_added_ms: number | null }> {
  const raw = times.get('raw');
  const rawMedian = raw && raw.length ? median(raw) : null;
  const out = new Map<System, { rtt_alt_ms: number; rtt_added_ms: number | null }>();
  for (const [name, ts] of times) {
    if (!ts.length) continue;
    const m = median(ts);
    out.set(name, { rtt_alt_ms: m, rtt_added_ms: name === 'raw' || rawMedian === null ? null : m - rawMedian });
  }
  return out;
}

/** Pings, iperf3 both ways, pings again to `target`; CPU of `pids` over the two iperf3 runs. */
async function measure(lab: Lab, name: System, target: string, seconds: number, pids: number[], packetCount?: PacketCounter): Promise<Sample> {
  const rttFirst = await pingRtt(lab, target);
  const cpu0 = pids.length ? totalCpu(pids) : 0;
  const pk0 = packetCount ? await packetCount() : 0;
  say(`  ${name}: iperf3 client1 -> ${target} for ${seconds}s`);
  const fwd = await iperf(lab, target, seconds, false);
  say(`  ${name}: iperf3 -R (server -> client1) for ${seconds}s`);
  const rev = await iperf(lab, target, seconds, true);
  const cpu1 = pids.length ? totalCpu(pids) : 0;
  const packets = packetCount ? (await packetCount()) - pk0 : 0;
  const mb = (fwd.bytes + rev.bytes) / 1e6;
  const rtt = await pingRtt(lab, target);
  // Every tunnel packet is handled once by each end (TUN->UDP on one, UDP->TUN on the
  // other), so CPU per packet per end = total CPU / packets / 2.
  const s: Sample = {
    fwd_mbps: fwd.mbps, rev_mbps: rev.mbps, rtt_ms: rtt, rtt_first_ms: rttFirst,
    cpu_s_per_mb: pids.length ? (cpu1 - cpu0) / mb : null,
    cpu_us_per_packet: pids.length && packets > 0 ? ((cpu1 - cpu0) * 1e6) / packets / 2 : null,
    rtt_alt_ms: null, rtt_added_ms: null,
  };
  say(`  ${name}: fwd ${fmt(s.fwd_mbps, 0)} Mbit/s, rev ${fmt(s.rev_mbps, 0)} Mbit/s, rtt ${fmt(rtt, 3)} ms (first ${fmt(rttFirst, 3)} ms)` +
    (s.cpu_s_per_mb !== null ? `, cpu ${fmt(s.cpu_s_per_mb * 1000, 2)} ms/MB, ${fmt(s.cpu_us_per_packet, 2)} us/packet per end (${packets} packets)` : ''));
  return s;
}

// ---- statistics and output ----------------------------------------------------------------

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function fmt(x: number | null, digits: number): string {
  return x === null || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

type Metric = 'fwd_mbps' | 'rev_mbps' | 'rtt_ms' | 'rtt_first_ms' | 'cpu_s_per_mb' | 'cpu_us_per_packet' | 'rtt_alt_ms' | 'rtt_added_ms';
const METRICS: Array<{ key: Metric; title: string; scale: number; digits: number }> = [
  { key: 'fwd_mbps', title: 'client->server Mbit/s', scale: 1, digits: 0 },
  { key: 'rev_mbps', title: 'server->client Mbit/s', scale: 1, digits: 0 },
  { key: 'rtt_ms', title: 'ping RTT ms', scale: 1, digits: 3 },
  { key: 'rtt_first_ms', title: 'RTT just after tunnel-up ms', scale: 1, digits: 3 },
  { key: 'cpu_s_per_mb', title: 'CPU ms/MB', scale: 1000, digits: 2 },
  { key: 'cpu_us_per_packet', title: 'CPU us/packet per end', scale: 1, digits: 2 },
  { key: 'rtt_alt_ms', title: 'RTT pinged in turn ms', scale: 1, digits: 3 },
  { key: 'rtt_added_ms', title: 'added RTT (in turn, minus raw) ms', scale: 1, digits: 3 },
];

function values(samples: Sample[], key: Metric): number[] {
  return samples.map((s) => s[key]).filter((v): v is number => v !== null);
}

/** Median of the per-run ratios to OpenVPN of the same run (so drifting load cancels). */
function ratioMedian(runs: Array<Record<System, Sample>>, sys: System, key: Metric, to: System = 'openvpn'): number | null {
  const r = runs.map((run) => {
    const a = run[sys][key];
    const b = run[to][key];
    return a === null || b === null || b === 0 ? null : a / b;
  }).filter((v): v is number => v !== null);
  return r.length ? median(r) : null;
}

function table(runs: Array<Record<System, Sample>>): string {
  const head = ['system', ...METRICS.flatMap((m) => [m.title + ' (min-max)', 'vs OpenVPN'])];
  const lines = [`| ${head.join(' | ')} |`, `| --- |${head.slice(1).map(() => ' ---: |').join('')}`];
  for (const sys of present(runs)) {
    const cells: string[] = [sys];
    for (const m of METRICS) {
      const v = values(runs.map((r) => r[sys]), m.key).map((x) => x * m.scale);
      if (v.length === 0) { cells.push('-', '-'); continue; }
      const spread = v.length > 1 ? ` (${fmt(Math.min(...v), m.digits)}-${fmt(Math.max(...v), m.digits)})` : '';
      cells.push(`${fmt(median(v), m.digits)}${spread}`);
      cells.push(fmt(ratioMedian(runs, sys, m.key), 2));
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

function jsonResult(runs: Array<Record<System, Sample>>): Record<string, Record<string, number | null>> {
  const out: Record<string, Record<string, number | null>> = {};
  for (const sys of present(runs)) {
    const o: Record<string, number | null> = {};
    for (const m of METRICS) {
      const v = values(runs.map((r) => r[sys]), m.key);
      o[m.key] = v.length ? median(v) : null;
    }
    if (sys.startsWith('minivpn')) {
      o.fwd_ratio_vs_openvpn = ratioMedian(runs, sys, 'fwd_mbps');
      o.rev_ratio_vs_openvpn = ratioMedian(runs, sys, 'rev_mbps');
    }
    if (sys === 'minivpn-ipv6') {
      o.fwd_ratio_vs_ipv4 = ratioMedian(runs, sys, 'fwd_mbps', 'minivpn-dtls');
      o.rev_ratio_vs_ipv4 = ratioMedian(runs, sys, 'rev_mbps', 'minivpn-dtls');
    }
    out[sys] = o;
  }
  return out;
}

/**
 * The medians as an SVG bar chart: throughput both ways per system (log scale, since the raw
 * veth is ~30x any VPN), each VPN bar labelled with its ratio to OpenVPN.
 */
export function chart(runs: Array<Record<System, Sample>>): string {
  const W = 820, rowH = 54, left = 150, top = 40, plotW = W - left - 230; // room for the labels
  const med = (sys: System, k: Metric) => { const v = values(runs.map((r) => r[sys]), k); return v.length ? median(v) : 0; };
  const systems = present(runs);
  const max = Math.max(...systems.flatMap((sys) => [med(sys, 'fwd_mbps'), med(sys, 'rev_mbps')]), 1);
  const x = (v: number) => (v <= 1 ? 0 : (Math.log10(v) / Math.log10(max)) * plotW);
  const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [];
  systems.forEach((sys, i) => {
    const y = top + i * rowH;
    parts.push(`<text x="${left - 8}" y="${y + 22}" text-anchor="end" font-size="13">${esc(sys)}</text>`);
    (['fwd_mbps', 'rev_mbps'] as Metric[]).forEach((k, j) => {
      const v = med(sys, k);
      const ratio = sys === 'openvpn' || sys === 'raw' ? '' : ` (${fmt(ratioMedian(runs, sys, k), 2)}x OpenVPN)`;
      const by = y + 6 + j * 20;
      parts.push(`<rect x="${left}" y="${by}" width="${x(v).toFixed(1)}" height="16" fill="${j ? '#f58518' : '#4c78a8'}"/>`);
      parts.push(`<text x="${left + x(v) + 4}" y="${by + 12}" font-size="11">${fmt(v, 0)} Mbit/s${ratio}</text>`);
    });
  });
  const h = top + systems.length * rowH + 30;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" font-family="sans-serif">
<text x="${left}" y="20" font-size="15" font-weight="bold">iperf3 TCP through each tunnel (median of ${runs.length} run(s), log scale)</text>
${parts.join('\n')}
<rect x="${left}" y="${h - 22}" width="12" height="12" fill="#4c78a8"/><text x="${left + 16}" y="${h - 12}" font-size="11">client to server</text>
<rect x="${left + 130}" y="${h - 22}" width="12" height="12" fill="#f58518"/><text x="${left + 146}" y="${h - 12}" font-size="11">server to client</text>
</svg>
`;
}

// ---- main --------------------------------------------------------------------------------

/** minivpn-dtls's (or `of`'s) figures over another system's, median of the per-run ratios. */
function ratioLine(runs: Array<Record<System, Sample>>, to: System, of: System = 'minivpn-dtls'): string {
  const r = (k: Metric) => fmt(ratioMedian(runs, of, k, to), 2);
  return `median of per-run ratios: up ${r('fwd_mbps')}, down ${r('rev_mbps')}, CPU per MB ${r('cpu_s_per_mb')}, CPU per packet ${r('cpu_us_per_packet')}, RTT ${r('rtt_ms')}`;
}

/**
 * Run i: each system one after the other, then (--alt-rounds) all at once, pinged in turn.
 * With --float-check, minivpn-nofloat is measured right next to minivpn-dtls, before it in
 * even runs and after it in odd ones, so that neither always follows the other.
 */
async function oneRun(lab: Lab, dir: string, pki: string, opts: Options, flags: string[], baseline: Mains | null, i: number): Promise<Record<System, Sample>> {
  const run = {} as Record<System, Sample>;
  const dtls = (sys: System, serverFlags: string[] = [], mains = THIS_BUILD) =>
    withMinivpn(lab, dir, pki, flags, (v) => measure(lab, sys, MINIVPN_SERVER_TUN, opts.seconds, v.pids, v.packets), { serverFlags, mains });
  // TAP (both sides --dev tap) right next to TUN, before it in even runs and after it in odd ones.
  const tap = () => withMinivpn(lab, dir, pki, [...flags, '--dev', 'tap'], (v) => measure(lab, 'minivpn-tap', MINIVPN_SERVER_TUN, opts.seconds, v.pids, v.packets));
  run.raw = await measure(lab, 'raw', ADDR.server, opts.seconds, []);
  if (opts.floatCheck && i % 2 === 0) run['minivpn-nofloat'] = await dtls('minivpn-nofloat', ['--no-float']);
  if (i % 2 === 0) run['minivpn-tap'] = await tap();
  Object.assign(run, await bothFamilies(lab, dir, pki, opts, flags, i));
  if (i % 2 === 1) run['minivpn-tap'] = await tap();
  if (opts.floatCheck && i % 2 === 1) run['minivpn-nofloat'] = await dtls('minivpn-nofloat', ['--no-float']);
  run['minivpn-plaintext'] = await withMinivpn(lab, dir, pki, ['--insecure-plaintext', ...flags], (v) => measure(lab, 'minivpn-plaintext', MINIVPN_SERVER_TUN, opts.seconds, v.pids, v.packets));
  run.openvpn = await withOpenvpn(lab, pki, (v) => measure(lab, 'openvpn', OVPN_SERVER_TUN, opts.seconds, v.pids, v.packets));
  run['wireguard-go'] = await withWireguard(lab, dir, (v) => measure(lab, 'wireguard-go', WG_SERVER_TUN, opts.seconds, v.pids, v.packets));
  if (baseline) run['minivpn-baseline'] = await dtls('minivpn-baseline', [], baseline);
  if (opts.altRounds > 0) {
    say(`  five up at once: ${opts.altRounds} rounds of ${ALT_PINGS} pings to each in turn`);
    const targets: Array<[System, string]> = [['raw', ADDR.server], ['minivpn-dtls', MINIVPN_SERVER_TUN],
      ['minivpn-plaintext', MINIVPN_2_SERVER_TUN], ['openvpn', OVPN_SERVER_TUN], ['wireguard-go', WG_SERVER_TUN]];
    const allUp = () => withOpenvpn(lab, pki, () => withWireguard(lab, dir, () => alternatingRtt(lab, targets, opts.altRounds)));
    const times = await withMinivpn(lab, dir, pki, flags, () =>
      withMinivpn(lab, dir, pki, ['--insecure-plaintext', ...flags], allUp, { inst: MINIVPN_2 }));
    for (const [name, v] of alternatingSummary(times)) Object.assign(run[name], v);
    say(`  in turn: ${present([run]).map((n) => `${n} ${fmt(run[n].rtt_alt_ms, 3)}`).join(', ')} ms`);
  }
  return run;
}

/**
 * minivpn-dtls and minivpn-ipv6: one tunnel, measured over inner IPv4 and over inner IPv6, one
 * right after the other (IPv4 first in odd runs, IPv6 first in even ones, so that neither
 * always comes second, on the warmer path): their ratio is what the IPv6 path costs.
 */
async function bothFamilies(lab: Lab, dir: string, pki: string, opts: Options, flags: string[], i: number): Promise<Partial<Record<System, Sample>>> {
  return withMinivpn(lab, dir, pki, flags, async (v) => {
    const m = (sys: System, target: string) => measure(lab, sys, target, opts.seconds, v.pids, v.packets);
    const out: Partial<Record<System, Sample>> = {};
    for (const [sys, target] of i % 2 ? [['minivpn-dtls', MINIVPN_SERVER_TUN], ['minivpn-ipv6', MINIVPN_SERVER_TUN6]] as const
      : [['minivpn-ipv6', MINIVPN_SERVER_TUN6], ['minivpn-dtls', MINIVPN_SERVER_TUN]] as const) out[sys] = await m(sys, target);
    return out;
  });
}

/** Inner IPv6 over inner IPv4 in the same tunnel: the medians of the per-run ratios, and the issue's target. */
export function ipv6Line(runs: Array<Record<System, Sample>>): string {
  const up = ratioMedian(runs, 'minivpn-ipv6', 'fwd_mbps', 'minivpn-dtls');
  const down = ratioMedian(runs, 'minivpn-ipv6', 'rev_mbps', 'minivpn-dtls');
  const met = up !== null && down !== null && up >= IPV6_TARGET && down >= IPV6_TARGET;
  return `inner IPv6 over inner IPv4 (minivpn-ipv6 / minivpn-dtls, same tunnel, median of per-run ratios): up ${fmt(up, 2)}, ` +
    `down ${fmt(down, 2)}, RTT ${fmt(ratioMedian(runs, 'minivpn-ipv6', 'rtt_ms', 'minivpn-dtls'), 2)} (target: throughput >= ${IPV6_TARGET} both ways: ${met ? 'met' : 'NOT met'})`;
}
const IPV6_TARGET = 0.95;

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid && process.getuid() !== 0) throw new Error('the benchmark needs root (network namespaces, TUN): run with sudo');
  for (const f of [THIS_BUILD.server, THIS_BUILD.client]) if (!fs.existsSync(f)) throw new Error(`${f} not found: run npm run build first`);
  const baseline = opts.baseline ? mainsOf(opts.baseline) : null;
  const installed = ensureTools(say);
  if (installed.length) say(`installed: ${installed.join(' ')}`);
  say(`${openvpnVersion()}; ${wireguardVersion()} (tunnel MTU ${wireguardMtu()}); node ${process.version}; ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const minivpnFlags = [...(opts.udpGso ? ['--udp-gso'] : []), ...(opts.tunGro ? [] : ['--no-tun-gro']), ...(opts.handoffYield ? [] : ['--no-handoff-yield'])];
  say(`${opts.runs} run(s), iperf3 ${opts.seconds}s each way${minivpnFlags.length ? `; minivpn with ${minivpnFlags.join(' ')}` : ''}`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-bench-'));
  // On Ctrl-C the lab's own handlers kill our processes and remove the lab, then exit;
  // this removes the temp PKI then too.
  const rmDir = () => fs.rmSync(dir, { recursive: true, force: true });
  process.on('exit', rmDir);
  try {
    const pki = path.join(dir, 'pki');
    await writeLabPki(pki, { clients: ['bench'], serverName: 'server.minivpn.test', days: 2 });
    const runs: Array<Record<System, Sample>> = [];
    await withLab({ prefix: uniquePrefix('bench'), pair: true }, async (lab) => {
      say(`lab ${lab.prefix} up`);
      // One iperf3 server for all the systems: it listens on every address of the server host.
      const iperfServer = lab.spawn('server', ['iperf3', '-s', '--forceflush']);
      await lab.waitForLine(iperfServer, /Server listening/, 10_000);
      for (let i = 1; i <= opts.runs; i++) {
        say(`run ${i}/${opts.runs}`);
        runs.push(await oneRun(lab, dir, pki, opts, minivpnFlags, baseline, i));
      }
      await stop(iperfServer);
    });
    say('lab down');
    const md = table(runs);
    console.log(`\n${md}\n`);
    console.log(`medians over ${runs.length} run(s), (min-max) when more than one; "vs OpenVPN" = median of per-run ratios to OpenVPN's figure.`);
    console.log(ipv6Line(runs));
    console.log(`minivpn-tap (--dev tap, Ethernet frames) against minivpn-dtls (TUN), ${ratioLine(runs, 'minivpn-dtls', 'minivpn-tap')}`);
    if (baseline) console.log(`minivpn-dtls against minivpn-baseline (${opts.baseline}), ${ratioLine(runs, 'minivpn-baseline')}`);
    if (opts.floatCheck) console.log(`minivpn-dtls (float on, the default) against minivpn-nofloat (the server with --no-float), ${ratioLine(runs, 'minivpn-nofloat')}`);
    if (opts.json) {
      fs.writeFileSync(opts.json, JSON.stringify(jsonResult(runs), null, 2) + '\n');
      say(`wrote ${opts.json}`);
    }
    fs.writeFileSync(opts.chart, chart(runs));
    say(`wrote ${opts.chart} (open it in a browser)`);
  } finally {
    rmDir();
  }
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`bench: error: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
