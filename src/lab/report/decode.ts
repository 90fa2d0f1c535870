// Decoding one UDP payload as an eavesdropper on the underlay can: the DTLS record headers,
// a plaintext tunnel frame's inner IP packet, and how text-like the bytes are. No capture
// state here; src/lab/report/analyze.ts runs this over every packet of a capture.

import { IpRepr, parseIp, parseTransport, TransportRepr } from '../../wire/ip';

/** One DTLS record header, as anyone on the path can read it. */
export interface DtlsRecordInfo {
  contentType: number;
  /** 'handshake', 'application_data', ... */
  contentTypeName: string;
  /** 'DTLS 1.2' (0xfefd) or 'DTLS 1.0' (0xfeff). */
  version: string;
  epoch: number;
  /** 48-bit record sequence number. */
  sequence: number;
  /** Length of the record body as the header claims it. */
  length: number;
  /** True once keys are in use (epoch > 0): the body is ciphertext. Always so for application data. */
  encrypted: boolean;
  /** For readable handshake records (epoch 0): the handshake message type. */
  handshakeType?: number;
  handshakeTypeName?: string;
  /** For readable alerts (epoch 0): 'fatal handshake_failure' etc. */
  alert?: string;
  /** The header claims more bytes than the datagram has left. */
  truncated?: boolean;
}

/** The inner packet of a plaintext DATA frame. */
export interface InnerPacketInfo {
  version: 4 | 6;
  src: string;
  dst: string;
  /** 'TCP', 'UDP', 'ICMP', 'ICMPv6' or 'protocol N'. */
  protocol: string;
  ttl: number;
  /** Inner IP packet length. */
  length: number;
  srcPort?: number;
  dstPort?: number;
  /** TCP flags by name. */
  flags?: string[];
  seq?: number;
  ack?: number;
  icmpType?: number;
  icmpCode?: number;
  /** Length of what the transport header carries (the application data). */
  payloadLength?: number;
  /** The start of the application data when it is readable text, e.g. 'GET /index.html HTTP/1.1'. */
  payloadText?: string;
}

/**
 * "Printable" means what a person reads as text: ASCII 0x20..0x7e plus tab, LF and CR
 * (HTTP headers are full of CR LF). Random bytes are printable about 38% of the time
 * (98 of 256 values), text close to 100%.
 */
export function isPrintable(b: number): boolean {
  return (b >= 0x20 && b <= 0x7e) || b === 9 || b === 10 || b === 13;
}

/**
 * Shannon entropy in bits per byte: -sum p(b) log2 p(b) over the byte values that occur.
 * 8 means every value equally likely (ciphertext, compressed data); English text is
 * around 4 to 5. A payload of n bytes cannot exceed log2(n), so short packets score low
 * even when encrypted.
 */
export function shannonEntropy(buf: Uint8Array): number {
  if (buf.length === 0) return 0;
  return entropyOfCounts(byteCounts(buf), buf.length);
}

export function byteCounts(buf: Uint8Array, into = new Array<number>(256).fill(0)): number[] {
  for (let i = 0; i < buf.length; i++) into[buf[i]]++;
  return into;
}

export function entropyOfCounts(counts: number[], total: number): number {
  if (total === 0) return 0;
  let h = 0;
  for (const c of counts) {
    if (c === 0) continue;
    const p = c / total;
    h -= p * Math.log2(p);
  }
  return h;
}

const CONTENT_TYPES: Record<number, string> = {
  20: 'change_cipher_spec',
  21: 'alert',
  22: 'handshake',
  23: 'application_data',
  24: 'heartbeat',
  25: 'tls12_cid',
};

const HANDSHAKE_TYPES: Record<number, string> = {
  0: 'HelloRequest',
  1: 'ClientHello',
  2: 'ServerHello',
  3: 'HelloVerifyRequest',
  4: 'NewSessionTicket',
  11: 'Certificate',
  12: 'ServerKeyExchange',
  13: 'CertificateRequest',
  14: 'ServerHelloDone',
  15: 'CertificateVerify',
  16: 'ClientKeyExchange',
  20: 'Finished',
};

const ALERTS: Record<number, string> = {
  0: 'close_notify',
  10: 'unexpected_message',
  20: 'bad_record_mac',
  40: 'handshake_failure',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  50: 'decode_error',
  51: 'decrypt_error',
  70: 'protocol_version',
  80: 'internal_error',
};

const DTLS_HEADER = 13;

/** Reads the DTLS record headers in one datagram (several records may share it). */
export function parseDtlsRecords(buf: Buffer): { records: DtlsRecordInfo[]; error?: string } {
  const records: DtlsRecordInfo[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < DTLS_HEADER) {
      return { records, error: `${buf.length - off} bytes after the last record, too few for a record header` };
    }
    const ct = buf[off];
    const v = buf.readUInt16BE(off + 1);
    if (!(ct in CONTENT_TYPES) || buf[off + 1] !== 0xfe) {
      return { records, error: `no DTLS record header at byte ${off}` };
    }
    const epoch = buf.readUInt16BE(off + 3);
    // 48-bit sequence number: fits a JavaScript number exactly.
    const sequence = buf.readUInt16BE(off + 5) * 2 ** 32 + buf.readUInt32BE(off + 7);
    const length = buf.readUInt16BE(off + 11);
    const body = off + DTLS_HEADER;
    const rec: DtlsRecordInfo = {
      contentType: ct,
      contentTypeName: CONTENT_TYPES[ct],
      version: v === 0xfefd ? 'DTLS 1.2' : v === 0xfeff ? 'DTLS 1.0' : `0x${v.toString(16)}`,
      epoch,
      sequence,
      length,
      encrypted: epoch > 0 || ct === 23,
    };
    if (body + length > buf.length) rec.truncated = true;
    // Before the ChangeCipherSpec (epoch 0) handshake messages and alerts travel in clear.
    if (!rec.encrypted && ct === 22 && body < buf.length) {
      rec.handshakeType = buf[body];
      rec.handshakeTypeName = HANDSHAKE_TYPES[buf[body]] ?? `type ${buf[body]}`;
    }
    if (!rec.encrypted && ct === 21 && body + 2 <= buf.length) {
      const level = buf[body] === 2 ? 'fatal' : buf[body] === 1 ? 'warning' : `level ${buf[body]}`;
      rec.alert = `${level} ${ALERTS[buf[body + 1]] ?? `alert ${buf[body + 1]}`}`;
    }
    records.push(rec);
    if (rec.truncated) break;
    off = body + length;
  }
  return { records };
}

export const PROTO_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6' };

/** Text that is safe to show: control characters become '.', at most `max` characters. */
export function readable(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\x00-\x1f\x7f-\x9f]/g, '.');
  return clean.length > max ? clean.slice(0, max) + '…' : clean;
}

/** The first line of `buf` when it starts with at least 4 printable characters. */
function leadingText(buf: Buffer, max = 60): string | undefined {
  let n = 0;
  while (n < buf.length && n < max && isPrintable(buf[n]) && buf[n] !== 13 && buf[n] !== 10) n++;
  return n >= 4 ? buf.toString('latin1', 0, n) : undefined;
}

export function decodeInner(payload: Buffer): { inner?: InnerPacketInfo; error?: string } {
  let ip: IpRepr;
  try {
    ip = parseIp(payload, 1);
  } catch (err) {
    return { error: (err as Error).message };
  }
  const inner: InnerPacketInfo = {
    version: ip.version,
    src: ip.src,
    dst: ip.dst,
    protocol: PROTO_NAMES[ip.protocol] ?? `protocol ${ip.protocol}`,
    ttl: ip.ttl,
    length: ip.totalLength,
  };
  let tr: TransportRepr | null;
  try {
    tr = parseTransport(ip, payload);
  } catch (err) {
    return { inner, error: (err as Error).message };
  }
  if (tr) {
    if (tr.kind === 'tcp' || tr.kind === 'udp') {
      inner.srcPort = tr.srcPort;
      inner.dstPort = tr.dstPort;
    }
    if (tr.kind === 'tcp') {
      inner.flags = tr.flagNames;
      inner.seq = tr.seq;
      inner.ack = tr.ack;
    }
    if (tr.kind === 'icmp' || tr.kind === 'icmpv6') {
      inner.icmpType = tr.type;
      inner.icmpCode = tr.code;
    }
    inner.payloadLength = tr.payloadLength;
    const text = leadingText(payload.subarray(tr.payloadOffset, tr.payloadOffset + tr.payloadLength));
    if (text !== undefined) inner.payloadText = text;
  }
  return { inner };
}

export function describeDtlsRecord(r: DtlsRecordInfo): string {
  let s = `${r.contentTypeName}(${r.contentType}) epoch ${r.epoch} seq ${r.sequence} len ${r.length}`;
  if (r.handshakeTypeName) s += `: ${r.handshakeTypeName}`;
  if (r.alert) s += `: ${r.alert}`;
  if (r.encrypted) s += ' [encrypted]';
  if (r.truncated) s += ' [truncated]';
  return s;
}

export function describeInner(i: InnerPacketInfo): string {
  const v = `IPv${i.version}`;
  let s: string;
  const ep = (a: string, p?: number) => (i.version === 6 ? `[${a}]:${p}` : `${a}:${p}`);
  if (i.srcPort !== undefined) s = `${v} ${i.protocol} ${ep(i.src, i.srcPort)} -> ${ep(i.dst, i.dstPort)}`;
  else s = `${v} ${i.protocol} ${i.src} -> ${i.dst}`;
  if (i.flags) s += ` [${i.flags.join(',')}]`;
  if (i.icmpType !== undefined) s += ` type ${i.icmpType} code ${i.icmpCode}`;
  s += ` ttl ${i.ttl}`;
  if (i.payloadLength !== undefined) s += `, ${i.payloadLength} bytes of data`;
  if (i.payloadText) s += `: "${i.payloadText}"`;
  return s;
}
