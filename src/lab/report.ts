// The capture report: what an eavesdropper on the VPN underlay can read. Two captures of
// the same exchange (say, the lab-only plaintext tunnel and the DTLS tunnel) are analysed
// packet by packet and drawn side by side in one self-contained HTML page.
//
// Two steps, so each can be tested on its own:
//   analyzeCapture(pcapBytes, opts) -> CaptureAnalysis   plain data, no HTML
//   renderReport(a, b, opts)        -> string            the page (inline CSS, SVG and JS)
//
// The page fetches nothing: no external scripts, styles, fonts or images, and a
// Content-Security-Policy that forbids them, so it can be opened offline or mailed around.

import { closeReason, FrameType, frameType, frameTypeName, looksLikeDtls } from '../wire/frame';
import { IpRepr, parseIp, parseTransport, PROTO_UDP, TransportRepr } from '../wire/ip';
import { decodeLink, isSupportedLinkType, linkTypeName, PcapError, readPcap } from './pcap';

// ---------------------------------------------------------------------------------------
// Analysis: plain data

/** How a UDP payload looks to an observer. */
export type PacketKind = 'tunnel-data' | 'tunnel-control' | 'dtls-handshake' | 'dtls-appdata' | 'other';

export const KIND_LABELS: Record<PacketKind, string> = {
  'tunnel-data': 'tunnel DATA (plaintext)',
  'tunnel-control': 'tunnel control (plaintext)',
  'dtls-handshake': 'DTLS handshake / alert',
  'dtls-appdata': 'DTLS application data',
  other: 'other',
};
const KINDS = Object.keys(KIND_LABELS) as PacketKind[];

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

export interface PacketInfo {
  /** 0-based position among the analysed packets. */
  index: number;
  /** 1-based record number in the capture file (Wireshark's "No."). */
  number: number;
  /** Seconds since the first record in the file. */
  time: number;
  /** Underlay addresses and ports: all an encrypted tunnel leaves visible, with size and timing. */
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  /** UDP payload length in bytes. */
  length: number;
  kind: PacketKind;
  /** Tunnel frame type name for plaintext frames: 'DATA', 'CONTROL', 'KEEPALIVE', ... */
  frame?: string;
  inner?: InnerPacketInfo;
  /** Why a DATA frame's inner packet could not be decoded. */
  innerError?: string;
  /** Readable text of a CONTROL or CLOSE frame (control characters replaced, shortened). */
  controlText?: string;
  dtls?: DtlsRecordInfo[];
  /** Why the DTLS records could not all be parsed (garbage after the last good one). */
  dtlsError?: string;
  /** Shannon entropy of the payload, bits per byte (0..8; at most log2(length) for short payloads). */
  entropy: number;
  /** Number of printable bytes (see isPrintable). */
  printable: number;
  /** Offsets of the search string in the payload. */
  matches: number[];
  /** The first `mapBytes` payload bytes, only for the first `mapPackets` packets (for the byte map). */
  head?: Buffer;
}

export interface FlowCount {
  /** 'TCP 10.8.0.2:41234 -> 10.9.0.10:80' */
  flow: string;
  packets: number;
}

export interface CaptureAnalysis {
  linkType: number;
  linkTypeName: string;
  byteOrder: 'little' | 'big';
  nanosecond: boolean;
  /** Records in the file. */
  records: number;
  /** Set when the file ends mid-record (the complete records are still analysed). */
  truncated?: string;
  /** The UDP port filter, if any. */
  port?: number;
  /** Records not analysed, by reason ('not UDP (TCP)', 'other port', ...). */
  skipped: Record<string, number>;
  packets: PacketInfo[];
  totals: {
    packets: number;
    /** Sum of UDP payload lengths. */
    bytes: number;
    printableBytes: number;
    /** printableBytes / bytes (0 without bytes). */
    printableFraction: number;
    /** Mean of the per-packet entropies (packets with a payload). */
    meanEntropy: number;
    /** Entropy of all payload bytes taken together. */
    overallEntropy: number;
    kinds: Record<PacketKind, number>;
    /** Seconds from the first to the last analysed packet. */
    duration: number;
  };
  find: string;
  found: boolean;
  /** Packets whose payload contains `find`. */
  foundPackets: number;
  /** Index of the first such packet. */
  firstFoundIndex?: number;
  /** The longest run of printable bytes in any payload (like the `strings` tool finds). */
  longestText?: { index: number; offset: number; length: number; text: string };
  /** Inner flows readable from plaintext DATA frames, most packets first (at most 20). */
  innerFlows: FlowCount[];
  /** Underlay flows (what even DTLS shows), most packets first (at most 20). */
  underlayFlows: FlowCount[];
}

export interface AnalyzeOptions {
  /** Only UDP datagrams from or to this port (the tunnel's port); default: all UDP. */
  port?: number;
  /** Text to look for in the payloads; default 'HTTP/1.1'. */
  find?: string;
  /** How many packets keep their first bytes for the byte map; default 40. */
  mapPackets?: number;
  /** How many bytes of each of those; default 320. */
  mapBytes?: number;
}

export const DEFAULT_FIND = 'HTTP/1.1';
export const DEFAULT_MAP_PACKETS = 40;
export const DEFAULT_MAP_BYTES = 320;

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

function byteCounts(buf: Uint8Array, into = new Array<number>(256).fill(0)): number[] {
  for (let i = 0; i < buf.length; i++) into[buf[i]]++;
  return into;
}

function entropyOfCounts(counts: number[], total: number): number {
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

const PROTO_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6' };

/** Text that is safe to show: control characters become '.', at most `max` characters. */
function readable(s: string, max: number): string {
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

function decodeInner(payload: Buffer): { inner?: InnerPacketInfo; error?: string } {
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

function innerFlowKey(i: InnerPacketInfo): string {
  const ep = (a: string, p?: number) => (p === undefined ? a : i.version === 6 ? `[${a}]:${p}` : `${a}:${p}`);
  return `${i.protocol} ${ep(i.src, i.srcPort)} -> ${ep(i.dst, i.dstPort)}`;
}

function topFlows(m: Map<string, number>, max = 20): FlowCount[] {
  return [...m.entries()]
    .sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1))
    .slice(0, max)
    .map(([flow, packets]) => ({ flow, packets }));
}

function bump<K>(m: Map<K, number>, k: K): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

/** Classifies and decodes one UDP payload. */
function analyzePayload(payload: Buffer, p: PacketInfo): void {
  if (payload.length === 0) return;
  if (looksLikeDtls(payload)) {
    const { records, error } = parseDtlsRecords(payload);
    p.dtls = records;
    if (error) p.dtlsError = error;
    p.kind = records.length > 0 && records.every((r) => r.contentType === 23) ? 'dtls-appdata' : 'dtls-handshake';
    return;
  }
  const t = frameType(payload);
  if (t < 0) return; // neither DTLS nor a tunnel frame: 'other'
  p.frame = frameTypeName(t);
  if (t === FrameType.DATA) {
    p.kind = 'tunnel-data';
    const { inner, error } = decodeInner(payload);
    if (inner) p.inner = inner;
    if (error) p.innerError = error;
    return;
  }
  p.kind = 'tunnel-control';
  if (t === FrameType.CONTROL) p.controlText = readable(payload.toString('utf8', 1, 1 + 400), 160);
  if (t === FrameType.CLOSE && payload.length > 1) p.controlText = closeReason(payload.subarray(1));
}

/**
 * Analyses one capture file: every UDP datagram (from or to `port`, if given) on an IPv4
 * or IPv6 underlay. Throws PcapError when the file itself is unusable; damaged packets
 * inside a good file are counted or described, never thrown.
 */
export function analyzeCapture(buf: Buffer, opts: AnalyzeOptions = {}): CaptureAnalysis {
  const find = opts.find ?? DEFAULT_FIND;
  if (typeof find !== 'string' || find.length === 0) throw new TypeError('analyzeCapture: find must be a non-empty string');
  const port = opts.port;
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new TypeError(`analyzeCapture: port must be an integer from 1 to 65535, got ${port}`);
  }
  const mapPackets = opts.mapPackets ?? DEFAULT_MAP_PACKETS;
  const mapBytes = opts.mapBytes ?? DEFAULT_MAP_BYTES;

  const file = readPcap(buf);
  const { linkType } = file.header;
  if (!isSupportedLinkType(linkType)) {
    throw new PcapError(
      'unsupported_link_type',
      `unsupported link type ${linkType}: this report reads EN10MB (1), RAW (101), LINUX_SLL (113) and LINUX_SLL2 (276) captures`,
    );
  }
  const needle = Buffer.from(find, 'utf8');
  // Relative times from the integer fields: a double holding seconds since 1970 has lost
  // the nanoseconds already.
  const unit = file.header.nanosecond ? 1e9 : 1e6;
  const first = file.records[0];
  const since = (r: { tsSec: number; tsFrac: number }) => r.tsSec - first.tsSec + (r.tsFrac - first.tsFrac) / unit;

  const skipped = new Map<string, number>();
  const packets: PacketInfo[] = [];
  const allCounts = new Array<number>(256).fill(0);
  const innerFlows = new Map<string, number>();
  const underlayFlows = new Map<string, number>();
  let longest: CaptureAnalysis['longestText'];

  for (const rec of file.records) {
    const link = decodeLink(linkType, rec.data);
    if (!link.ok) {
      bump(skipped, link.reason.startsWith('not IP') ? link.reason : 'bad link header');
      continue;
    }
    let ip: IpRepr;
    try {
      ip = parseIp(rec.data, link.offset);
    } catch (err) {
      // A snaplen shorter than the packet leaves its IP header promising more than is there.
      bump(skipped, rec.data.length < rec.originalLength ? 'cut short by the snaplen' : 'malformed IP');
      continue;
    }
    if (ip.protocol !== PROTO_UDP) {
      bump(skipped, `not UDP (${PROTO_NAMES[ip.protocol] ?? `protocol ${ip.protocol}`})`);
      continue;
    }
    if (!ip.hasTransportHeader) {
      bump(skipped, 'IP fragment');
      continue;
    }
    let udp: TransportRepr | null;
    try {
      udp = parseTransport(ip, rec.data);
    } catch {
      bump(skipped, ip.fragmented ? 'IP fragment' : 'malformed UDP');
      continue;
    }
    if (!udp || udp.kind !== 'udp') continue; // cannot happen for protocol 17; keeps TypeScript sure
    if (port !== undefined && udp.srcPort !== port && udp.dstPort !== port) {
      bump(skipped, 'other port');
      continue;
    }
    const payload = udp.payload;
    const p: PacketInfo = {
      index: packets.length,
      number: rec.number,
      time: since(rec),
      src: ip.src,
      dst: ip.dst,
      srcPort: udp.srcPort,
      dstPort: udp.dstPort,
      length: payload.length,
      kind: 'other',
      entropy: shannonEntropy(payload),
      printable: 0,
      matches: [],
    };
    for (let i = 0; i < payload.length; i++) if (isPrintable(payload[i])) p.printable++;
    for (let at = payload.indexOf(needle); at >= 0 && p.matches.length < 100; at = payload.indexOf(needle, at + 1)) {
      p.matches.push(at);
    }
    // Longest run of printable bytes (what `strings` would print first).
    for (let i = 0; i < payload.length; ) {
      if (!isPrintable(payload[i])) {
        i++;
        continue;
      }
      let j = i;
      while (j < payload.length && isPrintable(payload[j])) j++;
      if (!longest || j - i > longest.length) {
        longest = { index: p.index, offset: i, length: j - i, text: readable(payload.toString('latin1', i, Math.min(j, i + 200)), 120) };
      }
      i = j;
    }
    byteCounts(payload, allCounts);
    analyzePayload(payload, p);
    if (p.inner) bump(innerFlows, innerFlowKey(p.inner));
    const ep = (a: string, pt: number) => (ip.version === 6 ? `[${a}]:${pt}` : `${a}:${pt}`);
    bump(underlayFlows, `UDP ${ep(p.src, p.srcPort)} -> ${ep(p.dst, p.dstPort)}`);
    if (p.index < mapPackets) p.head = Buffer.from(payload.subarray(0, mapBytes));
    packets.push(p);
  }

  const kinds = Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<PacketKind, number>;
  let bytes = 0;
  let printableBytes = 0;
  let entropySum = 0;
  let withPayload = 0;
  let foundPackets = 0;
  let firstFoundIndex: number | undefined;
  for (const p of packets) {
    kinds[p.kind]++;
    bytes += p.length;
    printableBytes += p.printable;
    if (p.length > 0) {
      entropySum += p.entropy;
      withPayload++;
    }
    if (p.matches.length > 0) {
      foundPackets++;
      if (firstFoundIndex === undefined) firstFoundIndex = p.index;
    }
  }
  const result: CaptureAnalysis = {
    linkType,
    linkTypeName: linkTypeName(linkType),
    byteOrder: file.header.byteOrder,
    nanosecond: file.header.nanosecond,
    records: file.records.length,
    skipped: Object.fromEntries(skipped),
    packets,
    totals: {
      packets: packets.length,
      bytes,
      printableBytes,
      printableFraction: bytes > 0 ? printableBytes / bytes : 0,
      meanEntropy: withPayload > 0 ? entropySum / withPayload : 0,
      overallEntropy: entropyOfCounts(allCounts, bytes),
      kinds,
      duration: packets.length > 1 ? packets[packets.length - 1].time - packets[0].time : 0,
    },
    find,
    found: foundPackets > 0,
    foundPackets,
    innerFlows: topFlows(innerFlows),
    underlayFlows: topFlows(underlayFlows),
  };
  if (file.truncated) result.truncated = file.truncated;
  if (port !== undefined) result.port = port;
  if (firstFoundIndex !== undefined) result.firstFoundIndex = firstFoundIndex;
  if (longest) result.longestText = longest;
  return result;
}

/** One line saying what an observer reads in a packet, e.g. for a table cell or a terminal. */
export function describePacket(p: PacketInfo): string {
  if (p.dtls) {
    const recs = p.dtls.map(describeDtlsRecord);
    if (p.dtlsError) recs.push(`(${p.dtlsError})`);
    return recs.join('; ');
  }
  if (p.frame === 'DATA') {
    if (!p.inner) return `DATA: inner packet not decodable (${p.innerError ?? 'unknown'})`;
    return `DATA: ${describeInner(p.inner)}${p.innerError ? ` (${p.innerError})` : ''}`;
  }
  if (p.frame) return p.controlText ? `${p.frame} ${p.controlText}` : p.frame;
  if (p.length === 0) return 'empty datagram';
  return 'not a tunnel frame or DTLS record';
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
  if (i.srcPort !== undefined) s = `${v} ${i.protocol} ${i.src}:${i.srcPort} -> ${i.dst}:${i.dstPort}`;
  else s = `${v} ${i.protocol} ${i.src} -> ${i.dst}`;
  if (i.flags) s += ` [${i.flags.join(',')}]`;
  if (i.icmpType !== undefined) s += ` type ${i.icmpType} code ${i.icmpCode}`;
  s += ` ttl ${i.ttl}`;
  if (i.payloadLength !== undefined) s += `, ${i.payloadLength} bytes of data`;
  if (i.payloadText) s += `: "${i.payloadText}"`;
  return s;
}

// ---------------------------------------------------------------------------------------
// The HTML page

export interface ReportOptions {
  title?: string;
  /** Short names for the two sides, e.g. 'plaintext tunnel' and 'DTLS tunnel'. */
  labelA?: string;
  labelB?: string;
  /** File names, shown under the labels. */
  fileA?: string;
  fileB?: string;
  /** How many packets the header tables and byte maps show; default 40. */
  tablePackets?: number;
  /** Bars drawn per chart at most; default 2000. */
  chartPackets?: number;
  /** Shown in the footer; default now. Fixed in tests. */
  generatedAt?: Date;
}

/** Escapes text for HTML element content and attribute values. */
export function esc(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const KIND_COLOURS: Record<PacketKind, string> = {
  'tunnel-data': '#1f77b4',
  'tunnel-control': '#9467bd',
  'dtls-handshake': '#ff7f0e',
  'dtls-appdata': '#2ca02c',
  other: '#8c8c8c',
};

const fmtInt = (n: number) => n.toLocaleString('en-US');
const pct = (f: number) => `${(f * 100).toFixed(1)}%`;

/** A "nice" tick step (1, 2 or 5 times a power of ten) giving at most ~5 ticks up to max. */
function tickStep(max: number): number {
  if (max <= 0) return 1;
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * pow >= raw) return m * pow;
  return 10 * pow;
}

const CHART_W = 640;
const CHART_H = 210;
const M = { left: 48, right: 10, top: 12, bottom: 34 };

interface ChartSpec {
  side: 'a' | 'b';
  what: 'sizes' | 'entropy';
  packets: PacketInfo[];
  /** Bars the x axis has room for (the same on both sides, so they line up). */
  slots: number;
  yMax: number;
  yLabel: string;
  value: (p: PacketInfo) => number;
  tip: (p: PacketInfo) => string;
  /** Horizontal reference lines. */
  lines?: { y: number; label: string; cls: string }[];
  /** A short mark above each bar at this value (e.g. the highest value possible for the packet). */
  ceiling?: (p: PacketInfo) => number;
}

/** An SVG bar chart: one bar per packet, coloured by kind. */
function barChart(c: ChartSpec): string {
  const pw = CHART_W - M.left - M.right;
  const ph = CHART_H - M.top - M.bottom;
  const y = (v: number) => M.top + ph - (Math.min(v, c.yMax) / c.yMax) * ph;
  const parts: string[] = [];
  parts.push(
    `<svg class="chart ${c.what}" data-testid="${c.what}-${c.side}" data-bars="${c.packets.length}" viewBox="0 0 ${CHART_W} ${CHART_H}" width="${CHART_W}" height="${CHART_H}" role="img" aria-label="${esc(c.yLabel)} per packet">`,
  );
  // Y grid and ticks
  const step = tickStep(c.yMax);
  for (let v = 0; v <= c.yMax + 1e-9; v += step) {
    const yy = y(v).toFixed(1);
    parts.push(`<line class="grid" x1="${M.left}" x2="${CHART_W - M.right}" y1="${yy}" y2="${yy}"/>`);
    parts.push(`<text class="tick" x="${M.left - 5}" y="${yy}" text-anchor="end" dominant-baseline="middle">${fmtInt(Math.round(v * 100) / 100)}</text>`);
  }
  parts.push(`<text class="axis-label" transform="translate(12 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`);
  // Bars
  const slot = pw / Math.max(c.slots, 1);
  const bw = slot > 3 ? slot * 0.8 : Math.max(slot, 0.6);
  for (const p of c.packets) {
    const v = c.value(p);
    const x = M.left + p.index * slot + (slot - bw) / 2;
    const top = y(v);
    const h = Math.max(M.top + ph - top, v > 0 ? 1 : 0);
    parts.push(
      `<rect class="bar k-${p.kind}" data-index="${p.index}" data-side="${c.side}" data-value="${Number(v.toFixed(3))}" x="${x.toFixed(2)}" y="${(M.top + ph - h).toFixed(2)}" width="${bw.toFixed(2)}" height="${h.toFixed(2)}"><title>${esc(c.tip(p))}</title></rect>`,
    );
    if (c.ceiling && p.length > 0) {
      const cy = y(c.ceiling(p)).toFixed(1);
      parts.push(`<line class="ceiling" x1="${x.toFixed(2)}" x2="${(x + bw).toFixed(2)}" y1="${cy}" y2="${cy}"/>`);
    }
  }
  for (const l of c.lines ?? []) {
    const yy = y(l.y).toFixed(1);
    parts.push(`<line class="${l.cls}" x1="${M.left}" x2="${CHART_W - M.right}" y1="${yy}" y2="${yy}"/>`);
    parts.push(`<text class="${l.cls}-label" x="${CHART_W - M.right - 2}" y="${(Number(yy) - 4).toFixed(1)}" text-anchor="end">${esc(l.label)}</text>`);
  }
  // X axis: packet numbers
  parts.push(`<line class="axis" x1="${M.left}" x2="${CHART_W - M.right}" y1="${M.top + ph}" y2="${M.top + ph}"/>`);
  const xstep = tickStep(c.slots);
  for (let i = 0; i < c.slots; i += xstep) {
    const x = (M.left + i * slot + slot / 2).toFixed(1);
    parts.push(`<text class="tick" x="${x}" y="${M.top + ph + 13}" text-anchor="middle">${i + 1}</text>`);
  }
  parts.push(`<text class="axis-label" x="${M.left + pw / 2}" y="${CHART_H - 4}" text-anchor="middle">packet (in capture order)</text>`);
  if (c.packets.length === 0) {
    parts.push(`<text class="empty" x="${M.left + pw / 2}" y="${M.top + ph / 2}" text-anchor="middle">no UDP packets in this capture</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n');
}

function packetTip(p: PacketInfo): string {
  return `#${p.index + 1} (record ${p.number}) ${p.src}:${p.srcPort} → ${p.dst}:${p.dstPort}, ${p.length} bytes, ${KIND_LABELS[p.kind]}, entropy ${p.entropy.toFixed(2)} bits/byte`;
}

function legend(): string {
  return (
    '<div class="legend">' +
    KINDS.map((k) => `<span><i class="sw k-${k}"></i>${esc(KIND_LABELS[k])}</span>`).join('') +
    '</div>'
  );
}

/** What the header table shows for one packet, as HTML. */
function readableCell(p: PacketInfo): string {
  if (p.dtls) {
    const rows = p.dtls.map((r) => {
      let s = `<b>${esc(r.contentTypeName)}</b> (${r.contentType}) · ${esc(r.version)} · epoch ${r.epoch} · seq ${r.sequence} · len ${r.length}`;
      if (r.handshakeTypeName) s += ` · <b>${esc(r.handshakeTypeName)}</b>`;
      if (r.alert) s += ` · ${esc(r.alert)}`;
      if (r.encrypted) s += ' <span class="badge enc">encrypted</span>';
      if (r.truncated) s += ' <span class="badge warn">truncated</span>';
      return `<div class="rec">${s}</div>`;
    });
    if (p.dtlsError) rows.push(`<div class="rec muted">${esc(p.dtlsError)}</div>`);
    return rows.join('');
  }
  if (p.frame === 'DATA') {
    if (!p.inner) return `<b>DATA</b> <span class="muted">inner packet not decodable: ${esc(p.innerError ?? '')}</span>`;
    const i = p.inner;
    const ep = (a: string, port?: number) => (port === undefined ? esc(a) : `${esc(a)}:${port}`);
    let s = `<b>DATA</b> · IPv${i.version} <b>${ep(i.src, i.srcPort)}</b> → <b>${ep(i.dst, i.dstPort)}</b> · ${esc(i.protocol)}`;
    if (i.flags) s += ` [${esc(i.flags.join(','))}]`;
    if (i.seq !== undefined) s += ` seq ${i.seq}`;
    if (i.icmpType !== undefined) s += ` type ${i.icmpType} code ${i.icmpCode}`;
    s += ` · ttl ${i.ttl}`;
    if (i.payloadLength !== undefined) s += ` · ${i.payloadLength} B data`;
    if (i.payloadText) s += `<div class="text">“${esc(i.payloadText)}”</div>`;
    if (p.innerError) s += ` <span class="muted">(${esc(p.innerError)})</span>`;
    return s;
  }
  if (p.frame) return `<b>${esc(p.frame)}</b>${p.controlText ? ` <span class="text">${esc(p.controlText)}</span>` : ''}`;
  return `<span class="muted">${p.length === 0 ? 'empty datagram' : 'not a tunnel frame or DTLS record'}</span>`;
}

function headerTable(cap: CaptureAnalysis, side: 'a' | 'b', n: number): string {
  if (cap.packets.length === 0) return `<p class="muted" data-testid="headers-${side}">no packets</p>`;
  // Arrows instead of full addresses: → from the first packet's sender, ← back to it.
  const first = cap.packets[0];
  const rows = cap.packets.slice(0, n).map((p) => {
    const out = p.src === first.src && p.srcPort === first.srcPort;
    return (
      `<tr id="pkt-${side}-${p.index}" class="k-row-${p.kind}" data-index="${p.index}" data-kind="${p.kind}">` +
      `<td class="num">${p.index + 1}</td>` +
      `<td class="num">${p.time.toFixed(3)}</td>` +
      `<td class="dir" title="${esc(`${p.src}:${p.srcPort} → ${p.dst}:${p.dstPort}`)}">${out ? '→' : '←'}</td>` +
      `<td class="num">${p.length}</td>` +
      `<td><i class="sw k-${p.kind}" title="${esc(KIND_LABELS[p.kind])}"></i></td>` +
      `<td class="what">${readableCell(p)}</td></tr>`
    );
  });
  const more = cap.packets.length > n ? `<p class="muted">… and ${cap.packets.length - n} more packets.</p>` : '';
  return (
    `<table class="headers" data-testid="headers-${side}"><thead><tr><th>#</th><th>time s</th><th title="→ from ${esc(`${first.src}:${first.srcPort}`)}, ← towards it">dir</th><th>bytes</th><th></th><th>what an observer can read</th></tr></thead>` +
    `<tbody>${rows.join('')}</tbody></table>${more}`
  );
}

/** Data for the byte map script: payload heads as base64, one entry per packet. */
function byteMapData(cap: CaptureAnalysis, n: number): string {
  const rows = cap.packets
    .filter((p) => p.head && p.index < n)
    .map((p) => ({ i: p.index, k: p.kind, len: p.length, b: p.head!.toString('base64'), m: p.matches }));
  // '<' escaped so no payload can ever close the <script> element.
  return JSON.stringify({ findLength: Buffer.byteLength(cap.find, 'utf8'), rows }).replace(/</g, '\\u003c');
}

function summaryCard(cap: CaptureAnalysis, side: 'a' | 'b', label: string, file?: string): string {
  const t = cap.totals;
  const verdict = cap.found
    ? `<div class="verdict leak" data-testid="verdict-${side}">“${esc(cap.find)}” is readable in ${cap.foundPackets} packet${cap.foundPackets === 1 ? '' : 's'}</div>`
    : `<div class="verdict safe" data-testid="verdict-${side}">“${esc(cap.find)}” not found in any payload</div>`;
  return (
    `<div class="card" data-testid="summary-${side}" data-found="${cap.found}" data-packets="${t.packets}" data-bytes="${t.bytes}" ` +
    `data-printable="${t.printableFraction.toFixed(4)}" data-entropy="${t.meanEntropy.toFixed(4)}">` +
    `<h2><span class="side">${side.toUpperCase()}</span> ${esc(label)}</h2>` +
    (file ? `<div class="file">${esc(file)} · ${esc(cap.linkTypeName)} · ${cap.records} records</div>` : '') +
    verdict +
    (cap.truncated ? `<div class="warnbox">The file is truncated: ${esc(cap.truncated)}. The complete records were analysed.</div>` : '') +
    '</div>'
  );
}

function summaryTable(a: CaptureAnalysis, b: CaptureAnalysis): string {
  const row = (name: string, key: string, f: (c: CaptureAnalysis, side: 'a' | 'b') => string, extra?: (c: CaptureAnalysis) => string) =>
    `<tr><th>${name}</th>` +
    ([a, b] as const)
      .map((c, i) => {
        const side = i === 0 ? 'a' : 'b';
        return `<td data-testid="${key}-${side}"${extra ? ' ' + extra(c) : ''}>${f(c, side)}</td>`;
      })
      .join('') +
    '</tr>';
  const skipped = (c: CaptureAnalysis) => {
    const e = Object.entries(c.skipped);
    return e.length === 0 ? '' : `<div class="muted">skipped: ${e.map(([k, v]) => `${esc(k)} ${v}`).join(', ')}</div>`;
  };
  const kinds = (c: CaptureAnalysis) =>
    KINDS.filter((k) => c.totals.kinds[k] > 0)
      .map((k) => `<span class="kc"><i class="sw k-${k}"></i>${esc(KIND_LABELS[k])}: ${c.totals.kinds[k]}</span>`)
      .join('') || '<span class="muted">none</span>';
  const meter = (f: number) => `<span class="meter"><span style="width:${(f * 100).toFixed(1)}%"></span></span>`;
  const flows = (list: FlowCount[], none: string) =>
    list.length === 0
      ? `<span class="muted">${none}</span>`
      : list
          .slice(0, 6)
          .map((f) => `<div class="flow">${esc(f.flow.replace('->', '→'))} <span class="muted">(${f.packets})</span></div>`)
          .join('') + (list.length > 6 ? `<div class="muted">… ${list.length - 6} more</div>` : '');
  return (
    `<table class="summary" data-testid="summary-table"><thead><tr><th></th><th>A</th><th>B</th></tr></thead><tbody>` +
    row('UDP packets', 'packets', (c) => `${fmtInt(c.totals.packets)}${c.port ? ` (port ${c.port})` : ''} of ${fmtInt(c.records)} records${skipped(c)}`, (c) => `data-value="${c.totals.packets}"`) +
    row('UDP payload bytes', 'bytes', (c) => `${fmtInt(c.totals.bytes)}${c.totals.packets ? ` <span class="muted">(${(c.totals.bytes / c.totals.packets).toFixed(0)} per packet)</span>` : ''}`, (c) => `data-value="${c.totals.bytes}"`) +
    row('Duration', 'duration', (c) => `${c.totals.duration.toFixed(3)} s`) +
    row('Kinds of packet', 'kinds', kinds) +
    row('Printable bytes', 'printable', (c) => `${meter(c.totals.printableFraction)} ${pct(c.totals.printableFraction)} <span class="muted">(random bytes: ~38%)</span>`, (c) => `data-value="${c.totals.printableFraction.toFixed(4)}"`) +
    row('Longest readable run', 'longest', (c) =>
      c.longestText
        ? `${c.longestText.length} characters in packet #${c.longestText.index + 1}<div class="text">“${esc(c.longestText.text)}”</div>`
        : '<span class="muted">none</span>',
    ) +
    row('Entropy (bits/byte)', 'entropy', (c) => `${c.totals.meanEntropy.toFixed(2)} mean per packet · ${c.totals.overallEntropy.toFixed(2)} over all bytes <span class="muted">(max 8)</span>`, (c) => `data-value="${c.totals.meanEntropy.toFixed(4)}"`) +
    row('Inner flows readable', 'inner', (c) => flows(c.innerFlows, 'none: no plaintext DATA frames')) +
    row('Underlay flows', 'underlay', (c) => flows(c.underlayFlows, 'none')) +
    row(`Search “${esc(a.find === b.find ? a.find : `${a.find}” / “${b.find}`)}”`, 'found', (c) =>
      c.found
        ? `<span class="badge leak">FOUND</span> in ${c.foundPackets} packet${c.foundPackets === 1 ? '' : 's'}, first #${(c.firstFoundIndex ?? 0) + 1}`
        : '<span class="badge safe">not found</span>',
      (c) => `data-found="${c.found}"`,
    ) +
    '</tbody></table>'
  );
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;color:#1d2329;background:#f4f5f7}
main{max-width:1400px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0}
h3{font-size:15px;margin:26px 0 4px}
p.lead{margin:4px 0 14px;color:#3b4550;max-width:1100px}
.muted{color:#6b7580}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:22px}
.pair>div{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 12px;min-width:0;overflow-x:auto}
.explain{color:#3b4550;margin:0 0 8px;max-width:1100px}
.card h2 .side{display:inline-block;background:#1d2329;color:#fff;border-radius:4px;padding:0 7px;margin-right:4px}
.card .file{color:#6b7580;font-size:12px;margin:2px 0 6px;word-break:break-all}
.verdict{font-weight:bold;padding:6px 10px;border-radius:4px}
.verdict.leak{background:#fde2e1;color:#9b1c1c;border:1px solid #f5b5b2}
.verdict.safe{background:#dff3e4;color:#1b5e2b;border:1px solid #aedbb9}
.warnbox{margin-top:6px;background:#fff4d6;border:1px solid #f0d68a;padding:4px 8px;border-radius:4px;font-size:12px}
table{border-collapse:collapse}
table.summary{width:100%;background:#fff;border:1px solid #dde1e6}
table.summary th,table.summary td{border-bottom:1px solid #e8ebee;padding:6px 10px;text-align:left;vertical-align:top}
table.summary thead th{background:#eef0f3}
table.summary tbody th{width:190px;color:#3b4550;font-weight:600}
table.summary td{width:40%}
.badge{display:inline-block;font-size:11px;font-weight:bold;padding:0 6px;border-radius:3px;vertical-align:1px}
.badge.leak{background:#d93025;color:#fff}
.badge.safe{background:#1e8e3e;color:#fff}
.badge.enc{background:#e6f4ea;color:#1b5e2b;border:1px solid #aedbb9}
.badge.warn{background:#fff4d6;color:#7a5b00;border:1px solid #f0d68a}
.meter{display:inline-block;width:90px;height:9px;background:#e8ebee;border-radius:2px;vertical-align:0;overflow:hidden}
.meter span{display:block;height:100%;background:#e0a800}
.text{font-family:"DejaVu Sans Mono",monospace;font-size:12px;color:#7a4d00;background:#fff8e1;padding:1px 4px;border-radius:3px;word-break:break-all}
.flow{font-family:"DejaVu Sans Mono",monospace;font-size:12px}
.kc{margin-right:12px;white-space:nowrap}
i.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;vertical-align:-1px}
.legend{font-size:12px;margin:6px 0 0}
.legend span{margin-right:14px;white-space:nowrap}
svg.chart{max-width:100%;height:auto;display:block}
svg .grid{stroke:#e8ebee}
svg .axis{stroke:#8c959f}
svg .tick{font-size:10px;fill:#6b7580}
svg .axis-label{font-size:11px;fill:#3b4550}
svg .empty{font-size:13px;fill:#6b7580}
svg .bar{cursor:pointer}
svg .bar:hover{opacity:.7}
svg .mean{stroke:#d93025;stroke-width:1.5;stroke-dasharray:6 4}
svg .mean-label{font-size:11px;fill:#d93025;font-weight:bold;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg .ceiling{stroke:#1d2329;stroke-width:2}
${KINDS.map((k) => `.k-${k}{fill:${KIND_COLOURS[k]};background:${KIND_COLOURS[k]}}`).join('\n')}
table.headers{width:100%;font-size:12px}
table.headers th{text-align:left;border-bottom:2px solid #dde1e6;padding:3px 5px;white-space:nowrap}
table.headers td{border-bottom:1px solid #eef0f3;padding:3px 5px;vertical-align:top}
table.headers td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.headers td.dir{text-align:center}
table.headers tr.flash{background:#fff3b0}
table.headers td.what{overflow-wrap:anywhere}
.badge{white-space:nowrap}
.bytemap .bm-row{margin:0 0 6px}
.bytemap .bm-label{font-size:11px;color:#3b4550;margin-bottom:1px}
.bytemap .bm-cells{display:grid;grid-template-columns:repeat(64,10px);grid-auto-rows:12px;width:max-content}
.bytemap .c{font:9px/12px "DejaVu Sans Mono",monospace;text-align:center;color:#5c3a00;overflow:hidden}
.c.g0{background:#f7f8f9}.c.g1{background:#e4e7ea}.c.g2{background:#d3d8dc}.c.g3{background:#c3c9cf}
.c.g4{background:#b3bac2}.c.g5{background:#a3abb4}.c.g6{background:#939ca6}.c.g7{background:#838d98}
.c.p{background:#fff1b8}
.c.r{background:#ffc93c;color:#2b1d00}
.c.w{color:#b08a2e}
.c.m{background:#d93025;color:#fff;font-weight:bold}
.bm-status{font:12px "DejaVu Sans Mono",monospace;min-height:18px;color:#3b4550;position:sticky;top:0;background:#fff;padding:2px 0}
.bm-key{font-size:12px;margin:4px 0 8px}
.bm-key .c{display:inline-block;width:14px;height:12px;vertical-align:-2px;margin:0 3px 0 10px;font:9px/12px monospace;text-align:center}
footer{margin-top:30px;color:#6b7580;font-size:12px}
#script-error{background:#fde2e1;color:#9b1c1c;padding:8px;display:none}
`;

// The byte map is drawn in the browser from base64 data: one element per byte would make
// the file large, and the script adds the hover readout. Kept in plain ES5-ish JavaScript.
const SCRIPT = `
(function () {
  function printable(b) { return (b >= 32 && b <= 126) || b === 9 || b === 10 || b === 13; }
  function hex(b) { return (b < 16 ? '0' : '') + b.toString(16); }
  function decode(b64) {
    var s = atob(b64), out = new Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  function drawMap(side) {
    var holder = document.getElementById('bytemap-' + side);
    var data = JSON.parse(document.getElementById('bytes-' + side).textContent);
    var status = document.getElementById('bm-status-' + side);
    var frag = document.createDocumentFragment();
    data.rows.forEach(function (row) {
      var bytes = decode(row.b);
      var div = document.createElement('div');
      div.className = 'bm-row';
      div.setAttribute('data-index', row.i);
      var label = document.createElement('div');
      label.className = 'bm-label';
      label.textContent = '#' + (row.i + 1) + ' · ' + row.len + ' bytes' + (row.len > bytes.length ? ' (first ' + bytes.length + ' shown)' : '');
      var sw = document.createElement('i');
      sw.className = 'sw k-' + row.k;
      label.insertBefore(sw, label.firstChild);
      var cells = document.createElement('div');
      cells.className = 'bm-cells';
      // Mark bytes inside a match of the search string, and runs of 4+ printable bytes.
      var inMatch = new Array(bytes.length);
      row.m.forEach(function (at) { for (var j = at; j < at + data.findLength && j < bytes.length; j++) inMatch[j] = true; });
      var runEnd = -1, runLen = 0, count = 0, html = [];
      for (var i = 0; i < bytes.length; i++) {
        var b = bytes[i], cls = 'c', ch = '';
        if (printable(b)) {
          count++;
          // First byte of a run: measure the run once.
          if (i > runEnd) {
            runEnd = i;
            while (runEnd + 1 < bytes.length && printable(bytes[runEnd + 1])) runEnd++;
            runLen = runEnd - i + 1;
          }
          cls += runLen >= 4 ? ' p r' : ' p';
          if (b === 9 || b === 10 || b === 13) { cls += ' w'; ch = b === 10 ? '¶' : '·'; }
          else ch = String.fromCharCode(b);
        } else {
          cls += ' g' + (b >> 5);
        }
        if (inMatch[i]) cls += ' m';
        html.push('<span class="' + cls + '">' + (ch === '<' ? '&lt;' : ch === '&' ? '&amp;' : ch) + '</span>');
      }
      cells.innerHTML = html.join('');
      div.setAttribute('data-printable', count);
      div.setAttribute('data-shown', bytes.length);
      div.appendChild(label);
      div.appendChild(cells);
      cells.addEventListener('mouseover', function (ev) {
        var t = ev.target;
        if (!t.classList || !t.classList.contains('c')) return;
        var off = Array.prototype.indexOf.call(cells.children, t);
        var b = bytes[off];
        status.textContent = 'packet #' + (row.i + 1) + ', byte ' + off + ': 0x' + hex(b) + ' = ' + b +
          (b >= 32 && b <= 126 ? " = '" + String.fromCharCode(b) + "'" : b === 10 ? ' = LF' : b === 13 ? ' = CR' : b === 9 ? ' = TAB' : '');
      });
      frag.appendChild(div);
    });
    holder.appendChild(frag);
    holder.setAttribute('data-rendered', 'true');
  }
  // Clicking a bar jumps to that packet's row in the header table.
  document.addEventListener('click', function (ev) {
    var t = ev.target;
    if (!t.classList || !t.classList.contains('bar')) return;
    var row = document.getElementById('pkt-' + t.getAttribute('data-side') + '-' + t.getAttribute('data-index'));
    if (!row) return;
    row.scrollIntoView({ block: 'center' });
    row.classList.add('flash');
    setTimeout(function () { row.classList.remove('flash'); }, 1500);
  });
  try {
    drawMap('a');
    drawMap('b');
    document.body.setAttribute('data-ready', 'true');
  } catch (e) {
    var box = document.getElementById('script-error');
    box.textContent = 'The page script failed: ' + e;
    box.style.display = 'block';
  }
})();
`;

/** The complete report page comparing capture A with capture B. */
export function renderReport(a: CaptureAnalysis, b: CaptureAnalysis, opts: ReportOptions = {}): string {
  const labelA = opts.labelA ?? 'capture A';
  const labelB = opts.labelB ?? 'capture B';
  const title = opts.title ?? `minivpn capture report: ${labelA} vs ${labelB}`;
  const n = opts.tablePackets ?? DEFAULT_MAP_PACKETS;
  const chartMax = opts.chartPackets ?? 2000;
  const when = (opts.generatedAt ?? new Date()).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

  const shown = (c: CaptureAnalysis) => c.packets.slice(0, chartMax);
  const slots = Math.max(shown(a).length, shown(b).length, 1);
  const maxLen = Math.max(1, ...shown(a).map((p) => p.length), ...shown(b).map((p) => p.length));
  const sizeMax = Math.ceil(maxLen / tickStep(maxLen)) * tickStep(maxLen);
  const cut = (c: CaptureAnalysis) =>
    c.packets.length > chartMax ? `<p class="muted">First ${chartMax} of ${fmtInt(c.packets.length)} packets drawn.</p>` : '';

  const pair = (f: (c: CaptureAnalysis, side: 'a' | 'b') => string) =>
    `<div class="pair"><div data-capture="a">${f(a, 'a')}</div><div data-capture="b">${f(b, 'b')}</div></div>`;

  const sizes = (c: CaptureAnalysis, side: 'a' | 'b') =>
    barChart({ side, what: 'sizes', packets: shown(c), slots, yMax: sizeMax, yLabel: 'UDP payload bytes', value: (p) => p.length, tip: packetTip }) + legend() + cut(c);

  const entropy = (c: CaptureAnalysis, side: 'a' | 'b') =>
    barChart({
      side,
      what: 'entropy',
      packets: shown(c),
      slots,
      yMax: 8,
      yLabel: 'entropy, bits/byte',
      value: (p) => p.entropy,
      tip: packetTip,
      lines: c.packets.length > 0 ? [{ y: c.totals.meanEntropy, label: `mean ${c.totals.meanEntropy.toFixed(2)}`, cls: 'mean' }] : [],
      ceiling: (p) => Math.log2(Math.min(p.length, 256)),
    }) +
    `<div class="legend"><span><b style="color:#d93025">- - -</b> mean per packet: <b data-testid="mean-entropy-${side}">${c.totals.meanEntropy.toFixed(2)}</b> bits/byte</span>` +
    '<span><b>▬</b> highest possible for the packet\'s length, log<sub>2</sub>(min(n, 256))</span></div>';

  const bytemap = (c: CaptureAnalysis, side: 'a' | 'b') =>
    `<div class="bm-status" id="bm-status-${side}">hover over a byte to read it</div>` +
    `<div class="bytemap" id="bytemap-${side}" data-testid="bytemap-${side}"></div>` +
    `<script type="application/json" id="bytes-${side}">${byteMapData(c, n)}</script>` +
    (c.packets.length === 0 ? '<p class="muted">no packets</p>' : '');

  const bmKey =
    '<div class="bm-key">' +
    '<span class="c r">G</span>part of a readable run (4+ printable characters)' +
    '<span class="c p">x</span>printable, alone' +
    '<span class="c p w">¶</span>line break / tab' +
    '<span class="c g0"></span><span class="c g3" style="margin:0"></span><span class="c g7" style="margin:0"></span> other bytes, darker = larger value' +
    `<span class="c p m">s</span>inside a match of the search string` +
    '</div>';

  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>${esc(title)}</h1>
<p class="lead">Both captures were taken on the VPN <em>underlay</em>: the UDP datagrams between client and server,
as anyone on the path (a Wi-Fi neighbour, the ISP) sees them. Each section shows A on the left and B on the right.
Hover over bars for details; click one to find the packet in the table.</p>
<div id="script-error" data-testid="script-error"></div>
${pair((c, side) => summaryCard(c, side, side === 'a' ? labelA : labelB, side === 'a' ? opts.fileA : opts.fileB))}
<h3>Summary</h3>
${summaryTable(a, b)}
<h3>Packet sizes</h3>
<p class="explain">One bar per UDP datagram, same scale on both sides. Encryption hides the content but not the sizes and timing:
a DTLS record adds a 13-byte header plus the cipher's nonce and tag to every packet, and the handshake adds packets of its own.</p>
${pair(sizes)}
<h3>Byte entropy per packet</h3>
<p class="explain">Shannon entropy of each payload in bits per byte: about 4–5 for text, close to 8 for ciphertext.
A packet of n bytes cannot exceed log<sub>2</sub>(n) (the black mark on each bar), so even encrypted short packets stay lower.</p>
${pair(entropy)}
<h3>Headers an observer can decode</h3>
<p class="explain">For plaintext tunnel frames the inner IP packet is in clear: addresses, ports, TCP flags and the start of the data.
For DTLS only the 13-byte record header is readable (content type, epoch, sequence number, length), plus the handshake before keys are agreed:
DTLS 1.2 sends the certificates in clear, so the names in them (server, and client identity) show up in the byte map below.</p>
${pair((c, side) => headerTable(c, side, n))}
<h3>Byte map</h3>
<p class="explain">Each cell is one payload byte, 64 per line, first ${n} packets. Readable text shows up as yellow bands;
ciphertext looks like noise, where about 38% of random bytes happen to be printable but rarely form runs.</p>
${bmKey}
${pair(bytemap)}
<footer>Generated by minivpn's capture report (src/lab/report.ts) on ${esc(when)}.
A: ${esc(opts.fileA ?? labelA)} · B: ${esc(opts.fileB ?? labelB)}.</footer>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
