// WireGuard in the benchmark's lab: Debian's wireguard-go (user space, like minivpn and
// OpenVPN without DCO), configured with `wg`. Each end runs wireguard-go in the foreground
// (-f: its PID is the process we measure and stop) on a TUN device it creates itself.
import { ChildProcess, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ADDR, Lab } from '../src/lab/topology';

export const WG_SERVER_TUN = '10.6.0.1';
const WG_CLIENT_TUN = '10.6.0.2';
export const WG_PORT = 51820;

/**
 * WireGuard's tunnel MTU over the same IPv4 underlay as minivpn (1500 on the veth): 20 bytes
 * IPv4 + 8 UDP + 16 header + 16 tag = 60, so 1440. (wg-quick's default, 1420, assumes an IPv6
 * underlay; minivpn's 1434 and OpenVPN's defaults assume IPv4 too.)
 */
export const WG_OVERHEAD_IPV4 = 60;
export function wireguardMtu(underlayMtu = 1500): number {
  return underlayMtu - WG_OVERHEAD_IPV4;
}

/** "wireguard-go v0.0.20220316" from `wireguard-go --version` (first line). */
export function wireguardVersion(): string {
  try {
    return execFileSync('wireguard-go', ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
  } catch {
    return 'wireguard-go (version unknown)';
  }
}

interface KeyPair { keyFile: string; pub: string }

/** A key pair from `wg genkey` / `wg pubkey`; the private key in a 0600 file. */
function keyPair(dir: string, name: string): KeyPair {
  const key = execFileSync('wg', ['genkey'], { encoding: 'utf8' }).trim();
  const keyFile = path.join(dir, `${name}.key`);
  fs.writeFileSync(keyFile, key + '\n', { mode: 0o600 });
  const pub = execFileSync('wg', ['pubkey'], { input: key + '\n', encoding: 'utf8' }).trim();
  return { keyFile, pub };
}

/**
 * Interface names for one instance. wireguard-go's control sockets live in /run/wireguard
 * (one file system for all namespaces), so the names carry this process's PID: a bench of
 * another checkout running at the same time has its own.
 */
export function wgNames(): { server: string; client: string } {
  const tag = String(process.pid % 1_000_000);
  return { server: `wgs${tag}`, client: `wgc${tag}` };
}

async function sh(lab: Lab, host: string, cmd: string[]): Promise<void> {
  const r = await lab.exec(host, cmd);
  if (r.code !== 0) throw new Error(`${host}: ${cmd.join(' ')} failed (exit ${r.code}): ${r.stderr.trim()}`);
}

/** Starts wireguard-go on one end and waits until its control socket answers `wg show`. */
async function startDaemon(lab: Lab, host: string, dev: string): Promise<ChildProcess> {
  const p = lab.spawn(host, ['wireguard-go', '-f', dev], { env: { ...process.env, LOG_LEVEL: 'error' } });
  for (let i = 0; ; i++) {
    if (p.exitCode !== null || p.signalCode !== null) throw new Error(`wireguard-go on ${host} exited: ${lab.output(p).slice(-500)}`);
    if ((await lab.exec(host, ['wg', 'show', dev])).code === 0) return p;
    if (i >= 100) throw new Error(`wireguard-go on ${host}: no control socket for ${dev} after 10 s`);
    await new Promise((r) => setTimeout(r, 100)); // the socket appears without any event to wait on
  }
}

/**
 * Starts a wireguard-go server (in "server") and client (in "client1") peered with each other,
 * the client with `persistent-keepalive` so that the server learns a new endpoint even when
 * no traffic flows; resolves once a ping crosses the tunnel. The caller stops both processes.
 */
export async function startWireguard(lab: Lab, dir: string, procs: ChildProcess[]): Promise<{ server: ChildProcess; client: ChildProcess; serverDev: string }> {
  const names = wgNames();
  const s = keyPair(dir, 'wg-server');
  const c = keyPair(dir, 'wg-client');
  const mtu = String(wireguardMtu());
  const server = await startDaemon(lab, 'server', names.server);
  procs.push(server);
  await sh(lab, 'server', ['wg', 'set', names.server, 'private-key', s.keyFile, 'listen-port', String(WG_PORT),
    'peer', c.pub, 'allowed-ips', `${WG_CLIENT_TUN}/32`]);
  await sh(lab, 'server', ['ip', 'addr', 'add', `${WG_SERVER_TUN}/24`, 'dev', names.server]);
  await sh(lab, 'server', ['ip', 'link', 'set', names.server, 'mtu', mtu, 'up']);
  const client = await startDaemon(lab, 'client1', names.client);
  procs.push(client);
  await sh(lab, 'client1', ['wg', 'set', names.client, 'private-key', c.keyFile,
    'peer', s.pub, 'endpoint', `${ADDR.server}:${WG_PORT}`, 'allowed-ips', `${WG_SERVER_TUN}/32`, 'persistent-keepalive', '1']);
  await sh(lab, 'client1', ['ip', 'addr', 'add', `${WG_CLIENT_TUN}/24`, 'dev', names.client]);
  await sh(lab, 'client1', ['ip', 'link', 'set', names.client, 'mtu', mtu, 'up']);
  // -c 1 -w 15: ping until the first reply (the handshake), at most 15 s.
  const r = await lab.exec('client1', ['ping', '-c', '1', '-w', '15', WG_SERVER_TUN], { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`wireguard-go tunnel did not come up: ${r.stdout.trim().split('\n').pop()}\n${lab.output(client).slice(-500)}`);
  return { server, client, serverDev: names.server };
}
