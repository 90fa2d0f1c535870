// IPv6 addresses and prefixes, for the tunnel's inner IPv6 (the pool, pushed routes, the
// server's router) and the ICMPv6 Packet Too Big a tunnel end sends when it drops a packet
// over the MTU.
//
// On the data path an IPv6 address is read as four big-endian 32-bit words straight out of
// the packet: a prefix test is four masked compares, nothing is allocated. Text forms are
// for configuration, logs and control messages only.
import net from 'node:net';
import { formatIpv6, internetChecksum, IpParseError, IPV6_HEADER_LEN, pseudoHeaderSum, PROTO_ICMPV6 } from './ip';

/** The smallest MTU every IPv6 link must carry (RFC 8200 §5). */
export const IPV6_MIN_MTU = 1280;

export interface Cidr6 {
  /** The network (host bits cleared) and the mask, as four 32-bit words each. */
  net: Uint32Array;
  mask: Uint32Array;
  prefix: number;
}

/** '2001:db8::1' -> 16 bytes. Throws (naming the value) on anything but an IPv6 address. */
export function ipv6ToBytes(s: string): Buffer {
  if (typeof s !== 'string' || !net.isIPv6(s) || s.includes('%')) {
    throw new IpParseError('bad_address', `not an IPv6 address: ${JSON.stringify(s)}`);
  }
  let text = s;
  // An embedded IPv4 tail (::ffff:192.0.2.1) as two hex words.
  const m = /^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (m) text = `${m[1]}${((+m[2] << 8) | +m[3]).toString(16)}:${((+m[4] << 8) | +m[5]).toString(16)}`;
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(parseInt(w, 16), 2 * i));
  return out;
}

/** True when `s` is an IPv6 address in text form (no zone). */
export function isIpv6(s: unknown): s is string {
  return typeof s === 'string' && net.isIPv6(s) && !s.includes('%');
}

/** The canonical (RFC 5952) text of an IPv6 address given as text. */
export function canonicalIpv6(s: string): string {
  return formatIpv6(ipv6ToBytes(s), 0);
}

/** Mask word i (0..3) of a prefix length. */
function maskWord(prefix: number, i: number): number {
  const bits = Math.min(32, Math.max(0, prefix - 32 * i));
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** 'fd00::/64' -> Cidr6 (host bits cleared; a bare address is a /128). Throws naming the value. */
export function parseCidr6(s: string): Cidr6 {
  if (typeof s !== 'string') throw new IpParseError('bad_address', `not an IPv6 CIDR: ${JSON.stringify(s)}`);
  const slash = s.indexOf('/');
  let prefix = 128;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > 128) throw new IpParseError('bad_address', `bad prefix length in ${JSON.stringify(s)} (want 0..128)`);
    prefix = Number(p);
  }
  let bytes: Buffer;
  try {
    bytes = ipv6ToBytes(slash < 0 ? s : s.slice(0, slash));
  } catch {
    throw new IpParseError('bad_address', `not an IPv6 CIDR: ${JSON.stringify(s)}`);
  }
  const mask = new Uint32Array(4), netw = new Uint32Array(4);
  for (let i = 0; i < 4; i++) {
    mask[i] = maskWord(prefix, i);
    netw[i] = (bytes.readUInt32BE(4 * i) & mask[i]) >>> 0;
  }
  return { net: netw, mask, prefix };
}

/** The network of a Cidr6 as 16 bytes. */
export function cidr6Bytes(c: Cidr6): Buffer {
  const b = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) b.writeUInt32BE(c.net[i], 4 * i);
  return b;
}

/** 'fd00::/64' form of a Cidr6. */
export function formatCidr6(c: Cidr6): string {
  return `${formatIpv6(cidr6Bytes(c), 0)}/${c.prefix}`;
}

/** True when the 16-byte address at buf[off] lies in `c` (hot path: four masked compares). */
export function inCidr6(buf: Buffer, off: number, c: Cidr6): boolean {
  for (let i = 0; i < 4; i++) {
    if (((buf.readUInt32BE(off + 4 * i) & c.mask[i]) >>> 0) !== c.net[i]) return false;
  }
  return true;
}

/** True when two prefixes share addresses (one contains the other's network). */
export function overlaps6(a: Cidr6, b: Cidr6): boolean {
  const p = Math.min(a.prefix, b.prefix);
  for (let i = 0; i < 4; i++) {
    const m = maskWord(p, i);
    if (((a.net[i] & m) >>> 0) !== ((b.net[i] & m) >>> 0)) return false;
  }
  return true;
}

/**
 * The client OS's own link traffic: a link-local or unspecified source (router and neighbour
 * solicitations, duplicate address detection) or a multicast destination (MLD reports, all
 * routers). Nothing of it belongs in the tunnel; it is counted, never logged per packet.
 */
export function isLinkChatter6(buf: Buffer, off: number): boolean {
  const s0 = buf.readUInt32BE(off + 8);
  if ((s0 & 0xffc00000) >>> 0 === 0xfe800000) return true; // fe80::/10 source
  if (buf[off + 24] === 0xff) return true; // ff00::/8 destination
  return s0 === 0 && buf.readUInt32BE(off + 12) === 0 && buf.readUInt32BE(off + 16) === 0 && buf.readUInt32BE(off + 20) === 0;
}

/**
 * An ICMPv6 Packet Too Big (RFC 4443 §3.2) for the IPv6 packet buf[off, off+len), sent from
 * `from` (16 bytes: this tunnel end's address) to that packet's source, telling it `mtu`.
 * It quotes as much of the packet as keeps the answer within 1280 bytes. Null when the
 * packet must not be answered (an ICMPv6 error itself, a multicast or unspecified source).
 */
export function packetTooBig6(buf: Buffer, off: number, len: number, mtu: number, from: Buffer): Buffer | null {
  if (isLinkChatter6(buf, off) || buf[off + 8] === 0xff) return null;
  // Never an error about an error (next header ICMPv6, type < 128).
  if (buf[off + 6] === PROTO_ICMPV6 && len > IPV6_HEADER_LEN && buf[off + IPV6_HEADER_LEN] < 128) return null;
  const quote = Math.min(len, IPV6_MIN_MTU - IPV6_HEADER_LEN - 8);
  const icmpLen = 8 + quote;
  const p = Buffer.alloc(IPV6_HEADER_LEN + icmpLen);
  p[0] = 0x60;
  p.writeUInt16BE(icmpLen, 4);
  p[6] = PROTO_ICMPV6;
  p[7] = 64; // hop limit
  from.copy(p, 8, 0, 16);
  buf.copy(p, 24, off + 8, off + 24); // to the packet's source
  p[40] = 2; // Packet Too Big
  p[41] = 0;
  p.writeUInt32BE(mtu, 44);
  buf.copy(p, 48, off, off + quote);
  p.writeUInt16BE(internetChecksum(p, 40, icmpLen, pseudoHeaderSum(p, 0, PROTO_ICMPV6, icmpLen)), 42);
  return p;
}
