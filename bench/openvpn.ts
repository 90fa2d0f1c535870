// Helpers for the side-by-side benchmark (bench/vpn.ts): installing the tools, and running
// OpenVPN (Debian's 2.6) in the lab with the same certificates minivpn uses.
import { ChildProcess, execFileSync } from 'child_process';
import { Lab, ADDR } from '../src/lab/topology';

/** The OpenVPN tunnel network (minivpn uses 10.8.0.0/24, so the two never overlap). */
export const OVPN_NET = '10.7.0.0';
export const OVPN_SERVER_TUN = '10.7.0.1';
export const OVPN_PORT = 1195;

function has(cmd: string): boolean {
  try { execFileSync('bash', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; }
}

/**
 * Installs iperf3, openvpn, wireguard-go and wg with apt-get if they are missing (as
 * scripts/deps.sh bench does). Returns the packages installed.
 */
export function ensureTools(say: (line: string) => void): string[] {
  const want: Array<[string, string]> = [['iperf3', 'iperf3'], ['openvpn', 'openvpn'], ['ping', 'iputils-ping'],
    ['wireguard-go', 'wireguard-go'], ['wg', 'wireguard-tools'], ['stdbuf', 'coreutils']];
  const missing = want.filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg);
  if (missing.length === 0) return [];
  say(`installing ${missing.join(' ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'ignore', env });
  return missing;
}

/** "OpenVPN 2.6.x ..." from `openvpn --version` (first line). */
export function openvpnVersion(): string {
  try {
    return execFileSync('openvpn', ['--version'], { encoding: 'utf8' }).split('\n')[0].trim();
  } catch (err) {
    // openvpn --version exits 1 on some builds while still printing the version.
    const out = String((err as { stdout?: string }).stdout ?? '');
    return out.split('\n')[0].trim() || 'openvpn (version unknown)';
  }
}

export interface OvpnPki { ca: string; cert: string; key: string }

// Settings both ends share: UDP, a named TUN, AES-256-GCM only, no kernel offload (DCO),
// so that OpenVPN, like minivpn, moves every packet through a user-space process.
function common(dev: string, pki: OvpnPki): string[] {
  return [
    '--dev', dev, '--dev-type', 'tun',
    '--ca', pki.ca, '--cert', pki.cert, '--key', pki.key,
    '--cipher', 'AES-256-GCM', '--data-ciphers', 'AES-256-GCM',
    '--disable-dco', '--verb', '3',
  ];
}

export function openvpnServerArgs(pki: OvpnPki, dev = 'ovpns0'): string[] {
  // --server implies --mode server and --tls-server.
  return [
    '--proto', 'udp', '--local', ADDR.server, '--port', String(OVPN_PORT),
    '--server', OVPN_NET, '255.255.255.0', '--topology', 'subnet',
    '--dh', 'none',
    ...common(dev, pki),
  ];
}

export function openvpnClientArgs(pki: OvpnPki, dev = 'ovpnc0'): string[] {
  return ['--client', '--remote', ADDR.server, String(OVPN_PORT), 'udp', '--nobind', ...common(dev, pki)];
}

/** Starts openvpn in a lab host and waits for "Initialization Sequence Completed". */
export async function startOpenVpn(lab: Lab, host: string, args: string[], timeoutMs = 30_000): Promise<ChildProcess> {
  const p = lab.spawn(host, ['openvpn', ...args]);
  try {
    await lab.waitForLine(p, /Initialization Sequence Completed/, timeoutMs);
  } catch (err) {
    throw new Error(`openvpn on ${host} did not come up: ${(err as Error).message}\n${lab.output(p).split('\n').slice(-15).join('\n')}`);
  }
  return p;
}
