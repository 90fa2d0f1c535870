// Runs the shell scripts in scripts/ (the one place that changes addresses, routes and
// firewall rules, so students can read exactly what the VPN does to the machine) and the
// optional connect/disconnect hooks.
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { logger } from '../log';

const log = logger('os');

/** scripts/ in the repository, from src/os (ts) or dist/src/os (js). */
export function scriptsDir(): string {
  const up = __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..';
  return path.resolve(__dirname, up, 'scripts');
}

/** Runs scripts/NAME ACTION with env; each line it prints goes to our log. Rejects on failure. */
export function runInitScript(name: string, action: string, env: Record<string, string>): Promise<void> {
  const file = path.join(scriptsDir(), name);
  return new Promise((resolve, reject) => {
    execFile('bash', [file, action], { env: { ...process.env, ...env }, timeout: 30_000 }, (err, stdout, stderr) => {
      for (const line of `${stdout}`.split('\n')) if (line.trim()) log.info(`${name} ${action}: ${line.trim()}`);
      for (const line of `${stderr}`.split('\n')) if (line.trim()) log.warn(`${name} ${action}: ${line.trim()}`);
      if (err) reject(new Error(`${name} ${action} failed: ${stderr.trim().split('\n').pop() || err.message}`));
      else resolve();
    });
  });
}

/** Starts a hook program with the event in its environment; never blocks the tunnel. */
export function runHook(program: string | null, event: string, info: HookInfo): Promise<void> {
  if (!program) return Promise.resolve();
  return new Promise((resolve) => {
    const child = spawn(program, [], {
      stdio: 'ignore',
      env: {
        ...process.env,
        MINIVPN_EVENT: event,
        MINIVPN_TUN: info.tun,
        MINIVPN_CN: info.cn,
        MINIVPN_ADDRESS: info.address,
        ...(info.address6 ? { MINIVPN_ADDRESS6: info.address6 } : {}),
        MINIVPN_REMOTE: info.remote,
        ...(info.oldRemote ? { MINIVPN_OLD_REMOTE: info.oldRemote } : {}),
      },
    });
    child.on('error', (err) => { log.warn(`${event} hook could not start`, { program, err }); resolve(); });
    child.on('exit', (code) => {
      if (code !== 0) log.warn(`${event} hook failed`, { program, code });
      resolve();
    });
  });
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
