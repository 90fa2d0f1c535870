// The field tables: every server and client option described once (JSON key, flag, check,
// default, help). The parser (src/config/parse.ts) and usage() are driven by them.

import { MAX_TUNNEL_MTU } from '../wire/control';
import { TOPOLOGIES } from './types';
import { DEFAULT_POOL6 } from '../device/pool6';
import {
  LOG_LEVELS, bool, clientName, hostPort, hostname, ifname, ifnameTemplate, int, ipv4, ipv4Cidr, ipv6, ipv6Cidr, list, nullable, oneOf, path, pullFilter, seconds,
  unixSocketPath, userOrGroup,
} from './checks';

export interface Field {
  key: string;                    // JSON key and ConfigError.field
  flag: string;                   // long flag, without "--"
  aliases?: string[];             // other accepted flag spellings
  type: 'value' | 'bool' | 'list';
  nullable?: boolean;             // --no-<flag> sets null
  number?: boolean;               // flag strings that look like numbers become numbers
  metavar?: string;
  def: unknown;                   // default (undefined: computed after parsing)
  defText?: string;               // default as shown in usage()
  help: string;
  check(v: unknown): unknown;
}

const cidrRoute = ipv4Cidr('10.9.0.0/24', 0, 32);

// Both sides decide it for what they send and read.
const UDP_GSO_FIELD: Field = {
  key: 'udpGso', flag: 'udp-gso', type: 'bool', def: false,
  help: 'UDP segmentation offload: runs of same-size datagrams sent and read as one (faster; a capture on this host then shows each run as one large packet)',
  check: bool,
};

// Each side decides it for the packets it writes into its own TUN. On by default: nothing
// changes on the wire, only a capture on the receiving TUN shows merged packets (as on any
// network card with GRO), and the kernel's TCP work per byte drops a lot.
const TUN_GRO_FIELD: Field = {
  key: 'tunGro', flag: 'tun-gro', type: 'bool', def: true,
  help: "TUN receive offload: a batch's segments of one TCP connection are written to the kernel as one large packet (faster; a capture on this host's TUN then shows the merged packets, the network does not)",
  check: bool,
};

// On by default: it changes only when this process gives up its CPU (src/os/latency.ts).
const HANDOFF_YIELD_FIELD: Field = {
  key: 'handoffYield', flag: 'handoff-yield', type: 'bool', def: true,
  help: 'after passing a few packets on, let the process they woke run first (lower latency for interactive traffic; see src/os/latency.ts)',
  check: bool,
};

// TUN (IP packets) or TAP (Ethernet frames); both sides must agree (docs/PROTOCOL.md §3).
const DEV_FIELD: Field = {
  key: 'dev', flag: 'dev', type: 'value', metavar: 'tun|tap', def: 'tun',
  help: 'the device type: tun carries IP packets (layer 3), tap whole Ethernet frames (layer 2: ARP, DHCP, broadcasts); server and clients must agree',
  check: oneOf(['tun', 'tap'] as const),
};

// What the server pushes goes to each client in one control frame, which must fit one
// datagram slot (2048 bytes): 64 routes of the longest form ("255.255.255.255/32") and 4
// DNS servers leave room for the rest (test/config.test.ts checks the worst case).
export const MAX_PUSHED_ROUTES = 64;
export const MAX_PUSHED_DNS = 4;

export const SERVER_FIELDS: Field[] = [
  { key: 'listen', flag: 'listen', type: 'value', metavar: 'HOST:PORT', def: { host: '::', port: 1194 }, defText: '[::]:1194', help: 'UDP address to listen on; [::] is dual stack', check: hostPort('listen') },
  { key: 'pool', flag: 'pool', type: 'value', metavar: 'CIDR', def: { network: '10.8.0.0', prefix: 24 }, defText: '10.8.0.0/24', help: 'tunnel address pool; the server takes the first address (.1)', check: ipv4Cidr('10.8.0.0/24', 8, 30) },
  { key: 'pool6', flag: 'pool6', type: 'value', metavar: 'CIDR', def: DEFAULT_POOL6, help: 'IPv6 tunnel pool (/64../126), a fixed unique local prefix by default; the server takes ::1', check: ipv6Cidr('fd6d:7670:6e00::/64', 64, 126) },
  { key: 'ipv6', flag: 'ipv6', type: 'bool', def: true, help: 'IPv6 inside the tunnel (an address from --pool6 for each client); --no-ipv6: IPv4 only', check: bool },
  { key: 'topology', flag: 'topology', type: 'value', metavar: 'subnet|p2p', def: 'subnet', help: 'subnet: one shared TUN, the server routes between clients; p2p: a TUN per client, each a point-to-point link the kernel routes (multicast and routing daemons work)', check: oneOf(TOPOLOGIES) },
  { key: 'tunName', flag: 'tun-name', type: 'value', metavar: 'NAME', def: 'mvpn0', defText: 'mvpn0; with p2p mvp%d', help: 'TUN (or TAP) device name; NAME%d lets the kernel number it (with --topology p2p: the template of the per-client TUNs)', check: ifnameTemplate('an interface name') },
  DEV_FIELD,
  { key: 'macLimit', flag: 'mac-limit', type: 'value', number: true, metavar: 'N', def: 4, help: 'with --dev tap: source MACs one client may send from (the first it is seen with); frames from others are dropped and counted (spoofed_mac)', check: int(1, 64) },
  { key: 'bridge', flag: 'bridge', type: 'value', nullable: true, metavar: 'NAME', def: null, defText: 'none', help: "with --dev tap: add the server's TAP to this Linux bridge (made if missing, and then removed on exit); the server's address goes on the bridge", check: nullable(ifname('a bridge name')) },
  { key: 'dhcp', flag: 'dhcp', type: 'bool', def: false, help: 'with --dev tap: clients take their IPv4 address by DHCP from a DHCP server on this side of the link (dnsmasq on the TAP or bridge), not from the pushed config', check: bool },
  { key: 'broadcastPerSec', flag: 'broadcast-per-sec', type: 'value', number: true, metavar: 'N', def: 200, help: 'with --dev tap: broadcast and multicast frames one client may send a second (bursts of twice that); the rest are dropped and counted (broadcast_limit)', check: int(1, 1_000_000) },
  { key: 'underlayMtu', flag: 'underlay-mtu', type: 'value', number: true, metavar: 'N', def: 1500, help: 'MTU of the network the UDP packets cross (at most 2000: the data path has 2 KB buffers)', check: int(576, MAX_TUNNEL_MTU) },
  { key: 'mtu', flag: 'mtu', type: 'value', number: true, metavar: 'N', def: undefined, defText: 'computed: 1434 with DTLS, 1471 plaintext (1414 and 1451 listening on an IPv6 address); 14 less with --dev tap', help: 'tunnel MTU, pushed to clients (at most 2000; with --dev tap at most 1986, the Ethernet header comes on top)', check: int(576, MAX_TUNNEL_MTU) },
  { key: 'ca', flag: 'ca', type: 'value', metavar: 'FILE', def: 'pki/ca.crt', help: 'CA certificate that client certificates must chain to', check: path },
  { key: 'cert', flag: 'cert', type: 'value', metavar: 'FILE', def: 'pki/server.crt', help: "server's certificate", check: path },
  { key: 'key', flag: 'key', type: 'value', metavar: 'FILE', def: 'pki/server.key', help: "server's private key", check: path },
  { key: 'authorizedDir', flag: 'authorized-dir', type: 'value', metavar: 'DIR', def: 'pki/authorized', help: 'one file per authorized client CN', check: path },
  { key: 'leasesFile', flag: 'leases-file', type: 'value', metavar: 'FILE', def: 'run/leases.json', help: 'remembers which client got which address', check: path },
  { key: 'clientToClient', flag: 'client-to-client', type: 'bool', def: true, help: 'let clients reach each other through the server', check: bool },
  { key: 'routes', flag: 'routes', aliases: ['route'], type: 'list', metavar: 'CIDR[,CIDR]', def: [], defText: 'none', help: 'networks pushed to clients (split tunnel); repeatable', check: list((v) => { const c = cidrRoute(v); return `${c.network}/${c.prefix}`; }, '["10.9.0.0/24"] of IPv4 CIDRs', MAX_PUSHED_ROUTES) },
  { key: 'routes6', flag: 'routes6', aliases: ['route6'], type: 'list', metavar: 'CIDR[,CIDR]', def: [], defText: 'none', help: 'IPv6 networks pushed to clients; repeatable', check: list(ipv6Cidr('2001:db8:50::/64', 1, 128), '["2001:db8:50::/64"] of IPv6 CIDRs', MAX_PUSHED_ROUTES) },
  { key: 'redirectGateway', flag: 'redirect-gateway', type: 'bool', def: false, help: 'push a default route: all client traffic (IPv4, and IPv6 unless --no-ipv6) goes through the tunnel', check: bool },
  { key: 'dns', flag: 'dns', type: 'list', metavar: 'ADDR[,ADDR]', def: [], defText: 'none', help: 'DNS servers pushed to clients; repeatable', check: list(ipv4, '["10.8.0.1"] of IPv4 addresses', MAX_PUSHED_DNS) },
  { key: 'dns6', flag: 'dns6', type: 'list', metavar: 'ADDR[,ADDR]', def: [], defText: 'none', help: 'IPv6 DNS servers pushed to clients; repeatable', check: list(ipv6, '["fd6d:7670:6e00::1"] of IPv6 addresses', MAX_PUSHED_DNS) },
  { key: 'mssClamp', flag: 'mss-clamp', type: 'bool', def: true, help: 'clamp the TCP MSS of connections through the tunnel to fit its MTU', check: bool },
  UDP_GSO_FIELD,
  TUN_GRO_FIELD,
  HANDOFF_YIELD_FIELD,
  { key: 'natOut', flag: 'nat-out', type: 'value', nullable: true, metavar: 'IFACE', def: null, defText: 'off', help: 'masquerade client traffic leaving through this interface', check: nullable(ifname('an interface name')) },
  { key: 'keepaliveSec', flag: 'keepalive-sec', aliases: ['keepalive'], type: 'value', number: true, metavar: 'SEC', def: 10, help: 'send a keepalive after this much silence', check: seconds(0.1, 3600) },
  { key: 'timeoutSec', flag: 'timeout-sec', aliases: ['timeout'], type: 'value', number: true, metavar: 'SEC', def: 60, help: 'drop a client silent this long (must exceed keepalive)', check: seconds(0.2, 86400) },
  { key: 'onConnect', flag: 'on-connect', type: 'value', nullable: true, metavar: 'PROGRAM', def: null, defText: 'none', help: 'program run when a client connects', check: nullable(path) },
  { key: 'onDisconnect', flag: 'on-disconnect', type: 'value', nullable: true, metavar: 'PROGRAM', def: null, defText: 'none', help: 'program run when a client disconnects', check: nullable(path) },
  // Roaming (docs/PROTOCOL.md §5): a client's session follows its next authenticated, fresh record.
  { key: 'float', flag: 'float', type: 'bool', def: true, help: 'let a client move to a new address or port (roaming); --no-float pins each session to its address', check: bool },
  { key: 'onMove', flag: 'on-move', type: 'value', nullable: true, metavar: 'PROGRAM', def: null, defText: 'none', help: 'program run when a client moves (MINIVPN_OLD_REMOTE has the old endpoint)', check: nullable(path) },
  { key: 'moveTrialsPerSec', flag: 'move-trials-per-sec', type: 'value', number: true, metavar: 'N', def: 4000, help: 'at most this many trial decryptions of records from unknown addresses per second (bounds the CPU a flood costs)', check: int(0, 1_000_000) },
  { key: 'handshakesPerSource', flag: 'handshakes-per-source', type: 'value', number: true, metavar: 'N', def: 8, help: 'DTLS handshakes in progress from one source (an IPv4 address, an IPv6 /64) at most', check: int(1, 100_000) },
  { key: 'statusSocket', flag: 'status-socket', type: 'value', metavar: 'PATH', def: 'run/minivpn.sock', help: 'unix socket answering status queries', check: unixSocketPath },
  { key: 'plaintext', flag: 'insecure-plaintext', type: 'bool', def: false, help: 'no DTLS: packets cross the network in the clear (for tcpdump labs only)', check: bool },
  { key: 'keylog', flag: 'keylog', type: 'value', nullable: true, metavar: 'FILE', def: null, defText: 'off', help: 'append DTLS secrets in NSS key log format (for Wireshark)', check: nullable(path) },
  { key: 'user', flag: 'user', type: 'value', nullable: true, metavar: 'USER', def: null, defText: 'stay root', help: 'drop privileges to this user after setup', check: nullable(userOrGroup) },
  { key: 'group', flag: 'group', type: 'value', nullable: true, metavar: 'GROUP', def: null, defText: "user's group", help: 'drop privileges to this group after setup', check: nullable(userOrGroup) },
  { key: 'logLevel', flag: 'log-level', type: 'value', metavar: 'LEVEL', def: 'info', help: 'debug, info, warn or error (env MINIVPN_LOG)', check: oneOf(LOG_LEVELS) },
];

export const CLIENT_FIELDS: Field[] = [
  { key: 'server', flag: 'server', type: 'value', metavar: 'HOST:PORT', def: undefined, defText: 'required', help: "server's UDP address", check: hostPort('server') },
  { key: 'serverName', flag: 'server-name', type: 'value', metavar: 'NAME', def: 'server.minivpn.test', help: 'name the server certificate must carry', check: hostname },
  { key: 'ca', flag: 'ca', type: 'value', metavar: 'FILE', def: 'pki/ca.crt', help: 'CA certificate the server certificate must chain to', check: path },
  { key: 'cert', flag: 'cert', type: 'value', metavar: 'FILE', def: undefined, defText: 'pki/clients/NAME.crt', help: "client's certificate", check: path },
  { key: 'key', flag: 'key', type: 'value', metavar: 'FILE', def: undefined, defText: 'pki/clients/NAME.key', help: "client's private key", check: path },
  { key: 'name', flag: 'name', type: 'value', nullable: true, metavar: 'NAME', def: null, defText: 'none', help: 'client name: picks the default cert and key paths', check: nullable(clientName) },
  { key: 'tunName', flag: 'tun-name', type: 'value', metavar: 'NAME', def: 'mvpn1', help: 'TUN (or TAP) device name', check: ifname('an interface name') },
  DEV_FIELD,
  { key: 'plaintext', flag: 'insecure-plaintext', type: 'bool', def: false, help: 'no DTLS: packets cross the network in the clear (for tcpdump labs only)', check: bool },
  { key: 'plaintextCn', flag: 'plaintext-cn', type: 'value', nullable: true, metavar: 'NAME', def: null, defText: 'NAME', help: 'identity claimed in plaintext mode', check: nullable(clientName) },
  { key: 'keylog', flag: 'keylog', type: 'value', nullable: true, metavar: 'FILE', def: null, defText: 'off', help: 'append DTLS secrets in NSS key log format (for Wireshark)', check: nullable(path) },
  { key: 'reconnectMinSec', flag: 'reconnect-min-sec', type: 'value', number: true, metavar: 'SEC', def: 1, help: 'first wait before reconnecting (doubles each try)', check: seconds(0.1, 3600) },
  { key: 'reconnectMaxSec', flag: 'reconnect-max-sec', type: 'value', number: true, metavar: 'SEC', def: 30, help: 'longest wait between reconnects', check: seconds(0.1, 3600) },
  { key: 'routeNopull', flag: 'route-nopull', type: 'bool', def: false, help: "ignore the routes (and the redirect) the server pushes; the tunnel's own subnet still works", check: bool },
  { key: 'pullFilters', flag: 'pull-filter', type: 'list', metavar: 'ACTION:TEXT', def: [], defText: 'none', help: 'accept, ignore or reject pushed items that start with TEXT ("route 10.9.", "redirect-gateway", "dns "); first match wins; repeatable', check: list(pullFilter, '["ignore:redirect-gateway"]', 32) },
  { key: 'allowIpv6Leak', flag: 'allow-ipv6-leak', type: 'bool', def: false, help: "full tunnel with a server that offers no IPv6: let IPv6 go out of the other interfaces (by default it is blocked while the tunnel is up)", check: bool },
  { key: 'stateDir', flag: 'state-dir', type: 'value', metavar: 'DIR', def: '/run/minivpn', help: 'where the client keeps its runtime state (made 0700; a symbolic link, or a directory of another user, is refused)', check: path },
  UDP_GSO_FIELD,
  TUN_GRO_FIELD,
  HANDOFF_YIELD_FIELD,
  { key: 'logLevel', flag: 'log-level', type: 'value', metavar: 'LEVEL', def: 'info', help: 'debug, info, warn or error (env MINIVPN_LOG)', check: oneOf(LOG_LEVELS) },
];

/** The --help text, generated from the field table. */
export function usage(kind: 'server' | 'client'): string {
  const fields = kind === 'server' ? SERVER_FIELDS : CLIENT_FIELDS;
  const rows: [string, string][] = [];
  for (const f of fields) {
    const flag = f.type === 'bool' ? `--[no-]${f.flag}` : `--${f.flag} ${f.metavar ?? 'VALUE'}`;
    const def = f.defText ?? (f.type === 'bool' ? (f.def ? 'on' : 'off') : String(f.def));
    rows.push([flag, `${f.help} (default: ${def})`]);
  }
  rows.push(['--config FILE', 'JSON file with the same fields in camelCase; flags override it']);
  rows.push(['-- PROG ARGS...', kind === 'server'
    ? 'with --topology p2p: run PROG ARGS when a client\'s link comes up (TUN_EVENT=up) and goes down (TUN_EVENT=down), TUN_DEV_NAME, TUN_CLIENT_ID etc. in its environment; a nonzero exit on up closes that link'
    : 'run PROG ARGS when the tunnel comes up (TUN_EVENT=up) and goes down (TUN_EVENT=down), TUN_DEV_NAME etc. in its environment; a nonzero exit on up ends the client']);
  // Read by src/profile/load.ts before this parser runs: it becomes flags.
  if (kind === 'client') rows.push(['--profile FILE', 'one-file profile from "minivpn pki export": server, CA, certificate, key, options; flags override it']);
  rows.push(['--help', 'show this text']);
  const width = Math.max(...rows.map(([a]) => a.length)) + 2;
  const lines = [
    `usage: minivpn ${kind} [options] [-- PROG ARGS...]     (or: npm run ${kind} -- [options] [-- PROG ARGS...])`,
    kind === 'server'
      ? 'Runs the minivpn server: a TUN device, a UDP socket and DTLS sessions with clients.'
      : 'Runs the minivpn client: connects to the server and brings up a TUN device.',
    '',
    ...rows.map(([a, b]) => `  ${a.padEnd(width)}${b}`),
    '',
    'Every option is documented in docs/CONFIG.md.',
  ];
  return lines.join('\n') + '\n';
}
