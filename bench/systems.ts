// Starting and stopping the systems the benchmarks compare (bench/vpn.ts, bench/roam.ts) in
// the pair lab: minivpn (this build or another checkout's), OpenVPN, wireguard-go. Each
// with*() starts both ends, hands the callback what it measures with, and stops both (by PID)
// before it returns, also on an error.
import { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ADDR, Lab } from '../src/lab/topology';
import { readStatus } from '../src/server/status';
import type { ServerStatus } from '../src/server/server';
import { openvpnClientArgs, openvpnServerArgs, OVPN_SERVER_TUN, startOpenVpn } from './openvpn';
import { startWireguard, WG_SERVER_TUN } from './wireguard';

export const MINIVPN_SERVER_TUN = '10.8.0.1';
/** The server's inner IPv6 address (the default --pool6's ::1): the same tunnel, the other family. */
export const MINIVPN_SERVER_TUN6 = 'fd6d:7670:6e00::1';
export const MINIVPN_2_SERVER_TUN = '10.9.0.1';
export { OVPN_SERVER_TUN, WG_SERVER_TUN };
const OVPN_TUN_DEV = 'ovpns0';    // openvpnServerArgs' default dev

/** Counts the packets that crossed the tunnel so far (both directions). */
export type PacketCounter = () => Promise<number>;

/** What a callback gets: the two processes (server first), their PIDs, a packet counter. */
export interface Running { pids: number[]; packets: PacketCounter; server: ChildProcess; client: ChildProcess; statusSocket?: string }

/**
 * OpenVPN's and wireguard-go's: packets the server's TUN device sent plus received (from
 * /proc/net/dev in its namespace); each is one datagram on the wire. (Not the underlay's eth0
 * counters: with UDP segmentation offload a run of datagrams crosses the veth as one packet.)
 */
async function tunnelPackets(lab: Lab, dev: string): Promise<number> {
  const r = await lab.exec('server', ['cat', '/proc/net/dev']);
  const line = r.stdout.split('\n').find((l) => l.trim().startsWith(`${dev}:`));
  if (!line) return 0;
  const f = line.split(':')[1].trim().split(/\s+/).map(Number);
  return f[1] + f[9]; // rx packets, tx packets
}

/**
 * minivpn's: the packets its server forwarded for its clients, from the status socket. (Not the
 * TUN's counters: with --tun-gro one write into the TUN carries many packets.)
 */
function statusPackets(socket: string): PacketCounter {
  return async () => {
    const st = (await readStatus(socket)) as ServerStatus;
    return st.clients.reduce((n, c) => n + c.rxPackets + c.txPackets, 0);
  };
}

/** SIGTERM by PID, wait up to 5 s, then SIGKILL: each system is gone before the next starts. */
export async function stop(p: ChildProcess): Promise<void> {
  if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise<void>((res) => p.once('exit', () => res()));
  try { process.kill(p.pid, 'SIGTERM'); } catch { return; }
  const timedOut = await Promise.race([gone.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 5000).unref())]);
  if (timedOut) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
    await Promise.race([gone, new Promise((r) => setTimeout(r, 2000).unref())]);
  }
}

async function stopAll(procs: ChildProcess[]): Promise<void> {
  for (const p of [...procs].reverse()) await stop(p);
}

/** Where a minivpn instance listens and what it calls its TUNs: a second one runs beside the first in alternatingRtt. */
export interface MinivpnInstance { port: number; pool: string; serverTun: string; clientTun: string; /** --pool6, when not the default (a build from before IPv6 knows no such flag). */ pool6?: string }
export const MINIVPN: MinivpnInstance = { port: 1194, pool: '10.8.0.0/24', serverTun: 'mvpn0', clientTun: 'mvpn1' };
export const MINIVPN_2: MinivpnInstance = { port: 1196, pool: '10.9.0.0/24', serverTun: 'mvpn2', clientTun: 'mvpn3', pool6: 'fd6d:7670:6e02::/64' };

/** The server and client programs of a minivpn checkout (this one, or --baseline's). */
export interface Mains { server: string; client: string }
export const THIS_BUILD: Mains = {
  server: path.resolve(__dirname, '..', 'src', 'server', 'main.js'),
  client: path.resolve(__dirname, '..', 'src', 'client', 'main.js'),
};
export function mainsOf(checkout: string): Mains {
  const m = { server: path.join(checkout, 'dist', 'src', 'server', 'main.js'), client: path.join(checkout, 'dist', 'src', 'client', 'main.js') };
  for (const f of [m.server, m.client]) if (!fs.existsSync(f)) throw new Error(`--baseline: ${f} not found (run npm ci in ${checkout} first)`);
  return m;
}

export interface MinivpnOptions { inst?: MinivpnInstance; mains?: Mains; /** Flags for the server only (e.g. --no-float). */ serverFlags?: string[] }

/** minivpn's server and client; `flags` go to both. */
export async function withMinivpn<T>(lab: Lab, dir: string, pki: string, flags: string[], fn: (r: Running) => Promise<T>, o: MinivpnOptions = {}): Promise<T> {
  const inst = o.inst ?? MINIVPN;
  const mains = o.mains ?? THIS_BUILD;
  const run = fs.mkdtempSync(path.join(dir, 'mv-'));
  const procs: ChildProcess[] = [];
  try {
    const server = lab.spawn('server', [process.execPath, mains.server,
      '--listen', `${ADDR.server}:${inst.port}`, '--pool', inst.pool, ...(inst.pool6 ? ['--pool6', inst.pool6] : []), '--tun-name', inst.serverTun,
      '--ca', `${pki}/ca.crt`, '--cert', `${pki}/server.crt`, '--key', `${pki}/server.key`,
      '--authorized-dir', `${pki}/authorized`, '--leases-file', `${run}/leases.json`,
      '--status-socket', `${run}/status.sock`, ...flags, ...(o.serverFlags ?? [])]);
    procs.push(server);
    await lab.waitForLine(server, /listening on udp/, 15_000);
    const client = lab.spawn('client1', [process.execPath, mains.client,
      '--server', `${ADDR.server}:${inst.port}`, '--name', 'bench', '--tun-name', inst.clientTun,
      '--ca', `${pki}/ca.crt`, '--cert', `${pki}/clients/bench.crt`, '--key', `${pki}/clients/bench.key`,
      '--state-dir', `${run}/state`, ...flags]);
    procs.push(client);
    try {
      await lab.waitForLine(client, /tunnel up: /, 15_000);
    } catch (err) {
      throw new Error(`minivpn client did not come up: ${(err as Error).message}\n${lab.output(client).split('\n').slice(-10).join('\n')}`);
    }
    const statusSocket = `${run}/status.sock`;
    return await fn({ pids: [server.pid!, client.pid!], packets: statusPackets(statusSocket), server, client, statusSocket });
  } finally {
    await stopAll(procs);
  }
}

/** OpenVPN's server and client (bench/openvpn.ts); `serverExtra` appended to the server's arguments. */
export async function withOpenvpn<T>(lab: Lab, pki: string, fn: (r: Running) => Promise<T>, serverExtra: string[] = []): Promise<T> {
  const procs: ChildProcess[] = [];
  try {
    const serverArgs = [...openvpnServerArgs({ ca: `${pki}/ca.crt`, cert: `${pki}/server.crt`, key: `${pki}/server.key` }), ...serverExtra];
    const server = lab.spawn('server', ['openvpn', ...serverArgs]);
    procs.push(server);
    try {
      await lab.waitForLine(server, /Initialization Sequence Completed/, 30_000);
    } catch (err) {
      throw new Error(`openvpn server did not come up: ${(err as Error).message}\n${lab.output(server).split('\n').slice(-15).join('\n')}`);
    }
    const client = await startOpenVpn(lab, 'client1', openvpnClientArgs({ ca: `${pki}/ca.crt`, cert: `${pki}/clients/bench.crt`, key: `${pki}/clients/bench.key` }));
    procs.push(client);
    return await fn({ pids: [server.pid!, client.pid!], packets: () => tunnelPackets(lab, OVPN_TUN_DEV), server, client });
  } finally {
    await stopAll(procs);
  }
}

/** wireguard-go at both ends (bench/wireguard.ts). */
export async function withWireguard<T>(lab: Lab, dir: string, fn: (r: Running) => Promise<T>): Promise<T> {
  const procs: ChildProcess[] = [];
  try {
    const wg = await startWireguard(lab, dir, procs);
    return await fn({ pids: [wg.server.pid!, wg.client.pid!], packets: () => tunnelPackets(lab, wg.serverDev), server: wg.server, client: wg.client });
  } finally {
    await stopAll(procs);
  }
}
