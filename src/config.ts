// Flags and config files for the server and the client, validated.
//
// Both programs take long flags (`--listen 0.0.0.0:1194`, `--listen=0.0.0.0:1194`, booleans as
// `--client-to-client` / `--no-client-to-client`) and an optional JSON file (`--config FILE`).
// Precedence, lowest first: built-in defaults < environment (MINIVPN_LOG) < file < flags.
//
// Every field is described once, in a table (SERVER_FIELDS / CLIENT_FIELDS): its JSON key, its
// flag, how to check a value, and its help text. The parser, the error messages and usage()
// are all driven by that table, so they cannot drift apart. Errors name the field and say what
// was expected, e.g.
//   config: "pool": expected an IPv4 CIDR like 10.8.0.0/24, got "10.8.0/24" (flag --pool)
// See docs/CONFIG.md for every field.

import * as fs from 'node:fs';
import * as net from 'node:net';
import { MAX_TUNNEL_MTU } from './wire/control';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export interface HostPort { host: string; port: number }

export interface ServerConfig {
  listen: HostPort;
  pool: { network: string; prefix: number };
  tunName: string;
  underlayMtu: number;
  mtu: number;
  ca: string; cert: string; key: string;
  authorizedDir: string;
  leasesFile: string;
  clientToClient: boolean;
  routes: string[];
  redirectGateway: boolean;
  dns: string[];
  natOut: string | null;
  mssClamp: boolean;
  udpGso: boolean;
  tunGro: boolean;
  handoffYield: boolean;
  keepaliveSec: number;
  timeoutSec: number;
  onConnect: string | null;
  onDisconnect: string | null;
  statusSocket: string;
  plaintext: boolean;
  keylog: string | null;
  user: string | null;
  group: string | null;
  logLevel: LogLevel;
}

export interface ClientConfig {
  server: HostPort;
  serverName: string;
  ca: string; cert: string; key: string;   // cert/key are '' in plaintext mode when neither --name nor a path was given
  name: string | null;
  tunName: string;
  plaintext: boolean;
  plaintextCn: string | null;
  keylog: string | null;
  reconnectMinSec: number;
  reconnectMaxSec: number;
  stateDir: string;
  udpGso: boolean;
  tunGro: boolean;
  handoffYield: boolean;
  logLevel: LogLevel;
}

/** A bad configuration value. `field` is the JSON key (e.g. "pool") or, for an unknown flag, the flag. */
export class ConfigError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/** Thrown by parse*Args when --help / -h is given; the message is the usage text. */
export class HelpRequested extends Error {
  constructor(kind: 'server' | 'client') {
    super(usage(kind));
    this.name = 'HelpRequested';
  }
}

// ---------------------------------------------------------------------------------------------
// MTU

/**
 * The largest inner IP packet that fits in one underlay packet without fragmentation.
 *
 * Each tunnelled packet is wrapped, outermost first, in:
 *   outer IP header      20 bytes for IPv4, 40 for IPv6 (no options / extension headers)
 *   UDP header            8
 *   DTLS 1.2 record      37 worst case, with AES-GCM: record header 13 + explicit nonce 8 +
 *                           GCM tag 16. (ChaCha20-Poly1305 has no explicit nonce in DTLS 1.2,
 *                           so 29; AES-GCM is the worst case we may negotiate.)
 *                        0 in --insecure-plaintext mode (no DTLS at all)
 *   our frame header      1 byte (the frame type, see docs/PROTOCOL.md)
 * So over IPv4 with a 1500-byte underlay: 1500-20-8-37-1 = 1434; plaintext: 1500-20-8-1 = 1471.
 */
export function computeTunnelMtu(underlayMtu: number, plaintext: boolean, ipv6Underlay: boolean): number {
  const IP = ipv6Underlay ? 40 : 20;
  const UDP = 8;
  const DTLS = plaintext ? 0 : 13 + 8 + 16;
  const FRAME = 1;
  return underlayMtu - IP - UDP - DTLS - FRAME;
}

// ---------------------------------------------------------------------------------------------
// Value checks. Each returns the normalised value or throws Expected('<what was expected>');
// the parser turns that into a ConfigError naming the field, the value and where it came from.

class Expected extends Error {
  /** `got` overrides the value shown in the message (e.g. one bad element of a list). */
  constructor(what: string, readonly got?: unknown) {
    super(what);
  }
}

/**
 * Names of clients (certificate CNs), which are also file names in pki/clients and the
 * authorized directory: 1-64 characters, starting with a letter or digit (no hidden files,
 * nothing a shell would take for an option), then letters, digits, '.', '_' or '-'.
 */
export const CLIENT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Why `name` is not a valid client name, or null if it is. */
export function clientNameProblem(name: unknown): string | null {
  if (typeof name !== 'string') return 'expected a string';
  if (name === '') return 'must not be empty';
  if (!/^[A-Za-z0-9]/.test(name)) return 'must start with a letter or digit';
  if (name.length > 64) return 'must be at most 64 characters';
  if (!CLIENT_NAME_RE.test(name)) return 'expected only A-Z a-z 0-9 . _ -';
  return null;
}

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const USER_RE = /^(?:[A-Za-z_][A-Za-z0-9._-]{0,31}\$?|\d{1,10})$/;
const LOG_LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error'];

function str(v: unknown, what = 'a non-empty string'): string {
  if (typeof v !== 'string' || v === '' || v.includes('\0')) throw new Expected(what);
  return v;
}

function path(v: unknown): string {
  return str(v, 'a file path');
}

function int(min: number, max: number) {
  return (v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Expected(`an integer from ${min} to ${max}`);
    return v;
  };
}

function seconds(min: number, max: number) {
  return (v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new Expected(`a number of seconds from ${min} to ${max}`);
    return v;
  };
}

function bool(v: unknown): boolean {
  if (typeof v !== 'boolean') throw new Expected('true or false');
  return v;
}

function ifname(what: string) {
  return (v: unknown): string => {
    if (typeof v !== 'string' || !IFNAME_RE.test(v) || v === '.' || v === '..') {
      throw new Expected(`${what} of 1-15 characters from A-Z a-z 0-9 _ . -`);
    }
    return v;
  };
}

function ipv4ToInt(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** "10.8.0.0/24" -> {network, prefix}; the address must be the network address (host bits zero). */
function ipv4Cidr(example: string, minPrefix: number, maxPrefix: number) {
  return (v: unknown): { network: string; prefix: number } => {
    const what = `an IPv4 CIDR like ${example}`;
    if (typeof v !== 'string') throw new Expected(what);
    const m = /^([0-9.]+)\/(\d{1,2})$/.exec(v);
    if (!m || !net.isIPv4(m[1])) throw new Expected(what);
    const prefix = Number(m[2]);
    if (prefix < minPrefix || prefix > maxPrefix) throw new Expected(`${what} with a prefix length from ${minPrefix} to ${maxPrefix}`);
    const hostBits = 32 - prefix;
    const addr = ipv4ToInt(m[1]);
    if (hostBits > 0 && addr % 2 ** hostBits !== 0) {
      const net0 = addr - (addr % 2 ** hostBits);
      const netStr = [24, 16, 8, 0].map((s) => Math.floor(net0 / 2 ** s) % 256).join('.');
      throw new Expected(`a network address (host bits zero) like ${netStr}/${prefix}`);
    }
    return { network: m[1], prefix };
  };
}

function ipv4(v: unknown): string {
  if (typeof v !== 'string' || !net.isIPv4(v)) throw new Expected('IPv4 addresses like 10.8.0.1');
  return v;
}

/** A DNS name; the last label may not be all digits, so "10.8.0" is not taken for a name. */
export function isHostname(s: string): boolean {
  return HOSTNAME_RE.test(s) && !/(^|\.)\d+\.?$/.test(s);
}

function hostname(v: unknown): string {
  if (typeof v !== 'string' || !(net.isIP(v) || isHostname(v))) throw new Expected('a DNS name like server.minivpn.test or an IP address');
  return v;
}

/**
 * "host:port", "[v6]:port", ":port" or "port" (server: host defaults to '::'),
 * "host" alone (client: port defaults to 1194). A bare IPv6 address without brackets is
 * taken as a host. The server listens on IP addresses only; the client may name a host.
 */
function hostPort(kind: 'listen' | 'server') {
  const what = kind === 'listen'
    ? 'an address like 0.0.0.0:1194, [::]:1194 or :1194'
    : 'an address like 192.0.2.1:1194, [2001:db8::1]:1194 or vpn.example.org:1194';
  return (v: unknown): HostPort => {
    if (typeof v !== 'string' || v === '') throw new Expected(what);
    let host: string | undefined;
    let portStr: string | undefined;
    let m: RegExpExecArray | null;
    if ((m = /^\[([^\]]+)\](?::(.*))?$/.exec(v))) {
      host = m[1];
      portStr = m[2];
      if (!net.isIPv6(host)) throw new Expected(what);
    } else if (net.isIPv6(v)) {
      host = v;
    } else if (/^\d+$/.test(v) && kind === 'listen') {
      portStr = v;
    } else {
      const i = v.lastIndexOf(':');
      if (i >= 0) {
        host = v.slice(0, i) || undefined;
        portStr = v.slice(i + 1);
      } else {
        host = v;
      }
    }
    if (host === undefined) {
      if (kind === 'server') throw new Expected(what);
      host = '::';
    } else if (kind === 'listen' ? !net.isIP(host) : !(net.isIP(host) || isHostname(host))) {
      throw new Expected(what);
    }
    let port = 1194;
    if (portStr !== undefined) {
      const minPort = kind === 'listen' ? 0 : 1; // listen port 0: the OS picks a free port
      if (!/^\d{1,5}$/.test(portStr) || Number(portStr) < minPort || Number(portStr) > 65535) {
        throw new Expected(`${what} (port ${minPort}-65535)`);
      }
      port = Number(portStr);
    } else if (kind === 'listen') {
      throw new Expected(what);
    }
    return { host, port };
  };
}

function oneOf<T extends string>(choices: readonly T[]) {
  return (v: unknown): T => {
    if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) throw new Expected(`one of ${choices.join(', ')}`);
    return v as T;
  };
}

function clientName(v: unknown): string {
  const p = clientNameProblem(v);
  if (p) throw new Expected('a client name (1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)');
  return v as string;
}

function userOrGroup(v: unknown): string {
  if (typeof v !== 'string' || !USER_RE.test(v)) throw new Expected('a user/group name like nobody or a numeric id');
  return v;
}

function unixSocketPath(v: unknown): string {
  const p = str(v, 'a socket path');
  // sun_path is 108 bytes including the terminating NUL.
  if (Buffer.byteLength(p) > 107) throw new Expected('a socket path of at most 107 bytes');
  return p;
}

function list(elem: (v: unknown) => unknown, example: string, max = Infinity) {
  return (v: unknown): unknown[] => {
    if (!Array.isArray(v)) throw new Expected(`a list like ${example}`);
    if (v.length > max) throw new Expected(`at most ${max} entries`, `${v.length} entries`);
    return v.map((e) => {
      try {
        return elem(e);
      } catch (err) {
        if (err instanceof Expected) throw new Expected(err.message, e);
        throw err;
      }
    });
  };
}

function nullable(check: (v: unknown) => unknown) {
  return (v: unknown): unknown => (v === null ? null : check(v));
}

// ---------------------------------------------------------------------------------------------
// The field tables.

interface Field {
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

// On by default: it changes only when this process gives up its CPU (src/os/handoff.ts).
const HANDOFF_YIELD_FIELD: Field = {
  key: 'handoffYield', flag: 'handoff-yield', type: 'bool', def: true,
  help: 'after passing a few packets on, let the process they woke run first (lower latency for interactive traffic; see src/os/handoff.ts)',
  check: bool,
};

// What the server pushes goes to each client in one control frame, which must fit one
// datagram slot (2048 bytes): 64 routes of the longest form ("255.255.255.255/32") and 4
// DNS servers leave room for the rest (test/config.test.ts checks the worst case).
export const MAX_PUSHED_ROUTES = 64;
export const MAX_PUSHED_DNS = 4;

const SERVER_FIELDS: Field[] = [
  { key: 'listen', flag: 'listen', type: 'value', metavar: 'HOST:PORT', def: { host: '::', port: 1194 }, defText: '[::]:1194', help: 'UDP address to listen on; [::] is dual stack', check: hostPort('listen') },
  { key: 'pool', flag: 'pool', type: 'value', metavar: 'CIDR', def: { network: '10.8.0.0', prefix: 24 }, defText: '10.8.0.0/24', help: 'tunnel address pool; the server takes the first address (.1)', check: ipv4Cidr('10.8.0.0/24', 8, 30) },
  { key: 'tunName', flag: 'tun-name', type: 'value', metavar: 'NAME', def: 'mvpn0', help: 'TUN device name', check: ifname('an interface name') },
  { key: 'underlayMtu', flag: 'underlay-mtu', type: 'value', number: true, metavar: 'N', def: 1500, help: 'MTU of the network the UDP packets cross (at most 2000: the data path has 2 KB buffers)', check: int(576, MAX_TUNNEL_MTU) },
  { key: 'mtu', flag: 'mtu', type: 'value', number: true, metavar: 'N', def: undefined, defText: 'computed: 1434 with DTLS, 1471 plaintext', help: 'tunnel MTU, pushed to clients (at most 2000)', check: int(576, MAX_TUNNEL_MTU) },
  { key: 'ca', flag: 'ca', type: 'value', metavar: 'FILE', def: 'pki/ca.crt', help: 'CA certificate that client certificates must chain to', check: path },
  { key: 'cert', flag: 'cert', type: 'value', metavar: 'FILE', def: 'pki/server.crt', help: "server's certificate", check: path },
  { key: 'key', flag: 'key', type: 'value', metavar: 'FILE', def: 'pki/server.key', help: "server's private key", check: path },
  { key: 'authorizedDir', flag: 'authorized-dir', type: 'value', metavar: 'DIR', def: 'pki/authorized', help: 'one file per authorized client CN', check: path },
  { key: 'leasesFile', flag: 'leases-file', type: 'value', metavar: 'FILE', def: 'run/leases.json', help: 'remembers which client got which address', check: path },
  { key: 'clientToClient', flag: 'client-to-client', type: 'bool', def: true, help: 'let clients reach each other through the server', check: bool },
  { key: 'routes', flag: 'routes', aliases: ['route'], type: 'list', metavar: 'CIDR[,CIDR]', def: [], defText: 'none', help: 'networks pushed to clients (split tunnel); repeatable', check: list((v) => { const c = cidrRoute(v); return `${c.network}/${c.prefix}`; }, '["10.9.0.0/24"] of IPv4 CIDRs', MAX_PUSHED_ROUTES) },
  { key: 'redirectGateway', flag: 'redirect-gateway', type: 'bool', def: false, help: 'push a default route: all client traffic goes through the tunnel', check: bool },
  { key: 'dns', flag: 'dns', type: 'list', metavar: 'ADDR[,ADDR]', def: [], defText: 'none', help: 'DNS servers pushed to clients; repeatable', check: list(ipv4, '["10.8.0.1"] of IPv4 addresses', MAX_PUSHED_DNS) },
  { key: 'mssClamp', flag: 'mss-clamp', type: 'bool', def: true, help: 'clamp the TCP MSS of connections through the tunnel to fit its MTU', check: bool },
  UDP_GSO_FIELD,
  TUN_GRO_FIELD,
  HANDOFF_YIELD_FIELD,
  { key: 'natOut', flag: 'nat-out', type: 'value', nullable: true, metavar: 'IFACE', def: null, defText: 'off', help: 'masquerade client traffic leaving through this interface', check: nullable(ifname('an interface name')) },
  { key: 'keepaliveSec', flag: 'keepalive-sec', aliases: ['keepalive'], type: 'value', number: true, metavar: 'SEC', def: 10, help: 'send a keepalive after this much silence', check: seconds(0.1, 3600) },
  { key: 'timeoutSec', flag: 'timeout-sec', aliases: ['timeout'], type: 'value', number: true, metavar: 'SEC', def: 60, help: 'drop a client silent this long (must exceed keepalive)', check: seconds(0.2, 86400) },
  { key: 'onConnect', flag: 'on-connect', type: 'value', nullable: true, metavar: 'PROGRAM', def: null, defText: 'none', help: 'program run when a client connects', check: nullable(path) },
  { key: 'onDisconnect', flag: 'on-disconnect', type: 'value', nullable: true, metavar: 'PROGRAM', def: null, defText: 'none', help: 'program run when a client disconnects', check: nullable(path) },
  { key: 'statusSocket', flag: 'status-socket', type: 'value', metavar: 'PATH', def: 'run/minivpn.sock', help: 'unix socket answering status queries', check: unixSocketPath },
  { key: 'plaintext', flag: 'insecure-plaintext', type: 'bool', def: false, help: 'no DTLS: packets cross the network in the clear (for tcpdump labs only)', check: bool },
  { key: 'keylog', flag: 'keylog', type: 'value', nullable: true, metavar: 'FILE', def: null, defText: 'off', help: 'append DTLS secrets in NSS key log format (for Wireshark)', check: nullable(path) },
  { key: 'user', flag: 'user', type: 'value', nullable: true, metavar: 'USER', def: null, defText: 'stay root', help: 'drop privileges to this user after setup', check: nullable(userOrGroup) },
  { key: 'group', flag: 'group', type: 'value', nullable: true, metavar: 'GROUP', def: null, defText: "user's group", help: 'drop privileges to this group after setup', check: nullable(userOrGroup) },
  { key: 'logLevel', flag: 'log-level', type: 'value', metavar: 'LEVEL', def: 'info', help: 'debug, info, warn or error (env MINIVPN_LOG)', check: oneOf(LOG_LEVELS) },
];

const CLIENT_FIELDS: Field[] = [
  { key: 'server', flag: 'server', type: 'value', metavar: 'HOST:PORT', def: undefined, defText: 'required', help: "server's UDP address", check: hostPort('server') },
  { key: 'serverName', flag: 'server-name', type: 'value', metavar: 'NAME', def: 'server.minivpn.test', help: 'name the server certificate must carry', check: hostname },
  { key: 'ca', flag: 'ca', type: 'value', metavar: 'FILE', def: 'pki/ca.crt', help: 'CA certificate the server certificate must chain to', check: path },
  { key: 'cert', flag: 'cert', type: 'value', metavar: 'FILE', def: undefined, defText: 'pki/clients/NAME.crt', help: "client's certificate", check: path },
  { key: 'key', flag: 'key', type: 'value', metavar: 'FILE', def: undefined, defText: 'pki/clients/NAME.key', help: "client's private key", check: path },
  { key: 'name', flag: 'name', type: 'value', nullable: true, metavar: 'NAME', def: null, defText: 'none', help: 'client name: picks the default cert and key paths', check: nullable(clientName) },
  { key: 'tunName', flag: 'tun-name', type: 'value', metavar: 'NAME', def: 'mvpn1', help: 'TUN device name', check: ifname('an interface name') },
  { key: 'plaintext', flag: 'insecure-plaintext', type: 'bool', def: false, help: 'no DTLS: packets cross the network in the clear (for tcpdump labs only)', check: bool },
  { key: 'plaintextCn', flag: 'plaintext-cn', type: 'value', nullable: true, metavar: 'NAME', def: null, defText: 'NAME', help: 'identity claimed in plaintext mode', check: nullable(clientName) },
  { key: 'keylog', flag: 'keylog', type: 'value', nullable: true, metavar: 'FILE', def: null, defText: 'off', help: 'append DTLS secrets in NSS key log format (for Wireshark)', check: nullable(path) },
  { key: 'reconnectMinSec', flag: 'reconnect-min-sec', type: 'value', number: true, metavar: 'SEC', def: 1, help: 'first wait before reconnecting (doubles each try)', check: seconds(0.1, 3600) },
  { key: 'reconnectMaxSec', flag: 'reconnect-max-sec', type: 'value', number: true, metavar: 'SEC', def: 30, help: 'longest wait between reconnects', check: seconds(0.1, 3600) },
  { key: 'stateDir', flag: 'state-dir', type: 'value', metavar: 'DIR', def: 'run', help: 'where the client keeps its runtime state', check: path },
  UDP_GSO_FIELD,
  TUN_GRO_FIELD,
  HANDOFF_YIELD_FIELD,
  { key: 'logLevel', flag: 'log-level', type: 'value', metavar: 'LEVEL', def: 'info', help: 'debug, info, warn or error (env MINIVPN_LOG)', check: oneOf(LOG_LEVELS) },
];

// ---------------------------------------------------------------------------------------------
// The parser.

function fail(field: string, what: string, got: unknown, src: string): never {
  const shown = got === undefined ? '' : `, got ${JSON.stringify(got)}`;
  throw new ConfigError(field, `config: "${field}": expected ${what}${shown} (${src})`);
}

function checkValue(f: Field, v: unknown, src: string): unknown {
  try {
    return f.check(v);
  } catch (err) {
    if (err instanceof Expected) fail(f.key, err.message, err.got !== undefined ? err.got : v, src);
    throw err;
  }
}

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

function suggest(word: string, candidates: string[], prefix = ''): string {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best = '';
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = norm(c) === norm(word) ? 0 : distance(word, c);
    if (dist < bestD) { best = c; bestD = dist; }
  }
  return bestD <= Math.max(1, Math.floor(word.length / 4)) ? ` (did you mean ${prefix}${best}?)` : '';
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('config', `config: cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('config', `config: ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ConfigError('config', `config: ${file} must hold a JSON object like {"listen": ":1194"}`);
  }
  return obj as Record<string, unknown>;
}

interface Parsed {
  values: Record<string, unknown>;  // key -> checked value (undefined: no default, not given)
  src: Record<string, string>;      // key -> where the value came from, for error messages
}

/** Every field's value, with defaults < env < file < flags applied and each value checked. */
function parse(kind: 'server' | 'client', fields: Field[], argv: string[], env: NodeJS.ProcessEnv): Parsed {
  if (argv.includes('--help') || argv.includes('-h')) throw new HelpRequested(kind);

  const byFlag = new Map<string, Field>();
  for (const f of fields) for (const name of [f.flag, ...(f.aliases ?? [])]) byFlag.set(name, f);

  // 1. Flags, collected first so that --config can appear anywhere.
  const fromFlags = new Map<string, { v: unknown; src: string }>();
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      throw new ConfigError(arg, `config: unexpected argument ${JSON.stringify(arg)}: options are flags like --${fields[0].flag} (see --help)`);
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq >= 0 ? eq : undefined);
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    const takeValue = (field: string): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new ConfigError(field, `config: "${field}": flag --${name} needs a value`);
      i++;
      return next;
    };

    if (name === 'config') {
      configFile = takeValue('config');
      continue;
    }
    let f = byFlag.get(name);
    let negated = false;
    if (!f && name.startsWith('no-')) {
      const g = byFlag.get(name.slice(3));
      if (g && (g.type === 'bool' || g.nullable)) { f = g; negated = true; }
    }
    if (!f) {
      const all = ['config', 'help', ...byFlag.keys()];
      throw new ConfigError(`--${name}`, `config: unknown flag --${name}${suggest(name, all, '--')} (see --help)`);
    }
    const src = `flag ${arg.split('=')[0]}`;
    if (negated) {
      if (inline !== undefined) throw new ConfigError(f.key, `config: "${f.key}": flag --${name} takes no value`);
      fromFlags.set(f.key, { v: f.type === 'bool' ? false : null, src });
    } else if (f.type === 'bool') {
      if (inline !== undefined) throw new ConfigError(f.key, `config: "${f.key}": flag --${name} takes no value (use --no-${f.flag} to turn it off)`);
      fromFlags.set(f.key, { v: true, src });
    } else if (f.type === 'list') {
      // Repeatable and comma-separated; an empty value clears the list. Flags replace the file's list.
      const items = takeValue(f.key).split(',').map((s) => s.trim()).filter((s) => s !== '');
      const prev = (fromFlags.get(f.key)?.v as string[] | undefined) ?? [];
      fromFlags.set(f.key, { v: checkValue(f, [...prev, ...items], src), src });
    } else {
      const raw = takeValue(f.key);
      const v = f.number && /^-?(\d+(\.\d+)?|\.\d+)$/.test(raw) ? Number(raw) : raw;
      fromFlags.set(f.key, { v: checkValue(f, v, src), src });
    }
  }

  // 2. Defaults, then the environment.
  const out: Record<string, unknown> = {};
  const src: Record<string, string> = {};
  for (const f of fields) { out[f.key] = f.def; src[f.key] = 'default'; }
  if (env.MINIVPN_LOG !== undefined && env.MINIVPN_LOG !== '') {
    src.logLevel = 'environment MINIVPN_LOG';
    out.logLevel = checkValue(fields.find((f) => f.key === 'logLevel')!, env.MINIVPN_LOG, src.logLevel);
  }

  // 3. The file.
  if (configFile !== undefined) {
    const obj = readConfigFile(configFile);
    const keys = fields.map((f) => f.key);
    for (const [k, v] of Object.entries(obj)) {
      const f = fields.find((x) => x.key === k);
      if (!f) throw new ConfigError(k, `config: unknown field "${k}" in ${configFile}${suggest(k, keys)}`);
      src[k] = `file ${configFile}`;
      out[k] = checkValue(f, v, src[k]);
    }
  }

  // 4. Flags win.
  for (const [k, { v, src: s }] of fromFlags) { out[k] = v; src[k] = s; }
  return { values: out, src };
}

export function parseServerArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const { values: c, src } = parse('server', SERVER_FIELDS, argv, env);
  const keepalive = c.keepaliveSec as number;
  const timeout = c.timeoutSec as number;
  if (timeout <= keepalive) {
    fail('timeoutSec', `more than keepaliveSec (${keepalive})`, timeout, src.timeoutSec);
  }
  const plaintext = c.plaintext as boolean;
  const underlayMtu = c.underlayMtu as number;
  // The default assumes an IPv4 underlay; if clients reach the server over IPv6, pass --mtu 1414.
  const mtu = (c.mtu as number | undefined) ?? computeTunnelMtu(underlayMtu, plaintext, false);
  return {
    listen: c.listen as HostPort,
    pool: c.pool as { network: string; prefix: number },
    tunName: c.tunName as string,
    underlayMtu,
    mtu,
    ca: c.ca as string,
    cert: c.cert as string,
    key: c.key as string,
    authorizedDir: c.authorizedDir as string,
    leasesFile: c.leasesFile as string,
    clientToClient: c.clientToClient as boolean,
    routes: c.routes as string[],
    redirectGateway: c.redirectGateway as boolean,
    dns: c.dns as string[],
    natOut: c.natOut as string | null,
    mssClamp: c.mssClamp as boolean,
    udpGso: c.udpGso as boolean,
    tunGro: c.tunGro as boolean,
    handoffYield: c.handoffYield as boolean,
    keepaliveSec: keepalive,
    timeoutSec: timeout,
    onConnect: c.onConnect as string | null,
    onDisconnect: c.onDisconnect as string | null,
    statusSocket: c.statusSocket as string,
    plaintext,
    keylog: c.keylog as string | null,
    user: c.user as string | null,
    group: c.group as string | null,
    logLevel: c.logLevel as LogLevel,
  };
}

export function parseClientArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): ClientConfig {
  const { values: c, src } = parse('client', CLIENT_FIELDS, argv, env);
  if (c.server === undefined) {
    throw new ConfigError('server', 'config: "server": required: the server\'s address, e.g. --server 192.0.2.1:1194');
  }
  const min = c.reconnectMinSec as number;
  const max = c.reconnectMaxSec as number;
  if (max < min) fail('reconnectMaxSec', `at least reconnectMinSec (${min})`, max, src.reconnectMaxSec);

  const name = c.name as string | null;
  const plaintext = c.plaintext as boolean;
  // cert/key default from --name; only plaintext mode may go without them.
  const fileFor = (key: 'cert' | 'key', ext: string): string => {
    if (c[key] !== undefined) return c[key] as string;
    if (name !== null) return `pki/clients/${name}.${ext}`;
    if (plaintext) return '';
    throw new ConfigError(key, `config: "${key}": required: give --name NAME (uses pki/clients/NAME.${ext}) or --${key} FILE`);
  };
  const cert = fileFor('cert', 'crt');
  const key = fileFor('key', 'key');
  const plaintextCn = (c.plaintextCn as string | null) ?? name;
  if (plaintext && plaintextCn === null) {
    throw new ConfigError('plaintextCn', 'config: "plaintextCn": required with --insecure-plaintext: the identity to claim, e.g. --plaintext-cn alice (or --name alice)');
  }
  return {
    server: c.server as HostPort,
    serverName: c.serverName as string,
    ca: c.ca as string,
    cert,
    key,
    name,
    tunName: c.tunName as string,
    plaintext,
    plaintextCn,
    keylog: c.keylog as string | null,
    reconnectMinSec: min,
    reconnectMaxSec: max,
    stateDir: c.stateDir as string,
    udpGso: c.udpGso as boolean,
    tunGro: c.tunGro as boolean,
    handoffYield: c.handoffYield as boolean,
    logLevel: c.logLevel as LogLevel,
  };
}

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
  // Read by src/profile/load.ts before this parser runs: it becomes flags.
  if (kind === 'client') rows.push(['--profile FILE', 'one-file profile from "minivpn pki export": server, CA, certificate, key, options; flags override it']);
  rows.push(['--help', 'show this text']);
  const width = Math.max(...rows.map(([a]) => a.length)) + 2;
  const lines = [
    `usage: minivpn ${kind} [options]     (or: npm run ${kind} -- [options])`,
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
