// Drives the lab topology from TypeScript (integration tests, the demo, the lab runner,
// the benchmark). The topology itself exists only once, in scripts/lab.sh; this file
// runs that script and runs commands inside its network namespaces.
import { ChildProcess, SpawnOptions, execFileSync, spawn as spawnChild } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { logger } from '../log';

const log = logger('lab');

export interface LabOptions {
  prefix?: string;   // namespace prefix; default LAB_PREFIX or "mv"
  clients?: number;  // number of client hosts, 1..8; default 1
  /** Only client1 and server, joined by one cable (lab.sh up --pair): the benchmark's lab. */
  pair?: boolean;
  /**
   * The underlay's address families (lab.sh up --ipv6 / --ipv6-only): 'ipv4' (default),
   * 'dual' (IPv6 too, ADDR6), or 'ipv6' (ADDR6 only: no IPv4 between clients, inet, server, web).
   */
  underlay?: Underlay;
}

export type Underlay = 'ipv4' | 'dual' | 'ipv6';

/** lab.sh up's flag for each underlay. */
export const UNDERLAY_FLAG: Record<Underlay, string[]> = { ipv4: [], dual: ['--ipv6'], ipv6: ['--ipv6-only'] };

export interface ExecResult { code: number; stdout: string; stderr: string }

/** Underlay and LAN addresses of the lab hosts (see the diagram in scripts/lab.sh). */
export const ADDR = {
  inetClient: '192.0.2.1',
  client: (i: number) => `192.0.2.${10 + i}`,
  inetServer: '198.51.100.1',
  server: '198.51.100.2',
  web: '203.0.113.80',
  serverLan: '10.9.0.1',
  lan: '10.9.0.10',
};

/** The IPv6 underlay addresses (lab.sh up --ipv6 or --ipv6-only; 2001:db8::/32, documentation only). */
export const ADDR6 = {
  inetClient: '2001:db8:100::1',
  client: (i: number) => `2001:db8:100::${10 + i}`,
  inetServer: '2001:db8:200::1',
  server: '2001:db8:200::2',
  inetWeb: '2001:db8:300::1',
  web: '2001:db8:300::80',
};

/** The repository's scripts/ directory, found by walking up from this file (src/ or dist/src/). */
export function scriptsDir(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'scripts', 'lab.sh'))) return path.join(dir, 'scripts');
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`scripts/lab.sh not found above ${__dirname}`);
    dir = up;
  }
}

/** Absolute path of a script in scripts/, e.g. scriptPath('server-init.sh'). */
export function scriptPath(name: string): string {
  return path.join(scriptsDir(), name);
}

/** A prefix no other running test uses: "t" + pid + a counter (lab.sh allows 1-12 letters/digits). */
let counter = 0;
export function uniquePrefix(tag = 't'): string {
  return `${tag}${process.pid % 100000}${(counter++ % 100).toString().padStart(2, '0')}`.slice(0, 12);
}

// Runs a program, collects its output, kills it (by PID) after timeoutMs.
function run(file: string, args: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs ?? 30_000);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) stderr += `\n[killed after ${opts.timeoutMs ?? 30_000} ms]`;
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    child.stdin!.on('error', () => { /* the command may exit without reading its input */ });
    child.stdin!.end(opts.input ?? '');
  });
}

/** Runs `lab.sh ARGS...` for one prefix. */
export function labScript(prefix: string, args: string[], timeoutMs = 120_000): Promise<ExecResult> {
  return run('bash', [scriptPath('lab.sh'), ...args], { timeoutMs, env: { ...process.env, LAB_PREFIX: prefix } });
}

// Output recorded per child, so waitForLine also sees lines printed before it was called.
interface Recorder { lines: string[]; cursor: number; partial: string; closed: boolean; wake: Set<() => void> }
const MAX_LINES = 5000;

function recorder(child: ChildProcess): Recorder {
  const anyChild = child as ChildProcess & { __labRecorder?: Recorder };
  if (anyChild.__labRecorder) return anyChild.__labRecorder;
  const rec: Recorder = { lines: [], cursor: 0, partial: '', closed: false, wake: new Set() };
  anyChild.__labRecorder = rec;
  const notify = () => { for (const w of [...rec.wake]) w(); };
  const onData = (d: Buffer | string) => {
    const parts = (rec.partial + d.toString()).split('\n');
    rec.partial = parts.pop()!;
    for (const p of parts) rec.lines.push(p.replace(/\r$/, ''));
    if (rec.lines.length > MAX_LINES) {               // keep memory bounded for chatty programs
      const drop = rec.lines.length - MAX_LINES;
      rec.lines.splice(0, drop);
      rec.cursor = Math.max(0, rec.cursor - drop);
    }
    notify();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  child.on('close', () => {
    if (rec.partial) { rec.lines.push(rec.partial); rec.partial = ''; }
    rec.closed = true;
    notify();
  });
  return rec;
}

/**
 * Waits until child prints a line (stdout or stderr) matching re, and returns that line.
 * Like "expect": each call continues after the line the previous call matched, and lines
 * printed before the call count too. Rejects on timeout or when the child exits first.
 */
export function waitForLine(child: ChildProcess, re: RegExp, timeoutMs: number): Promise<string> {
  const rec = recorder(child);
  return new Promise((resolve, reject) => {
    const tail = () => rec.lines.slice(-20).join('\n');
    const finish = (err: Error | null, line?: string) => {
      clearTimeout(timer);
      rec.wake.delete(check);
      if (err) reject(err); else resolve(line!);
    };
    const check = () => {
      while (rec.cursor < rec.lines.length) {
        const line = rec.lines[rec.cursor++];
        re.lastIndex = 0; // a /g regex would otherwise carry state from line to line
        if (re.test(line)) return finish(null, line);
      }
      if (rec.closed) finish(new Error(`process exited before printing ${re}; its last output:\n${tail()}`));
    };
    const timer = setTimeout(() => finish(new Error(`no line matching ${re} within ${timeoutMs} ms; last output:\n${tail()}`)), timeoutMs);
    rec.wake.add(check);
    check();
  });
}

// Process-wide cleanup: if the test process is interrupted, take the labs down with it.
const active = new Set<Lab>();
let handlersInstalled = false;
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const cleanupSync = () => {
    for (const lab of active) lab.downSync();
  };
  process.on('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanupSync();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

export class Lab {
  readonly prefix: string;
  readonly clients: number;
  private children = new Set<ChildProcess>();
  private isDown = false;

  private constructor(prefix: string, clients: number) {
    this.prefix = prefix;
    this.clients = clients;
  }

  /** Builds the lab (lab.sh up). On failure it removes whatever was built, then throws. */
  static async up(opts: LabOptions = {}): Promise<Lab> {
    const prefix = opts.prefix ?? process.env.LAB_PREFIX ?? 'mv';
    const clients = opts.clients ?? 1;
    if (!/^[A-Za-z0-9]{1,12}$/.test(prefix)) throw new Error(`lab prefix must be 1-12 letters or digits (got "${prefix}")`);
    if (!Number.isInteger(clients) || clients < 1 || clients > 8) throw new Error(`lab clients must be 1..8 (got ${clients})`);
    if (process.getuid && process.getuid() !== 0) throw new Error('the lab needs root (network namespaces): run as root');
    const lab = new Lab(prefix, clients);
    active.add(lab);
    installExitHandlers();
    const t0 = Date.now();
    const underlay = opts.underlay ?? 'ipv4';
    if (opts.pair && clients !== 1) throw new Error('a pair lab has exactly one client');
    if (!(underlay in UNDERLAY_FLAG)) throw new Error(`lab underlay must be ipv4, dual or ipv6 (got "${underlay}")`);
    if (opts.pair && underlay !== 'ipv4') throw new Error('a pair lab is IPv4 only');
    const r = await labScript(prefix, opts.pair ? ['up', '--pair'] : ['up', '--clients', String(clients), ...UNDERLAY_FLAG[underlay]]);
    if (r.code !== 0) {
      await labScript(prefix, ['down']).catch(() => undefined);
      active.delete(lab);
      throw new Error(`lab.sh up failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`);
    }
    log.debug('lab up', { prefix, clients, underlay, ms: Date.now() - t0 });
    return lab;
  }

  /** Full namespace name of a host, e.g. ns('client1') -> "mv-client1". */
  ns(host: string): string {
    if (!/^[a-z]+[0-9]*$/.test(host)) throw new Error(`bad lab host name "${host}"`);
    return `${this.prefix}-${host}`;
  }

  /** Runs cmd inside host and waits for it; never throws for a non-zero exit code. */
  exec(host: string, cmd: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.ns(host), ...cmd], opts);
  }

  /** Starts cmd inside host; the process is tracked and killed (by PID) on down(). */
  spawn(host: string, cmd: string[], opts: SpawnOptions = {}): ChildProcess {
    if (this.isDown) throw new Error('lab is down');
    // "ip netns exec" execs the command, so child.pid is the command's own PID.
    const child = spawnChild('ip', ['netns', 'exec', this.ns(host), ...cmd], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.on('error', (err) => log.warn('spawn failed', { host, cmd: cmd[0], err }));
    child.on('close', () => this.children.delete(child));
    recorder(child); // always read its output, so a chatty child never blocks on a full pipe
    return child;
  }

  /**
   * Waits until child prints a line (stdout or stderr) matching re, and returns that line.
   * Like "expect": each call continues after the line the previous call matched.
   */
  waitForLine(child: ChildProcess, re: RegExp, timeoutMs: number): Promise<string> {
    return waitForLine(child, re, timeoutMs);
  }

  /** Everything a spawned child has printed so far (for error messages). */
  output(child: ChildProcess): string {
    return recorder(child).lines.join('\n');
  }

  /** Kills what it spawned (by PID), then removes the lab (lab.sh down). Safe to call twice. */
  async down(): Promise<void> {
    if (this.isDown) return;
    this.isDown = true;
    await this.killChildren();
    const r = await labScript(this.prefix, ['down']);
    active.delete(this);
    if (r.code !== 0) throw new Error(`lab.sh down failed (exit ${r.code}): ${r.stderr.trim()}`);
  }

  /** Synchronous down, for process exit handlers only. */
  downSync(): void {
    if (this.isDown) return;
    this.isDown = true;
    for (const c of this.children) if (c.pid && c.exitCode === null) try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
    try {
      execFileSync('bash', [scriptPath('lab.sh'), 'down'], { env: { ...process.env, LAB_PREFIX: this.prefix }, stdio: 'ignore', timeout: 60_000 });
    } catch { /* best effort while exiting */ }
    active.delete(this);
  }

  // SIGTERM each child, give them 2 s to exit, then SIGKILL the rest.
  private async killChildren(): Promise<void> {
    const live = [...this.children].filter((c) => c.pid !== undefined && c.exitCode === null && c.signalCode === null);
    if (live.length === 0) return;
    const exited = live.map((c) => new Promise<void>((res) => {
      if (c.exitCode !== null || c.signalCode !== null) return res();
      c.once('exit', () => res());
    }));
    for (const c of live) try { process.kill(c.pid!, 'SIGTERM'); } catch { /* already gone */ }
    const all = Promise.all(exited);
    const timedOut = await Promise.race([all.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 2000).unref())]);
    if (timedOut) {
      for (const c of live) if (c.exitCode === null && c.signalCode === null) try { process.kill(c.pid!, 'SIGKILL'); } catch { /* gone */ }
      await Promise.race([all, new Promise((r) => setTimeout(r, 2000).unref())]);
    }
  }
}

/** Runs fn with a fresh lab and always takes the lab down afterwards, also when fn throws. */
export async function withLab<T>(opts: LabOptions, fn: (lab: Lab) => Promise<T>): Promise<T> {
  const lab = await Lab.up(opts);
  let result: T;
  try {
    result = await fn(lab);
  } catch (err) {
    // Keep fn's error (the interesting one) even if the teardown fails too.
    await lab.down().catch((e) => log.error('lab down failed', { prefix: lab.prefix, err: e }));
    throw err;
  }
  await lab.down();
  return result;
}
