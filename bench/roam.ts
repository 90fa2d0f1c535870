// npm run bench:roam: how long each VPN's tunnel is dead when the client's address changes.
//
// In the pair lab (client1 and server joined by one veth), for minivpn (DTLS, defaults: the
// server floats), OpenVPN 2.6 (the server with --float, the client with --nobind) and
// wireguard-go (the client with persistent-keepalive), one after the other: a ping through the
// tunnel every 50 ms with timestamps (ping -D), and --moves times the client's underlay address
// is changed (192.0.2.11 -> .21 -> .31 -> .21 ...: the new address added, the old one deleted,
// the new one promoted to primary). Roam time: from just before the delete to the first reply
// stamped after the delete returned. Prints, per system, the median and the max.
//
//   npm run bench:roam -- [--moves 10] [--timeout 60] [--json FILE]
import { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ADDR, Lab, uniquePrefix, withLab } from '../src/lab/topology';
import { writeLabPki } from '../src/pki/pki';
import { eachFlag } from './args';
import { ensureTools, openvpnVersion } from './openvpn';
import { MINIVPN_SERVER_TUN, OVPN_SERVER_TUN, Running, stop, THIS_BUILD, WG_SERVER_TUN, withMinivpn, withOpenvpn, withWireguard } from './systems';
import { fmt, median } from './vpn';
import { wireguardVersion } from './wireguard';

interface Options { moves: number; timeoutSec: number; json?: string }

function usage(): string {
  return 'usage: npm run bench:roam -- [--moves N (default 10): address changes per system] [--timeout SEC (default 60): how long one move may take to recover before the system counts as not recovering] [--json FILE]';
}

export function parseArgs(argv: string[]): Options {
  const o: Options = { moves: 10, timeoutSec: 60 };
  eachFlag(argv, usage, (f) => {
    if (f.name === '--moves') o.moves = f.number(1, 200);
    else if (f.name === '--timeout') o.timeoutSec = f.number(1, 600);
    else if (f.name === '--json') o.json = f.value();
    else return false;
    return true;
  });
  return o;
}

function say(line: string): void {
  process.stdout.write(`[roam] ${line}\n`);
}

/** client1's addresses in turn: it starts at the lab's, then moves between the other two. */
const ADDRS = [ADDR.client(1), '192.0.2.21', '192.0.2.31'];
export function nextAddress(at: string): string {
  return at === ADDRS[1] ? ADDRS[2] : ADDRS[1];
}

/**
 * Replies to wait for after a recovery before the next move (1.5 s at 50 ms): minivpn's client
 * opens a new socket at most once a second, and nobody's laptop changes networks faster.
 */
const SETTLE_REPLIES = 30;

/**
 * Moves client1 from `from` to `to` in one shell: the new address added (with
 * promote_secondaries it becomes the primary when the old one goes), then the old one deleted,
 * each side of the delete stamped by `date` inside the namespace. Checks that the route to the
 * server now takes the new source. The route itself (198.51.100.0/24 on link) survives the
 * delete; it is not touched, since a route change is itself a hint some VPNs act on.
 */
export async function moveAddress(lab: Lab, from: string, to: string): Promise<{ t0: number; t1: number }> {
  const script = `sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1 && ip addr add ${to}/24 dev eth0 && ` +
    `date +%s.%N && ip addr del ${from}/24 dev eth0 && date +%s.%N && ip -4 route get ${ADDR.server}`;
  const r = await lab.exec('client1', ['sh', '-c', script]);
  const [t0, t1] = r.stdout.split('\n').slice(0, 2).map((l) => Number(l) * 1000);
  if (r.code !== 0 || !Number.isFinite(t0) || !Number.isFinite(t1)) throw new Error(`moving client1 ${from} -> ${to} failed (exit ${r.code}): ${r.stderr.trim()}`);
  if (!r.stdout.includes(`src ${to} `)) throw new Error(`after the move the route to the server does not take ${to}: ${r.stdout.split('\n')[2]}`);
  return { t0, t1 };
}

interface Reply { at: number; seq: number }

/** The next reply line of a -D ping: its wall-clock time (ms) and icmp_seq. */
async function nextReply(lab: Lab, ping: ChildProcess, target: string, timeoutMs: number): Promise<Reply> {
  const re = new RegExp(`^\\[(\\d+\\.\\d+)\\] \\d+ bytes from ${target.replace(/\./g, '\\.')}: icmp_seq=(\\d+)`);
  const m = re.exec(await lab.waitForLine(ping, re, timeoutMs))!;
  return { at: Number(m[1]) * 1000, seq: Number(m[2]) };
}

interface Move { ms: number | null; lost: number }
interface Result { system: string; moves: Move[]; sessions: number | null; note: string }

/**
 * --moves address changes under a 50 ms ping through the tunnel to `target`. A move that does
 * not recover within --timeout ends the series (the tunnel is dead; later moves would say nothing).
 */
async function roamSeries(lab: Lab, target: string, opts: Options, at: { addr: string }): Promise<Move[]> {
  const ping = lab.spawn('client1', ['stdbuf', '-oL', 'ping', '-D', '-i', '0.05', target]);
  const moves: Move[] = [];
  try {
    let prev = await nextReply(lab, ping, target, 10_000);
    for (let i = 0; i < SETTLE_REPLIES; i++) prev = await nextReply(lab, ping, target, 5_000);
    for (let i = 0; i < opts.moves; i++) {
      const to = nextAddress(at.addr);
      const { t0, t1 } = await moveAddress(lab, at.addr, to);
      at.addr = to;
      let r: Reply;
      try {
        // A reply stamped before the delete returned may have come the old way: skip those.
        do { r = await nextReply(lab, ping, target, opts.timeoutSec * 1000); if (r.at <= t1) prev = r; } while (r.at <= t1);
      } catch {
        moves.push({ ms: null, lost: 0 });
        say(`  move ${i + 1}: no reply within ${opts.timeoutSec} s: stopping this system's series`);
        break;
      }
      moves.push({ ms: r.at - t0, lost: r.seq - prev.seq - 1 });
      say(`  move ${i + 1} -> ${to}: ${fmt(r.at - t0, 0)} ms (delete took ${fmt(t1 - t0, 0)} ms, ${r.seq - prev.seq - 1} pings lost)`);
      for (let k = 0; k < SETTLE_REPLIES; k++) prev = await nextReply(lab, ping, target, 5_000);
    }
  } finally {
    await stop(ping);
  }
  return moves;
}

const count = (text: string, re: RegExp) => (text.match(new RegExp(re.source, 'gm')) ?? []).length;

/** Runs one system's series; `sessions` counts the tunnels its client brought up (1: it never reconnected). */
async function roam(lab: Lab, system: string, target: string, opts: Options, at: { addr: string }, up: RegExp | null, v: Running, note: string): Promise<Result> {
  say(`${system}: ${opts.moves} moves, ping -i 0.05 ${target}`);
  const moves = await roamSeries(lab, target, opts, at);
  return { system, moves, sessions: up ? count(lab.output(v.client), up) : null, note };
}

function summary(r: Result): { recovered: number; median_ms: number | null; max_ms: number | null; lost_median: number | null } {
  const ok = r.moves.filter((m) => m.ms !== null);
  const ms = ok.map((m) => m.ms!);
  return {
    recovered: ok.length,
    median_ms: ms.length ? median(ms) : null,
    max_ms: ok.length < r.moves.length ? Infinity : ms.length ? Math.max(...ms) : null,
    lost_median: ok.length ? median(ok.map((m) => m.lost)) : null,
  };
}

function table(results: Result[], timeoutSec: number): string {
  const lines = ['| system | moves recovered | roam time median ms | max ms | pings lost (median) | tunnels brought up | setup |', '| --- | ---: | ---: | ---: | ---: | ---: | --- |'];
  for (const r of results) {
    const s = summary(r);
    const max = s.max_ms === Infinity ? `> ${timeoutSec * 1000} (no recovery)` : fmt(s.max_ms, 0);
    lines.push(`| ${r.system} | ${s.recovered} / ${r.moves.length} | ${fmt(s.median_ms, 0)} | ${max} | ${fmt(s.lost_median, 0)} | ${r.sessions ?? '-'} | ${r.note} |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (process.getuid && process.getuid() !== 0) throw new Error('the benchmark needs root (network namespaces, TUN): run with sudo');
  for (const f of [THIS_BUILD.server, THIS_BUILD.client]) if (!fs.existsSync(f)) throw new Error(`${f} not found: run npm run build first`);
  const installed = ensureTools(say);
  if (installed.length) say(`installed: ${installed.join(' ')}`);
  say(`${openvpnVersion()}; ${wireguardVersion()}; node ${process.version}; ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-roam-'));
  const rmDir = () => fs.rmSync(dir, { recursive: true, force: true });
  process.on('exit', rmDir);
  try {
    const pki = path.join(dir, 'pki');
    await writeLabPki(pki, { clients: ['bench'], serverName: 'server.minivpn.test', days: 2 });
    const results: Result[] = [];
    await withLab({ prefix: uniquePrefix('roam'), pair: true }, async (lab) => {
      say(`lab ${lab.prefix} up`);
      const at = { addr: ADDRS[0] };
      results.push(await withMinivpn(lab, dir, pki, [], (v) => roam(lab, 'minivpn-dtls', MINIVPN_SERVER_TUN, opts, at, /tunnel up: /, v, 'defaults (server floats)')));
      results.push(await withOpenvpn(lab, pki, (v) => roam(lab, 'openvpn', OVPN_SERVER_TUN, opts, at, /Initialization Sequence Completed/, v, 'server --float, client --nobind'), ['--float']));
      results.push(await withWireguard(lab, dir, (v) => roam(lab, 'wireguard-go', WG_SERVER_TUN, opts, at, null, v, 'client persistent-keepalive 1')));
    });
    say('lab down');
    console.log(`\n${table(results, opts.timeoutSec)}\n`);
    console.log('roam time: from just before the old address was deleted to the first ping reply stamped after the delete returned (ping -i 0.05 -D through the tunnel).');
    if (opts.json) {
      fs.writeFileSync(opts.json, JSON.stringify(results.map((r) => ({ ...r, ...summary(r) })), null, 2) + '\n');
      say(`wrote ${opts.json}`);
    }
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
