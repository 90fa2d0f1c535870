// Runs the shell scripts in scripts/ (the one place that changes addresses, routes and
// firewall rules, so students can read exactly what the VPN does to the machine), the
// optional connect/disconnect hooks and the program per link (jtunnel's PROG ARGS...).
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { logger } from '../log';

const log = logger('os');

/** scripts/ in the repository, from src/os (ts) or dist/src/os (js). */
export function scriptsDir(): string {
  const up = __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..';
  return path.resolve(__dirname, up, 'scripts');
}

/**
 * Runs scripts/NAME ACTION with env; each line it prints goes to our log. Resolves with the
 * lines of its standard output; rejects on failure.
 */
export function runInitScript(name: string, action: string, env: Record<string, string>): Promise<string[]> {
  const file = path.join(scriptsDir(), name);
  return new Promise((resolve, reject) => {
    execFile('bash', [file, action], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      for (const line of `${stdout}`.split('\n')) if (line.trim()) log.info(`${name} ${action}: ${line.trim()}`);
      for (const line of `${stderr}`.split('\n')) if (line.trim()) log.warn(`${name} ${action}: ${line.trim()}`);
      if (err) reject(new Error(`${name} ${action} failed: ${stderr.trim().split('\n').pop() || err.message}`));
      else resolve(`${stdout}`.split('\n').map((l) => l.trim()).filter((l) => l !== ''));
    });
  });
}

/** How a program ended: ok (exit 0), or why not ("exit 3", "killed by SIGTERM", "cannot start: ENOENT"). */
export interface ProgramResult { ok: boolean; why: string }

/**
 * Runs `argv` (PROG ARGS...) with `env` added to ours; never throws. With `output`, each line
 * it prints goes there (else its output is discarded). Killed after `timeoutMs` (0: never).
 */
export function spawnProgram(argv: string[], env: Record<string, string>,
  o: { output?: (line: string, stream: 'stdout' | 'stderr') => void; timeoutMs?: number } = {}): Promise<ProgramResult> {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: o.output ? ['ignore', 'pipe', 'pipe'] : 'ignore', env: { ...process.env, ...env } });
    let last = '';
    for (const stream of ['stdout', 'stderr'] as const) {
      let rest = '';
      child[stream]?.setEncoding('utf8').on('data', (chunk: string) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        for (const l of lines) if (l.trim()) { o.output!(l.trim(), stream); if (stream === 'stderr') last = l.trim(); }
      });
    }
    const timer = o.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), o.timeoutMs) : null;
    child.on('error', (err: NodeJS.ErrnoException) => { if (timer) clearTimeout(timer); resolve({ ok: false, why: `cannot start: ${err.code ?? err.message}` }); });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 0) resolve({ ok: true, why: 'exit 0' });
      else resolve({ ok: false, why: (signal ? `killed by ${signal}` : `exit ${code}`) + (last ? ` (${last.slice(0, 200)})` : '') });
    });
  });
}

/** Starts a hook program with the event in its environment; never blocks the tunnel. */
export async function runHook(program: string | null, event: string, info: HookInfo): Promise<void> {
  if (!program) return;
  const r = await spawnProgram([program], {
    MINIVPN_EVENT: event,
    MINIVPN_TUN: info.tun,
    MINIVPN_CN: info.cn,
    MINIVPN_ADDRESS: info.address,
    ...(info.address6 ? { MINIVPN_ADDRESS6: info.address6 } : {}),
    MINIVPN_REMOTE: info.remote,
    ...(info.oldRemote ? { MINIVPN_OLD_REMOTE: info.oldRemote } : {}),
  });
  if (r.ok) return;
  if (r.why.startsWith('cannot start')) log.warn(`${event} hook could not start`, { program, err: r.why });
  else log.warn(`${event} hook failed`, { program, code: r.why.replace(/^exit /, '') });
}

/**
 * Jobs (scripts, programs) at most `limit` at a time, the rest waiting in order: a thousand
 * clients connecting at once must not fork a thousand shells at once. Unlike HookRunner
 * nothing is coalesced or dropped: a link's "up" and its "down" both run.
 */
export class JobQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit = 8) {}

  run<T>(job: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const go = (): void => {
        this.running++;
        job().then(resolve, reject).finally(() => {
          this.running--;
          this.waiting.shift()?.();
        });
      };
      if (this.running < this.limit) go();
      else this.waiting.push(go);
    });
  }
}

type HookInfo = { tun: string; cn: string; address: string; address6?: string; remote: string; oldRemote?: string };

/**
 * Hooks, at most `perSecond` started a second: a client reconnecting in a loop must not make
 * the server spawn a process per attempt. Events that wait are coalesced per client (CN): the
 * latest wins, since it is the client's state now (a connect, then a disconnect: only the
 * disconnect runs).
 */
export class HookRunner {
  private readonly pending = new Map<string, { program: string; event: string; info: HookInfo }>();
  private tokens: number;
  private refilledAt = Date.now();
  private timer: NodeJS.Timeout | null = null;
  /** Hooks started, and events dropped because a later one of the same client replaced them. */
  started = 0;
  coalesced = 0;

  constructor(private readonly perSecond = 5) {
    this.tokens = perSecond;
  }

  run(program: string | null, event: string, info: HookInfo): void {
    if (!program) return;
    if (this.pending.delete(info.cn)) this.coalesced++;
    this.pending.set(info.cn, { program, event, info });
    this.drain();
  }

  private drain(): void {
    const now = Date.now();
    this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.refilledAt) * this.perSecond) / 1000);
    this.refilledAt = now;
    for (const [cn, h] of this.pending) {
      if (this.tokens < 1) break;
      this.tokens--;
      this.pending.delete(cn);
      this.started++;
      void runHook(h.program, h.event, h.info);
    }
    if (this.pending.size > 0 && this.timer === null) {
      this.timer = setTimeout(() => { this.timer = null; this.drain(); }, Math.ceil(1000 / this.perSecond));
    }
  }
}

/** What a link's program and script are told: the addresses at both ends, the client. */
export interface LinkInfo {
  /** The client's CN (TUN_CLIENT_ID): on the server the peer's, on the client its own. */
  cn: string;
  local: string;
  peer: string;
  /** IPv6 at both ends ('' for none). */
  local6: string;
  peer6: string;
  /** The other end's underlay endpoint, "address:port". */
  remote: string;
}

/** The environment of a link's program (jtunnel's TUN_DEV_NAME and TUN_CLIENT_ID, and the rest). */
export function linkEnv(event: 'up' | 'down', dev: string, i: LinkInfo): Record<string, string> {
  return {
    TUN_EVENT: event,
    TUN_DEV_NAME: dev,
    TUN_CLIENT_ID: i.cn,
    TUN_LOCAL_ADDRESS: i.local,
    TUN_PEER_ADDRESS: i.peer,
    ...(i.local6 ? { TUN_LOCAL_ADDRESS6: i.local6, TUN_PEER_ADDRESS6: i.peer6 } : {}),
    TUN_REMOTE: i.remote,
  };
}
