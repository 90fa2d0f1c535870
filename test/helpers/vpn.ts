// Starts minivpn servers and clients inside a lab (src/lab/topology.ts), for integration tests.
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, ADDR } from '../../src/lab/topology';
import { writeLabPki } from '../../src/pki/pki';

const DIST = path.resolve(__dirname, '..', '..', 'src');
export const SERVER_MAIN = path.join(DIST, 'server', 'main.js');
export const CLIENT_MAIN = path.join(DIST, 'client', 'main.js');
export const STATUS_MAIN = path.join(DIST, 'status', 'cli.js');

export interface VpnFixture {
  dir: string;
  pki: string;
  statusSocket: string;
  cleanup(): void;
}

/** A temp dir with a lab PKI for the given clients (all authorized). */
export async function vpnFixture(clients: string[]): Promise<VpnFixture> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-it-'));
  const pki = path.join(dir, 'pki');
  await writeLabPki(pki, { clients, serverName: 'server.minivpn.test', days: 30 });
  return { dir, pki, statusSocket: path.join(dir, 'status.sock'), cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export function serverArgs(f: VpnFixture, extra: string[] = []): string[] {
  return [
    '--listen', `${ADDR.server}:1194`,
    '--ca', `${f.pki}/ca.crt`, '--cert', `${f.pki}/server.crt`, '--key', `${f.pki}/server.key`,
    '--authorized-dir', `${f.pki}/authorized`, '--leases-file', `${f.dir}/leases.json`,
    '--status-socket', f.statusSocket, '--keepalive-sec', '1', '--timeout-sec', '5',
    ...extra,
  ];
}

/** `node` options for the spawned processes (e.g. --require a fixture), and their environment. */
export interface NodeOpts { nodeArgs?: string[]; env?: NodeJS.ProcessEnv }

export async function startServer(lab: Lab, f: VpnFixture, extra: string[] = [], o: NodeOpts = {}): Promise<ChildProcess> {
  const p = lab.spawn('server', [process.execPath, ...(o.nodeArgs ?? []), SERVER_MAIN, ...serverArgs(f, extra)], o.env ? { env: o.env } : {});
  await lab.waitForLine(p, /listening on udp/, 30_000);
  return p;
}

export function spawnClient(lab: Lab, f: VpnFixture, i: number, name: string, extra: string[] = [], o: NodeOpts = {}): ChildProcess {
  return lab.spawn(`client${i}`, [process.execPath, ...(o.nodeArgs ?? []), CLIENT_MAIN,
    '--server', `${ADDR.server}:1194`, '--name', name,
    '--ca', `${f.pki}/ca.crt`, '--cert', `${f.pki}/clients/${name}.crt`, '--key', `${f.pki}/clients/${name}.key`,
    '--state-dir', `${f.dir}/state-${i}`, '--reconnect-max-sec', '2', ...extra], o.env ? { env: o.env } : {});
}

export async function startClient(lab: Lab, f: VpnFixture, i: number, name: string, extra: string[] = [], o: NodeOpts = {}): Promise<{ proc: ChildProcess; address: string }> {
  const proc = spawnClient(lab, f, i, name, extra, o);
  const line = await lab.waitForLine(proc, /tunnel up: /, 30_000);
  const address = /tunnel up: ([0-9.]+)\//.exec(line)![1];
  return { proc, address };
}

/** Waits for a process to exit; resolves with its code (null when a signal ended it). */
export function exited(p: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(p.exitCode);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`process ${p.pid} still running after ${timeoutMs} ms`)), timeoutMs);
    p.once('exit', (code) => { clearTimeout(t); resolve(code); });
  });
}

/** When a log line of ours ("<ISO time> LEVEL component: ...") was written, in ms since the epoch. */
export function logTime(line: string): number {
  const ms = Date.parse(line.split(' ', 1)[0]);
  if (Number.isNaN(ms)) throw new Error(`not a log line with a timestamp: ${line}`);
  return ms;
}

/** Waits until file exists and its text matches re (a hook or script writes it); returns the text. */
export async function waitForFile(file: string, re: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
    if (re.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`${file} did not match ${re} within ${timeoutMs} ms; it holds: ${JSON.stringify(text.slice(-500))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs `during` while tcpdump on `host` writes what `iface` sees (matching `filter`, `snaplen`
 * bytes of each packet, 0 for all) to `file`; returns the file's bytes. Not for lo or "any":
 * the kernel counts a loopback packet twice, and drained() relies on one count per packet.
 */
export async function capture(lab: Lab, host: string, iface: string, filter: string, file: string,
  during: () => Promise<void>, snaplen = 0): Promise<Buffer> {
  if (iface === 'lo' || iface === 'any') throw new Error(`capture: interface ${iface} is not supported (packets counted twice)`);
  const dump = lab.spawn(host, ['tcpdump', '-i', iface, '--immediate-mode', '-U', '-n', '-s', String(snaplen), '-w', file, filter]);
  await lab.waitForLine(dump, /listening on/, 30_000);
  await during();
  await drained(lab, dump, 30_000);
  dump.kill('SIGINT');
  await exited(dump, 30_000);
  return fs.readFileSync(file);
}

/**
 * Waits until tcpdump has written every packet the kernel passed it. SIGINT drops what is
 * still in its buffer, and a loaded machine may not have let it read those yet. tcpdump
 * prints its counters on SIGUSR1: "N packets captured, M packets received by filter,
 * D packets dropped by kernel"; drained when N + D reaches M.
 */
async function drained(lab: Lab, dump: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    dump.kill('SIGUSR1');
    const line = await lab.waitForLine(dump, /\d+ packets? captured, \d+ packets? received by filter/, timeoutMs);
    const [captured, received, dropped] = (line.match(/\d+/g) ?? []).map(Number);
    if (captured + (dropped ?? 0) >= received) return;
    if (Date.now() > deadline) throw new Error(`tcpdump has not written every packet within ${timeoutMs} ms: ${line}`);
    await new Promise((r) => setTimeout(r, 20)); // (the counters have no event of their own)
  }
}
