// BIRD 2 (the routing daemon) inside a lab host, for the OSPF tests: its configuration, and
// one daemon per host with its own control socket, killed by PID when the test ends.
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ExecResult, Lab } from '../../src/lab/topology';

export interface OspfConf {
  /** OSPF router id (an IPv4 address; only an identifier). */
  routerId: string;
  /** Interface patterns (BIRD's shell-like globs, e.g. "mvp*") that are OSPF links. */
  links: string[];
  /** Interfaces whose networks the router announces but where it looks for no neighbor. */
  stubs?: string[];
  /** The networks (BIRD prefix set) it installs into the kernel from OSPF; default 10.99.0.0/16 and longer. */
  kernelNets?: string;
  helloSec?: number;
  deadSec?: number;
}

/**
 * A BIRD 2 configuration with one OSPFv2 instance, "tunnel", in area 0. The links are of type
 * ptp: each is a point-to-point link with one neighbor (no designated router election, no
 * network LSA), which is what a VPN link is. Short timers so a test sees an adjacency in
 * seconds. To the kernel go only the networks behind the routers (kernelNets): the link
 * addresses themselves are already the kernel's. The log goes to stderr, with every state
 * change and event of the OSPF instance, so a test waits on those lines.
 */
export function birdOspfConf(c: OspfConf): string {
  const hello = c.helloSec ?? 1;
  const dead = c.deadSec ?? 4;
  const links = c.links.map((l) => `    interface "${l}" { type ptp; hello ${hello}; dead ${dead}; };`);
  const stubs = (c.stubs ?? []).map((s) => `    interface "${s}" { stub; };`);
  return [
    `router id ${c.routerId};`,
    'log stderr all;',
    'protocol device { scan time 10; }',
    'protocol kernel {',
    `  ipv4 { import none; export where source = RTS_OSPF && net ~ ${c.kernelNets ?? '[ 10.99.0.0/16+ ]'}; };`,
    '}',
    'protocol ospf v2 tunnel {',
    '  debug { states, events };',
    '  ipv4 { import all; export none; };',
    '  area 0 {',
    ...links,
    ...stubs,
    '  };',
    '}',
    '',
  ].join('\n');
}

export interface Neighbor { routerId: string; state: string; iface: string; address: string }

/** Parses `birdc show ospf neighbors`: one row per neighbor ("10.8.0.2  1  Full/PtP  3.0  mvp0  10.8.0.2"). */
export function parseNeighbors(out: string): Neighbor[] {
  const rows: Neighbor[] = [];
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length === 6 && /^\d+\.\d+\.\d+\.\d+$/.test(f[0]) && /^\d+$/.test(f[1])) {
      rows.push({ routerId: f[0], state: f[2], iface: f[4], address: f[5] });
    }
  }
  return rows;
}

/** One BIRD daemon in a lab host, in the foreground (-f) so the lab tracks its PID. */
export class Bird {
  private constructor(
    readonly lab: Lab, readonly host: string, readonly proc: ChildProcess,
    readonly socket: string, readonly confFile: string) {}

  /** Writes the configuration to dir/NAME.conf and starts BIRD; resolves once OSPF has started. */
  static async start(lab: Lab, host: string, dir: string, name: string, conf: string): Promise<Bird> {
    const confFile = path.join(dir, `${name}.conf`);
    const socket = path.join(dir, `${name}.ctl`);
    fs.writeFileSync(confFile, conf);
    const proc = lab.spawn(host, ['bird', '-f', '-s', socket, '-c', confFile, '-P', path.join(dir, `${name}.pid`)]);
    const b = new Bird(lab, host, proc, socket, confFile);
    await lab.waitForLine(proc, /tunnel: State changed to up/, 30_000);
    return b;
  }

  /** Runs `birdc -s SOCKET ARGS...` in the daemon's host. */
  birdc(args: string[]): Promise<ExecResult> {
    return this.lab.exec(this.host, ['birdc', '-s', this.socket, ...args]);
  }

  async neighbors(): Promise<Neighbor[]> {
    const r = await this.birdc(['show', 'ospf', 'neighbors']);
    if (r.code !== 0) throw new Error(`birdc show ospf neighbors failed (exit ${r.code}): ${r.stderr || r.stdout}`);
    return parseNeighbors(r.stdout);
  }

  /** Waits for BIRD's own log line: neighbor `id` changed state to `state` (e.g. "Full"). */
  waitNeighborState(id: string, state: string, timeoutMs: number): Promise<string> {
    const re = new RegExp(`Neighbor ${id.replace(/\./g, '\\.')} on \\S+ changed state from \\S+ to ${state}$`);
    return this.lab.waitForLine(this.proc, re, timeoutMs);
  }

  /** Everything BIRD has logged so far. */
  log(): string {
    return this.lab.output(this.proc);
  }

  /** SIGTERM by PID; resolves when it has exited (SIGKILL after 5 s). Safe to call twice. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((res) => p.once('exit', () => res()));
    try { process.kill(p.pid, 'SIGTERM'); } catch { return; }
    const t = setTimeout(() => { try { process.kill(p.pid!, 'SIGKILL'); } catch { /* gone */ } }, 5000);
    await gone;
    clearTimeout(t);
  }
}

/**
 * Watches the kernel's routing table of a host (`ip monitor route`): each route change is a
 * line, so a test waits for "10.99.1.0/24 via ..." or "Deleted 10.99.1.0/24 ..." as events.
 * Resolves once the monitor sees changes: it adds and removes a blackhole route (traffic to it
 * would be dropped, none is sent) and waits for the monitor to print it.
 */
export async function routeMonitor(lab: Lab, host: string): Promise<ChildProcess> {
  const mon = lab.spawn(host, ['ip', 'monitor', 'route']);
  const probe = '10.255.255.254/32';
  for (let i = 0; ; i++) {
    // (Repeated until seen: the monitor subscribes a moment after it starts.)
    await lab.exec(host, ['ip', 'route', 'replace', 'blackhole', probe]);
    await lab.exec(host, ['ip', 'route', 'del', 'blackhole', probe]);
    try {
      await lab.waitForLine(mon, /^Deleted blackhole 10\.255\.255\.254/, 1000);
      return mon;
    } catch (err) {
      if (i >= 30 || mon.exitCode !== null) throw err;
    }
  }
}

/**
 * A network behind a router: an interface with `cidr` on it. A dummy interface, or an ifb
 * device where the kernel has no dummy driver (both are up at once and answer for their
 * address; nothing is ever sent on them).
 */
export async function addStubNetwork(lab: Lab, host: string, name: string, cidr: string): Promise<void> {
  const dummy = await lab.exec(host, ['ip', 'link', 'add', name, 'type', 'dummy']);
  if (dummy.code !== 0) {
    const ifb = await lab.exec(host, ['ip', 'link', 'add', name, 'type', 'ifb']);
    if (ifb.code !== 0) throw new Error(`no dummy or ifb interface in ${host}: ${dummy.stderr.trim()}; ${ifb.stderr.trim()}`);
  }
  for (const cmd of [['ip', 'addr', 'add', cidr, 'dev', name], ['ip', 'link', 'set', name, 'up']]) {
    const r = await lab.exec(host, cmd);
    if (r.code !== 0) throw new Error(`${cmd.join(' ')} in ${host}: ${r.stderr.trim()}`);
  }
}
