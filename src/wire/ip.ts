// IP packet formats, in two layers (the split smoltcp's `wire` module uses):
//
// 1. A *checked view*: plain functions that read fields straight out of a Buffer at an
//    offset. Packets arrive as slices of one big batch buffer, so every function takes
//    (buf, off[, len]) and nothing is copied or allocated. `checkIp` must say a packet is
//    well formed before the accessors are trusted with it. This is the hot data path.
// 2. A *parsed representation* (`parseIp`, `parseTransport`): objects with named fields
//    and string addresses, for lab tools and capture reports. Allocation is fine there.
//
// IPv4 addresses are handled as unsigned 32-bit numbers (10.8.0.2 -> 0x0a080002): a
// number compares, hashes into a Map and masks against a CIDR without creating strings.

// ---------------------------------------------------------------------------------------
// Constants

export const IPV4_HEADER_MIN = 20;
export const IPV6_HEADER_LEN = 40;

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;

/** Why a buffer is not a usable IP packet. Short strings: cheap to return and to count. */
export type IpError =
  | 'truncated' // shorter than the fixed header (or empty)
  | 'bad_version' // version nibble is neither 4 nor 6
  | 'bad_ihl' // IPv4 header length field < 5 words
  | 'truncated_header' // IPv4 header length (IHL, incl. options) runs past the data
  | 'bad_total_length' // IPv4 total length smaller than its own header
  | 'length_exceeds_buffer'; // total length (v4) / 40 + payload length (v6) > data we have

/** Thrown by the slow-path parsers; `code` says what was wrong. */
export class IpParseError extends Error {
  constructor(readonly code: IpError | 'truncated_transport' | 'bad_address', message: string) {
    super(message);
    this.name = 'IpParseError';
  }
}

// ---------------------------------------------------------------------------------------
// Checked view (hot path: no allocation)

/** The version nibble of the first byte (4 or 6 for real packets). */
export function ipVersion(buf: Buffer, off = 0): number {
  return buf[off] >> 4;
}

/**
 * Validates that buf[off, off+len) holds a complete IPv4 or IPv6 packet whose header
 * fields are consistent. Returns null when it is safe to use the accessors below, or
 * the reason it is not. Trailing bytes beyond the packet's own length are allowed
 * (link layers pad), callers use `ipPacketLength` for the real length.
 */
export function checkIp(buf: Buffer, off: number, len: number): IpError | null {
  // Never read past the Buffer itself, whatever length the caller claims.
  if (len > buf.length - off) len = buf.length - off;
  if (len < 1) return 'truncated';
  const version = buf[off] >> 4;
  if (version === 4) {
    if (len < IPV4_HEADER_MIN) return 'truncated';
    const ihl = buf[off] & 0x0f;
    if (ihl < 5) return 'bad_ihl';
    const headerLen = ihl * 4;
    if (headerLen > len) return 'truncated_header';
    const total = (buf[off + 2] << 8) | buf[off + 3];
    if (total < headerLen) return 'bad_total_length';
    if (total > len) return 'length_exceeds_buffer';
    return null;
  }
  if (version === 6) {
    if (len < IPV6_HEADER_LEN) return 'truncated';
    const payload = (buf[off + 4] << 8) | buf[off + 5];
    // Payload length 0 with a hop-by-hop jumbogram option is not supported (no jumbo MTUs here).
    if (IPV6_HEADER_LEN + payload > len) return 'length_exceeds_buffer';
    return null;
  }
  return 'bad_version';
}

/** Length of the packet according to its own header (v4 total length, v6 40 + payload). */
export function ipPacketLength(buf: Buffer, off = 0): number {
  if (buf[off] >> 4 === 6) return IPV6_HEADER_LEN + ((buf[off + 4] << 8) | buf[off + 5]);
  return (buf[off + 2] << 8) | buf[off + 3];
}

/** IPv4 header length in bytes (IHL * 4). */
export function ipv4HeaderLength(buf: Buffer, off = 0): number {
  return (buf[off] & 0x0f) * 4;
}

/** IPv4 protocol field (1 ICMP, 6 TCP, 17 UDP). */
export function ipv4Protocol(buf: Buffer, off = 0): number {
  return buf[off + 9];
}

/** IPv4 source address as an unsigned 32-bit number. */
export function ipv4Src(buf: Buffer, off = 0): number {
  return be32(buf, off + 12);
}

/** IPv4 destination address as an unsigned 32-bit number. */
export function ipv4Dst(buf: Buffer, off = 0): number {
  return be32(buf, off + 16);
}

/**
 * Byte reads, not buf.readUInt32BE: these run for every packet, and Buffer's readers check
 * their argument on each call behind a wrapper that inlines poorly. checkIp vouched for the bounds.
 */
function be32(buf: Buffer, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

/** IPv6 source address as its canonical text (slow path: allocates a string). */
export function ipv6SrcKey(buf: Buffer, off = 0): string {
  return formatIpv6(buf, off + 8);
}

/** IPv6 destination address as its canonical text (slow path: allocates a string). */
export function ipv6DstKey(buf: Buffer, off = 0): string {
  return formatIpv6(buf, off + 24);
}

// ---------------------------------------------------------------------------------------
// Checksums (RFC 1071)

/** Sum of big-endian 16-bit words, not yet folded or complemented. */
function sum16(buf: Buffer, off: number, len: number, initial: number): number {
  let sum = initial;
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (len & 1) sum += buf[off + len - 1] << 8; // odd length: pad with a zero byte
  return sum;
}

/** Folds carries back in until the sum fits 16 bits (one's complement addition). */
function fold(sum: number): number {
  // Plain arithmetic, not bit operators: the sum may exceed 2^32 for big inputs.
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The Internet checksum of buf[off, off+len): the one's complement of the one's
 * complement sum of 16-bit words. `initial` adds a partial sum first (e.g. a pseudo-header
 * from `pseudoHeaderSum`). Computed over data that already contains a correct checksum
 * field, the result is 0: that is how a checksum is verified.
 */
export function internetChecksum(buf: Buffer, off: number, len: number, initial = 0): number {
  return ~fold(sum16(buf, off, len, initial)) & 0xffff;
}

/** The correct IPv4 header checksum for the header at `off` (its current checksum field is ignored). */
export function ipv4HeaderChecksum(buf: Buffer, off = 0): number {
  const headerLen = (buf[off] & 0x0f) * 4;
  // Sum the header with the checksum field (bytes 10-11) left out, i.e. counted as zero.
  const sum = sum16(buf, off, 10, 0) + sum16(buf, off + 12, headerLen - 12, 0);
  return ~fold(sum) & 0xffff;
}

/** Writes the correct header checksum into the IPv4 header at `off`. */
export function writeIpv4HeaderChecksum(buf: Buffer, off = 0): void {
  buf.writeUInt16BE(ipv4HeaderChecksum(buf, off), off + 10);
}

/** True when the IPv4 header at `off` carries a correct checksum. */
export function ipv4HeaderChecksumValid(buf: Buffer, off = 0): boolean {
  return internetChecksum(buf, off, (buf[off] & 0x0f) * 4) === 0;
}

/**
 * Partial sum of the pseudo-header that TCP and UDP checksums cover: source and
 * destination address, protocol and the transport length. Pass it as `initial` to
 * `internetChecksum` over the transport header + payload. Works for v4 and v6 packets.
 */
export function pseudoHeaderSum(buf: Buffer, off: number, protocol: number, transportLen: number): number {
  if (buf[off] >> 4 === 6) {
    // 32 bytes of addresses, a 32-bit upper-layer length and the next-header value.
    return sum16(buf, off + 8, 32, 0) + (transportLen >>> 16) + (transportLen & 0xffff) + protocol;
  }
  return sum16(buf, off + 12, 8, 0) + protocol + transportLen;
}

// ---------------------------------------------------------------------------------------
// Address helpers

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** '10.8.0.2' -> 0x0a080002. Throws (naming the value) on anything but a dotted quad. */
export function ipv4ToInt(s: string): number {
  const m = typeof s === 'string' ? IPV4_RE.exec(s) : null;
  if (!m) throw new IpParseError('bad_address', `not an IPv4 address: ${JSON.stringify(s)}`);
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i];
    const octet = Number(part);
    // Leading zeros are rejected: some tools read "010" as octal 8, so it is ambiguous.
    if (octet > 255 || (part.length > 1 && part[0] === '0')) {
      throw new IpParseError('bad_address', `not an IPv4 address: ${JSON.stringify(s)}`);
    }
    n = n * 256 + octet;
  }
  return n;
}

/** True when `s` is a dotted-quad IPv4 address that `ipv4ToInt` accepts. */
export function isIpv4(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  try {
    ipv4ToInt(s);
    return true;
  } catch {
    return false;
  }
}

/** 0x0a080002 -> '10.8.0.2'. */
export function intToIpv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export interface Cidr {
  /** Network address as uint32 (host bits cleared). */
  network: number;
  prefix: number;
  /** Netmask as uint32, e.g. /24 -> 0xffffff00. */
  mask: number;
}

/** Netmask for a prefix length as uint32 (/0 -> 0, /32 -> 0xffffffff). */
export function prefixToMask(prefix: number): number {
  // `<< 32` is a no-op in JavaScript, so /0 needs its own case.
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/**
 * '10.8.0.0/24' -> {network, prefix, mask}. Host bits, if given ('10.8.0.5/24'), are
 * cleared. A bare address means /32. Throws naming the value when malformed.
 */
export function parseCidr(s: string): Cidr {
  if (typeof s !== 'string') throw new IpParseError('bad_address', `not a CIDR: ${JSON.stringify(s)}`);
  const slash = s.indexOf('/');
  const addrPart = slash < 0 ? s : s.slice(0, slash);
  let prefix = 32;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,2}$/.test(p) || Number(p) > 32) {
      throw new IpParseError('bad_address', `bad prefix length in ${JSON.stringify(s)} (want 0..32)`);
    }
    prefix = Number(p);
  }
  let addr: number;
  try {
    addr = ipv4ToInt(addrPart);
  } catch {
    throw new IpParseError('bad_address', `not a CIDR: ${JSON.stringify(s)}`);
  }
  const mask = prefixToMask(prefix);
  return { network: (addr & mask) >>> 0, prefix, mask };
}

/** '10.8.0.0/24' form of a Cidr. */
export function formatCidr(c: Cidr): string {
  return `${intToIpv4(c.network)}/${c.prefix}`;
}

/** True when the uint32 address lies inside the CIDR. */
export function inCidr(addr: number, cidr: Cidr): boolean {
  return ((addr & cidr.mask) >>> 0) === cidr.network;
}

/** Canonical IPv6 text (RFC 5952: lowercase, longest zero run as '::') of 16 bytes at `off`. */
export function formatIpv6(buf: Buffer, off: number): string {
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((buf[off + 2 * i] << 8) | buf[off + 2 * i + 1]);
  // Longest run of two or more zero words (first one wins a tie).
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}

// ---------------------------------------------------------------------------------------
// Parsed representation (slow path: lab tools, capture reports)

interface IpReprCommon {
  src: string;
  dst: string;
  /** Transport protocol (IPv4 protocol field, or the IPv6 next header after extension headers). */
  protocol: number;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl: number;
  /** Length of the whole packet according to its header. */
  totalLength: number;
  headerLength: number;
  /** Where the IP packet starts in the buffer it was parsed from. */
  offset: number;
  /** Absolute offset (in the parsed buffer) and length of what follows the IP header(s). */
  payloadOffset: number;
  payloadLength: number;
  /** True when the packet is one fragment of a larger datagram. */
  fragmented: boolean;
  /** False for a non-first fragment: the transport header is in an earlier fragment. */
  hasTransportHeader: boolean;
}

export interface Ipv4Repr extends IpReprCommon {
  version: 4;
  id: number;
  dontFragment: boolean;
  moreFragments: boolean;
  /** Fragment offset in bytes. */
  fragmentOffset: number;
  headerChecksum: number;
  headerChecksumValid: boolean;
}

export interface Ipv6Repr extends IpReprCommon {
  version: 6;
  flowLabel: number;
}

export type IpRepr = Ipv4Repr | Ipv6Repr;

/** Parses the IP packet at buf[off, off+len). Throws IpParseError (with a code) if malformed. */
export function parseIp(buf: Buffer, off = 0, len = buf.length - off): IpRepr {
  const err = checkIp(buf, off, len);
  if (err) throw new IpParseError(err, `invalid IP packet: ${err}`);
  return buf[off] >> 4 === 4 ? parseIpv4(buf, off) : parseIpv6(buf, off);
}

/** parseIp for an IPv4 packet checkIp accepted. */
function parseIpv4(buf: Buffer, off: number): Ipv4Repr {
  const headerLength = (buf[off] & 0x0f) * 4;
  const totalLength = (buf[off + 2] << 8) | buf[off + 3];
  const fragField = (buf[off + 6] << 8) | buf[off + 7];
  const fragmentOffset = (fragField & 0x1fff) * 8;
  return {
    version: 4,
    src: intToIpv4(ipv4Src(buf, off)),
    dst: intToIpv4(ipv4Dst(buf, off)),
    protocol: buf[off + 9],
    ttl: buf[off + 8],
    totalLength,
    headerLength,
    offset: off,
    payloadOffset: off + headerLength,
    payloadLength: totalLength - headerLength,
    fragmented: fragmentOffset !== 0 || (fragField & 0x2000) !== 0,
    hasTransportHeader: fragmentOffset === 0,
    id: (buf[off + 4] << 8) | buf[off + 5],
    dontFragment: (fragField & 0x4000) !== 0,
    moreFragments: (fragField & 0x2000) !== 0,
    fragmentOffset,
    headerChecksum: (buf[off + 10] << 8) | buf[off + 11],
    headerChecksumValid: ipv4HeaderChecksumValid(buf, off),
  };
}

/** parseIp for an IPv6 packet checkIp accepted. */
function parseIpv6(buf: Buffer, off: number): Ipv6Repr {
  // Walk the common extension headers to find the transport protocol.
  const totalLength = IPV6_HEADER_LEN + ((buf[off + 4] << 8) | buf[off + 5]);
  const end = off + totalLength;
  let next = buf[off + 6];
  let pos = off + IPV6_HEADER_LEN;
  let hasTransportHeader = true;
  let fragmented = false;
  for (;;) {
    if (next === 0 || next === 43 || next === 60) {
      // Hop-by-hop, routing, destination options: length in 8-byte units, not counting the first 8.
      if (pos + 8 > end) throw new IpParseError('truncated_transport', 'IPv6 extension header truncated');
      const extLen = (buf[pos + 1] + 1) * 8;
      if (pos + extLen > end) throw new IpParseError('truncated_transport', 'IPv6 extension header truncated');
      next = buf[pos];
      pos += extLen;
    } else if (next === 44) {
      // Fragment header: fixed 8 bytes; later fragments carry no transport header.
      if (pos + 8 > end) throw new IpParseError('truncated_transport', 'IPv6 fragment header truncated');
      fragmented = true;
      if ((((buf[pos + 2] << 8) | buf[pos + 3]) & 0xfff8) !== 0) hasTransportHeader = false;
      next = buf[pos];
      pos += 8;
    } else {
      break;
    }
  }
  return {
    version: 6,
    src: ipv6SrcKey(buf, off),
    dst: ipv6DstKey(buf, off),
    protocol: next,
    ttl: buf[off + 7],
    totalLength,
    headerLength: pos - off,
    offset: off,
    payloadOffset: pos,
    payloadLength: end - pos,
    fragmented,
    hasTransportHeader,
    flowLabel: ((buf[off + 1] & 0x0f) << 16) | (buf[off + 2] << 8) | buf[off + 3],
  };
}

export interface TcpRepr {
  kind: 'tcp';
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** Raw flag bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80). */
  flags: number;
  /** The set flags by name, e.g. ['SYN', 'ACK']. */
  flagNames: string[];
  window: number;
  headerLength: number;
  /** null when it cannot be checked: the packet is the first of several fragments. */
  checksumValid: boolean | null;
  payloadOffset: number;
  payloadLength: number;
}

export interface UdpRepr {
  kind: 'udp';
  srcPort: number;
  dstPort: number;
  /** The UDP length field (header + payload). */
  length: number;
  /** null when the sender left the checksum out (0, allowed for UDP over IPv4) or the packet is a fragment. */
  checksumValid: boolean | null;
  payloadOffset: number;
  payloadLength: number;
  /** The payload, a view into the parsed buffer (not a copy). */
  payload: Buffer;
}

export interface IcmpRepr {
  kind: 'icmp' | 'icmpv6';
  type: number;
  code: number;
  /** Identifier and sequence number: only meaningful for echo request/reply. */
  id: number;
  seq: number;
  /** null when the packet is the first of several fragments (the checksum covers them all). */
  checksumValid: boolean | null;
  payloadOffset: number;
  payloadLength: number;
}

export type TransportRepr = TcpRepr | UdpRepr | IcmpRepr;

const TCP_FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'];

/**
 * Parses the TCP, UDP, ICMP or ICMPv6 header that follows `repr` in `buf` (the buffer
 * `repr` was parsed from). Returns null for other protocols and for non-first fragments;
 * throws IpParseError('truncated_transport') when the header does not fit.
 */
export function parseTransport(repr: IpRepr, buf: Buffer): TransportRepr | null {
  if (!repr.hasTransportHeader) return null;
  switch (repr.protocol) {
    case PROTO_TCP:
      return parseTcp(repr, buf);
    case PROTO_UDP:
      return parseUdp(repr, buf);
    case PROTO_ICMP:
    case PROTO_ICMPV6:
      return parseIcmp(repr, buf);
    default:
      return null;
  }
}

function needBytes(n: number, min: number, what: string): void {
  if (n < min) throw new IpParseError('truncated_transport', `${what} header truncated (${n} < ${min} bytes)`);
}

// A fragmented datagram's checksum covers all fragments; it cannot be checked on the first
// alone, so the parsers below report checksumValid null for a first fragment.

function parseTcp(repr: IpRepr, buf: Buffer): TcpRepr {
  const p = repr.payloadOffset;
  const n = repr.payloadLength;
  needBytes(n, 20, 'TCP');
  const headerLength = (buf[p + 12] >> 4) * 4;
  if (headerLength < 20 || headerLength > n) {
    throw new IpParseError('truncated_transport', `TCP data offset ${headerLength} out of range`);
  }
  const flags = buf[p + 13];
  return {
    kind: 'tcp',
    srcPort: buf.readUInt16BE(p),
    dstPort: buf.readUInt16BE(p + 2),
    seq: buf.readUInt32BE(p + 4),
    ack: buf.readUInt32BE(p + 8),
    flags,
    flagNames: TCP_FLAG_NAMES.filter((_, i) => flags & (1 << i)),
    window: buf.readUInt16BE(p + 14),
    headerLength,
    checksumValid: repr.fragmented ? null : internetChecksum(buf, p, n, pseudoHeaderSum(buf, repr.offset, PROTO_TCP, n)) === 0,
    payloadOffset: p + headerLength,
    payloadLength: n - headerLength,
  };
}

function parseUdp(repr: IpRepr, buf: Buffer): UdpRepr {
  const p = repr.payloadOffset;
  needBytes(repr.payloadLength, 8, 'UDP');
  const length = buf.readUInt16BE(p + 4);
  if (length < 8 || length > repr.payloadLength) throw new IpParseError('truncated_transport', `UDP length ${length} out of range`);
  const checksum = buf.readUInt16BE(p + 6);
  let checksumValid: boolean | null = null;
  if (!repr.fragmented && (checksum !== 0 || repr.version === 6)) {
    checksumValid = internetChecksum(buf, p, length, pseudoHeaderSum(buf, repr.offset, PROTO_UDP, length)) === 0;
  }
  return {
    kind: 'udp',
    srcPort: buf.readUInt16BE(p),
    dstPort: buf.readUInt16BE(p + 2),
    length,
    checksumValid,
    payloadOffset: p + 8,
    payloadLength: length - 8,
    payload: buf.subarray(p + 8, p + length),
  };
}

function parseIcmp(repr: IpRepr, buf: Buffer): IcmpRepr {
  const p = repr.payloadOffset;
  const n = repr.payloadLength;
  const v6 = repr.protocol === PROTO_ICMPV6;
  needBytes(n, 8, v6 ? 'ICMPv6' : 'ICMP');
  // ICMPv6 checksums include the pseudo-header; ICMPv4 ones do not.
  const initial = v6 ? pseudoHeaderSum(buf, repr.offset, PROTO_ICMPV6, n) : 0;
  return {
    kind: v6 ? 'icmpv6' : 'icmp',
    type: buf[p],
    code: buf[p + 1],
    id: buf.readUInt16BE(p + 4),
    seq: buf.readUInt16BE(p + 6),
    checksumValid: repr.fragmented ? null : internetChecksum(buf, p, n, initial) === 0,
    payloadOffset: p + 8,
    payloadLength: n - 8,
  };
}
