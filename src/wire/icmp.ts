// ICMPv4 echo ("ping") packets: enough to answer a ping from a test that owns a TUN
// device, and to craft pings in the labs. Whole IPv4 packets in, whole packets out.

import {
  PROTO_ICMP,
  checkIp,
  internetChecksum,
  ipv4Dst,
  ipv4Src,
  ipv4ToInt,
  writeIpv4HeaderChecksum,
} from './ip';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO_REQUEST = 8;
const ICMP_HEADER_LEN = 8;
const DEFAULT_TTL = 64;

/**
 * True when buf[off, off+len) is a well-formed, unfragmented IPv4 ICMP echo request
 * (type 8, code 0) with a correct ICMP checksum.
 */
export function isEchoRequest(buf: Buffer, off = 0, len = buf.length - off): boolean {
  if (checkIp(buf, off, len) !== null || buf[off] >> 4 !== 4) return false;
  if (buf[off + 9] !== PROTO_ICMP) return false;
  // Fragmented echo requests would need reassembly first; not handled here.
  if ((((buf[off + 6] << 8) | buf[off + 7]) & 0x3fff) !== 0) return false;
  const ihl = (buf[off] & 0x0f) * 4;
  const total = (buf[off + 2] << 8) | buf[off + 3];
  const icmpLen = total - ihl;
  if (icmpLen < ICMP_HEADER_LEN) return false;
  const p = off + ihl;
  return buf[p] === ICMP_ECHO_REQUEST && buf[p + 1] === 0 && internetChecksum(buf, p, icmpLen) === 0;
}

/**
 * Builds a 20-byte IPv4 header + ICMP message with both checksums filled in.
 * `icmp` is the ICMP message with its checksum field (bytes 2-3) still zero.
 */
function buildIpv4Icmp(src: number, dst: number, id: number, ttl: number, icmp: Buffer): Buffer {
  const out = Buffer.alloc(20 + icmp.length);
  out[0] = 0x45; // version 4, IHL 5 (no options)
  out.writeUInt16BE(out.length, 2);
  out.writeUInt16BE(id & 0xffff, 4);
  out[8] = ttl;
  out[9] = PROTO_ICMP;
  out.writeUInt32BE(src >>> 0, 12);
  out.writeUInt32BE(dst >>> 0, 16);
  writeIpv4HeaderChecksum(out, 0);
  icmp.copy(out, 20);
  out.writeUInt16BE(internetChecksum(out, 20, icmp.length), 22);
  return out;
}

/**
 * Given an IPv4 ICMP echo request packet, returns the echo reply a host would send:
 * source and destination swapped, type 0, same identifier, sequence and data, fresh
 * TTL, correct IP and ICMP checksums. IP options of the request are not copied.
 * Throws when the input is not a valid echo request (check with isEchoRequest first).
 */
export function buildEchoReply(request: Buffer): Buffer {
  if (!isEchoRequest(request)) throw new Error('buildEchoReply: not a valid IPv4 ICMP echo request');
  const ihl = (request[0] & 0x0f) * 4;
  const total = (request[2] << 8) | request[3];
  const icmp = Buffer.from(request.subarray(ihl, total)); // a copy: the request stays intact
  icmp[0] = ICMP_ECHO_REPLY;
  icmp.writeUInt16BE(0, 2);
  const ipId = (request[4] << 8) | request[5];
  return buildIpv4Icmp(ipv4Dst(request), ipv4Src(request), ipId, DEFAULT_TTL, icmp);
}

export interface EchoRequestOptions {
  /** Addresses as dotted quads or uint32. */
  src: string | number;
  dst: string | number;
  id: number;
  seq: number;
  payload?: Buffer;
  ttl?: number;
}

/** Builds an IPv4 ICMP echo request packet with correct checksums. */
export function buildEchoRequest(o: EchoRequestOptions): Buffer {
  const payload = o.payload ?? Buffer.alloc(0);
  const icmp = Buffer.alloc(ICMP_HEADER_LEN + payload.length);
  icmp[0] = ICMP_ECHO_REQUEST;
  icmp.writeUInt16BE(o.id & 0xffff, 4);
  icmp.writeUInt16BE(o.seq & 0xffff, 6);
  payload.copy(icmp, ICMP_HEADER_LEN);
  const src = typeof o.src === 'number' ? o.src : ipv4ToInt(o.src);
  const dst = typeof o.dst === 'number' ? o.dst : ipv4ToInt(o.dst);
  return buildIpv4Icmp(src, dst, o.seq, o.ttl ?? DEFAULT_TTL, icmp);
}

