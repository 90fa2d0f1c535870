// Control messages: UTF-8 JSON objects inside CONTROL frames (spec: docs/PROTOCOL.md).
//
//   client -> server  hello   {type:'hello', v:1, cn?, want?, dev?}
//   server -> client  config  {type:'config', v:1, address, prefix, gateway, mtu, routes,
//                               redirectGateway, dns, keepaliveSec, timeoutSec,
//                               [address6, prefix6, gateway6, routes6, redirectGateway6, dns6],
//                               [dev, dhcp]}
//   server -> client  refuse  {type:'refuse', v:1, reason}
//   either way        bye     {type:'bye', v:1, reason}
//
// Everything that arrives from the network is validated here, field by field, and turned
// into a fresh object holding only the known fields. A bad message never throws out of
// `decodeControl`: it comes back as {type:'invalid', field, error} so the caller can log
// it (the error names the field) and drop it. Unknown extra fields are ignored, so a
// later version can add optional fields without breaking older peers.

import { encodeFrame, FrameType } from './frame';
import { Cidr, formatCidr, intToIpv4, ipv4ToInt, isIpv4, parseCidr, prefixToMask } from './ip';
import { canonicalIpv6, formatCidr6, inCidr6, ipv6ToBytes, IPV6_MIN_MTU, isIpv6, parseCidr6 } from './ip6';

export const CONTROL_VERSION = 1;
/** Control messages are small; anything bigger is refused before JSON.parse sees it. */
export const MAX_CONTROL_BODY = 16 * 1024;
const MAX_REASON = 200;
const MAX_LIST = 256;
/**
 * How deep `want` may nest. JSON.parse takes thousands of levels within the size limit, but
 * JSON.stringify and deep comparison recurse and overflow the stack on them: a hello that
 * decodes must also print and re-encode.
 */
const MAX_WANT_DEPTH = 16;
/**
 * The largest tunnel MTU: the data path's buffers hold packets of up to 2048 bytes (a sealed
 * 2000-byte packet is 2038), so a larger packet could only be lost. Jumbo frames are not
 * supported.
 */
export const MAX_TUNNEL_MTU = 2000;

/** What DATA frames carry: IP packets (tun, the default when `dev` is absent) or Ethernet frames (tap). */
export type Dev = 'tun' | 'tap';

export interface HelloMsg {
  type: 'hello';
  v: 1;
  /**
   * Claimed identity, honoured only in the lab-only plaintext mode. With DTLS the server
   * takes the identity from the client certificate and ignores this field.
   */
  cn?: string;
  /** Client preferences; reserved for later versions (must be an object when present). */
  want?: Record<string, unknown>;
  /** The device the client runs: what its DATA frames carry. Absent: 'tun' (a client from before TAP). */
  dev?: Dev;
}

export interface ConfigMsg {
  type: 'config';
  v: 1;
  /** The client's tunnel address, e.g. '10.8.0.2'. */
  address: string;
  /** Prefix length of the tunnel subnet (8..30). */
  prefix: number;
  /** The server's tunnel address, e.g. '10.8.0.1'. */
  gateway: string;
  /** MTU for the client's TUN device. */
  mtu: number;
  /** Extra networks reachable through the tunnel, as CIDRs ('192.168.50.0/24'). */
  routes: string[];
  /** Send all traffic (a default route) through the tunnel. */
  redirectGateway: boolean;
  /** DNS servers the client may use while connected. */
  dns: string[];
  /** How often to send a KEEPALIVE when idle (0 = never). */
  keepaliveSec: number;
  /** Declare the peer dead after this long without hearing from it. */
  timeoutSec: number;
  // IPv6 inside the tunnel (optional fields, docs/PROTOCOL.md §8: a server without IPv6, or
  // one from before it, sends none of them; a client from before them ignores them).
  /** The client's tunnel IPv6 address, e.g. 'fd6d:7670:6e00::2'; with it prefix6 and gateway6. */
  address6?: string;
  /** Prefix length of the IPv6 tunnel subnet (64..126). */
  prefix6?: number;
  /** The server's tunnel IPv6 address. */
  gateway6?: string;
  /** Extra IPv6 networks reachable through the tunnel. */
  routes6?: string[];
  /** Send all IPv6 traffic through the tunnel. */
  redirectGateway6?: boolean;
  /** IPv6 DNS servers. */
  dns6?: string[];
  // Layer 2 (optional fields, docs/PROTOCOL.md §8).
  /** What DATA frames carry; absent: 'tun'. */
  dev?: Dev;
  /** TAP only: the client takes its IPv4 address by DHCP on its TAP, not from `address`. */
  dhcp?: boolean;
  /**
   * Optional (§8): 'p2p' when the server gives each client a TUN of its own (--topology p2p):
   * the client's end is then a point-to-point link too (its address with the gateway as the
   * peer), and link-local and multicast traffic cross it. Absent: 'subnet'.
   */
  topology?: 'subnet' | 'p2p';
}

export interface RefuseMsg {
  type: 'refuse';
  v: 1;
  /** Why the server will not serve this client, e.g. 'address pool exhausted'. */
  reason: string;
}

export interface ByeMsg {
  type: 'bye';
  v: 1;
  reason: string;
}

export type ControlMsg = HelloMsg | ConfigMsg | RefuseMsg | ByeMsg;

/** What decodeControl returns for a bad message. `error` starts with the field name. */
export interface ControlInvalid {
  type: 'invalid';
  field: string;
  error: string;
}

export type DecodedControl = ControlMsg | ControlInvalid;

/** Thrown by encodeControl when we are about to send an invalid message (a bug on our side). */
export class ControlError extends Error {
  constructor(readonly field: string, message: string) {
    super(message);
    this.name = 'ControlError';
  }
}

// Certificate common names double as file names in the authorization directory, so
// they are restricted to a safe set: no '/', no leading dot or dash, at most 64
// characters (the X.509 upper bound for a CN). Same rule as CLIENT_NAME_RE in src/config/checks.ts.
const CN_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** True when `s` is a usable client identity (certificate CN / authz file name). */
export function isValidCn(s: unknown): s is string {
  return typeof s === 'string' && CN_RE.test(s);
}

// --- validation ---------------------------------------------------------------------

/** Internal: thrown by the checks below, always caught in validateControl. */
class Invalid {
  /** `where` is the message type prefix, e.g. 'config.'. */
  constructor(readonly field: string, readonly why: string, readonly where = '') {}
}

type Obj = Record<string, unknown>;

function show(v: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    // Nested too deeply for JSON.stringify's recursion (found by test/fuzz.test.ts): say what it is.
    return Array.isArray(v) ? '[...]' : '{...}';
  }
  // JSON.stringify escapes C0 controls but not DEL or C1 ones: an error is one log line (found by test/fuzz.test.ts).
  const shown = s === undefined ? String(v) : s.length > 40 ? s.slice(0, 40) + '...' : s;
  return shown.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}

function str(o: Obj, field: string, maxLen: number): string {
  const v = o[field];
  if (typeof v !== 'string') throw new Invalid(field, `must be a string (got ${show(v)})`);
  if (v.length > maxLen) throw new Invalid(field, `longer than ${maxLen} characters`);
  // Control characters could forge extra log lines or terminal escapes.
  if (/[\x00-\x1f\x7f]/.test(v)) throw new Invalid(field, 'must not contain control characters');
  return v;
}

function num(o: Obj, field: string, min: number, max: number, integer: boolean): number {
  const v = o[field];
  const ok = typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max && (!integer || Number.isInteger(v));
  if (!ok) throw new Invalid(field, `must be ${integer ? 'an integer' : 'a number'} ${min}..${max} (got ${show(v)})`);
  return v as number;
}

function ipv4(o: Obj, field: string): string {
  const v = o[field];
  if (!isIpv4(v)) throw new Invalid(field, `must be an IPv4 address (got ${show(v)})`);
  return v;
}

function list(o: Obj, field: string, each: (v: unknown, name: string) => string): string[] {
  const v = o[field];
  if (!Array.isArray(v)) throw new Invalid(field, `must be an array (got ${show(v)})`);
  if (v.length > MAX_LIST) throw new Invalid(field, `more than ${MAX_LIST} entries`);
  return v.map((item, i) => each(item, `${field}[${i}]`));
}

function cidrItem(v: unknown, name: string): string {
  let c: Cidr | null = null;
  try {
    if (typeof v === 'string' && v.includes('/')) c = parseCidr(v);
  } catch {
    // reported below
  }
  if (!c) throw new Invalid(name, `must be an IPv4 CIDR like "192.168.50.0/24" (got ${show(v)})`);
  // Reject host bits instead of silently clearing them: `ip route` refuses them too.
  const canonical = formatCidr(c);
  if (v !== canonical) throw new Invalid(name, `host bits set in ${show(v)} (did you mean "${canonical}"?)`);
  return canonical;
}

function ipv4Item(v: unknown, name: string): string {
  if (!isIpv4(v)) throw new Invalid(name, `must be an IPv4 address (got ${show(v)})`);
  return v;
}

/** True when objects or arrays nest more than `levels` deep in `v` (an object alone is 1 level). */
function nestsDeeper(v: unknown, levels: number): boolean {
  if (typeof v !== 'object' || v === null) return false;
  if (levels === 0) return true;
  for (const x of Object.values(v)) if (nestsDeeper(x, levels - 1)) return true;
  return false;
}

function ipv6Item(v: unknown, name: string): string {
  if (!isIpv6(v)) throw new Invalid(name, `must be an IPv6 address (got ${show(v)})`);
  return canonicalIpv6(v);
}

function cidr6Item(v: unknown, name: string): string {
  let canonical = '';
  try {
    if (typeof v === 'string' && v.includes('/')) canonical = formatCidr6(parseCidr6(v));
  } catch {
    // reported below
  }
  if (!canonical) throw new Invalid(name, `must be an IPv6 CIDR like "2001:db8:50::/64" (got ${show(v)})`);
  const [addr, len] = (v as string).split('/');
  if (canonicalIpv6(addr) !== canonical.split('/')[0] || len !== canonical.split('/')[1]) {
    throw new Invalid(name, `host bits set in ${show(v)} (did you mean "${canonical}"?)`);
  }
  return canonical;
}

/** The IPv6 fields of a config (all or none: address6 brings prefix6 and gateway6 along). */
function parseConfig6(o: Obj, mtu: number): Partial<ConfigMsg> {
  if (o.address6 === undefined) return {};
  const address6 = ipv6Item(o.address6, 'address6');
  const prefix6 = num(o, 'prefix6', 64, 126, true);
  const gateway6 = ipv6Item(o.gateway6, 'gateway6');
  const subnet = parseCidr6(`${address6}/${prefix6}`);
  if (!inCidr6(ipv6ToBytes(gateway6), 0, subnet)) throw new Invalid('gateway6', `${gateway6} is not in ${formatCidr6(subnet)}`);
  if (gateway6 === address6) throw new Invalid('gateway6', 'must differ from address6');
  if (mtu < IPV6_MIN_MTU) throw new Invalid('mtu', `must be at least ${IPV6_MIN_MTU} with IPv6 (address6) in the tunnel (got ${mtu})`);
  const routes6 = o.routes6 === undefined ? [] : list(o, 'routes6', cidr6Item);
  if (o.redirectGateway6 !== undefined && typeof o.redirectGateway6 !== 'boolean') {
    throw new Invalid('redirectGateway6', `must be true or false (got ${show(o.redirectGateway6)})`);
  }
  const dns6 = o.dns6 === undefined ? [] : list(o, 'dns6', ipv6Item);
  return { address6, prefix6, gateway6, routes6, redirectGateway6: o.redirectGateway6 === true, dns6 };
}

function dev(o: Obj): { dev?: Dev } {
  if (o.dev === undefined) return {};
  if (o.dev !== 'tun' && o.dev !== 'tap') throw new Invalid('dev', `must be "tun" or "tap" (got ${show(o.dev)})`);
  return { dev: o.dev };
}

/** The layer-2 fields of a config: `dev`, and `dhcp`, which only a TAP can use. */
function parseConfigL2(o: Obj): Partial<ConfigMsg> {
  const d = dev(o);
  if (o.dhcp === undefined) return d;
  if (typeof o.dhcp !== 'boolean') throw new Invalid('dhcp', `must be true or false (got ${show(o.dhcp)})`);
  if (o.dhcp && d.dev !== 'tap') throw new Invalid('dhcp', 'needs dev "tap" (DHCP runs on an Ethernet link)');
  return { ...d, dhcp: o.dhcp };
}

/**
 * Why a client that said `hello` cannot use a server's `config`: their DATA frames would carry
 * different things (IP packets vs Ethernet frames). null when they agree. The server refuses
 * with this reason; a client from before TAP mode sends no `dev`, so it is refused by a TAP
 * server instead of reading Ethernet frames as IP packets.
 */
export function devMismatch(hello: HelloMsg, config: ConfigMsg): string | null {
  const client = hello.dev ?? 'tun', server = config.dev ?? 'tun';
  if (client === server) return null;
  return server === 'tap'
    ? 'this server carries Ethernet frames (dev tap): start the client with --dev tap (a client from before TAP mode cannot connect)'
    : 'this server carries IP packets (dev tun): start the client without --dev tap';
}

function parseHello(o: Obj): HelloMsg {
  const msg: HelloMsg = { type: 'hello', v: 1, ...dev(o) };
  if (o.cn !== undefined) {
    if (!isValidCn(o.cn)) {
      throw new Invalid('cn', `must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit (got ${show(o.cn)})`);
    }
    msg.cn = o.cn;
  }
  if (o.want !== undefined) {
    if (typeof o.want !== 'object' || o.want === null || Array.isArray(o.want)) {
      throw new Invalid('want', `must be an object (got ${show(o.want)})`);
    }
    if (nestsDeeper(o.want, MAX_WANT_DEPTH)) throw new Invalid('want', `nested more than ${MAX_WANT_DEPTH} levels deep`);
    msg.want = { ...(o.want as Obj) };
  }
  return msg;
}

function parseConfig(o: Obj): ConfigMsg {
  const address = ipv4(o, 'address');
  const prefix = num(o, 'prefix', 8, 30, true);
  const gateway = ipv4(o, 'gateway');
  // The client configures `address/prefix` on its TUN device and reaches the server at
  // `gateway`, so both must be usable hosts of the same subnet.
  const mask = prefixToMask(prefix);
  const a = ipv4ToInt(address);
  const g = ipv4ToInt(gateway);
  const net = (a & mask) >>> 0;
  const bcast = (net | ~mask) >>> 0;
  if (a === net || a === bcast) throw new Invalid('address', `${address} is the network or broadcast address of /${prefix}`);
  if (((g & mask) >>> 0) !== net) throw new Invalid('gateway', `${gateway} is not in ${intToIpv4(net)}/${prefix}`);
  if (g === a) throw new Invalid('gateway', 'must differ from address');
  if (g === net || g === bcast) throw new Invalid('gateway', `${gateway} is the network or broadcast address of /${prefix}`);
  const mtu = num(o, 'mtu', 576, MAX_TUNNEL_MTU, true);
  const routes = list(o, 'routes', cidrItem);
  if (typeof o.redirectGateway !== 'boolean') {
    throw new Invalid('redirectGateway', `must be true or false (got ${show(o.redirectGateway)})`);
  }
  const dns = list(o, 'dns', ipv4Item);
  const keepaliveSec = num(o, 'keepaliveSec', 0, 86400, false);
  const timeoutSec = num(o, 'timeoutSec', 0.001, 86400, false);
  if (keepaliveSec > 0 && timeoutSec <= keepaliveSec) {
    throw new Invalid('timeoutSec', `must be longer than keepaliveSec (${timeoutSec} <= ${keepaliveSec})`);
  }
  return {
    type: 'config',
    v: 1,
    address,
    prefix,
    gateway,
    mtu,
    routes,
    redirectGateway: o.redirectGateway,
    dns,
    keepaliveSec,
    timeoutSec,
    ...parseConfig6(o, mtu),
    ...parseConfigL2(o),
    ...parseTopology(o),
  };
}

/** The optional topology field: 'p2p' kept, 'subnet' or absent left out (the default). */
function parseTopology(o: Obj): Partial<ConfigMsg> {
  if (o.topology === undefined || o.topology === 'subnet') return {};
  if (o.topology !== 'p2p') throw new Invalid('topology', `must be "subnet" or "p2p" (got ${show(o.topology)})`);
  return { topology: 'p2p' };
}

/**
 * Checks an already-parsed JSON value and returns a clean message, or
 * {type:'invalid', field, error}. Never throws.
 */
export function validateControl(value: unknown): DecodedControl {
  try {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new Invalid('body', 'must be a JSON object');
    }
    const o = value as Obj;
    const type = o.type;
    if (type !== 'hello' && type !== 'config' && type !== 'refuse' && type !== 'bye') {
      throw new Invalid('type', `unknown control message type ${show(type)}`);
    }
    if (o.v !== CONTROL_VERSION) {
      throw new Invalid('v', `unsupported control version ${show(o.v)} (this build speaks ${CONTROL_VERSION})`);
    }
    try {
      switch (type) {
        case 'hello':
          return parseHello(o);
        case 'config':
          return parseConfig(o);
        case 'refuse':
          return { type, v: 1, reason: str(o, 'reason', MAX_REASON) };
        case 'bye':
          return { type, v: 1, reason: str(o, 'reason', MAX_REASON) };
      }
    } catch (e) {
      // Prefix the message type so the error reads "config.mtu: ...".
      if (e instanceof Invalid) throw new Invalid(e.field, e.why, `${type}.`);
      throw e;
    }
  } catch (e) {
    if (e instanceof Invalid) return { type: 'invalid', field: e.field, error: `${e.where}${e.field}: ${e.why}` };
    // Not expected; still never escapes.
    return { type: 'invalid', field: 'body', error: `body: ${(e as Error).message}` };
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes the body of a CONTROL frame (the bytes after the header). Never throws. */
export function decodeControl(body: Buffer): DecodedControl {
  if (body.length > MAX_CONTROL_BODY) {
    return { type: 'invalid', field: 'body', error: `body: ${body.length} bytes, more than ${MAX_CONTROL_BODY}` };
  }
  let value: unknown;
  try {
    value = JSON.parse(utf8.decode(body));
  } catch (e) {
    // V8's JSON errors quote the input: mask its control characters, as closeReason does.
    const why = e instanceof SyntaxError ? `not valid JSON (${e.message.replace(/[\x00-\x1f\x7f]/g, '?')})` : 'not valid UTF-8';
    return { type: 'invalid', field: 'body', error: `body: ${why}` };
  }
  return validateControl(value);
}

/**
 * The body of a CONTROL frame (UTF-8 JSON, no header byte) for `msg`; the counterpart of
 * `decodeControl`. Wrap it with encodeFrame(FrameType.CONTROL, body), or use
 * encodeControlFrame. The message is validated first so we never send what the peer
 * would reject; throws ControlError if it is invalid (a bug on our side).
 */
export function encodeControl(msg: ControlMsg): Buffer {
  const checked = validateControl(msg);
  if (checked.type === 'invalid') throw new ControlError(checked.field, `invalid control message: ${checked.error}`);
  const body = Buffer.from(JSON.stringify(checked), 'utf8');
  if (body.length > MAX_CONTROL_BODY) throw new ControlError('body', `control message too large (${body.length} bytes)`);
  return body;
}

/** A complete CONTROL frame (header byte + validated JSON) for `msg`. */
export function encodeControlFrame(msg: ControlMsg): Buffer {
  return encodeFrame(FrameType.CONTROL, encodeControl(msg));
}
