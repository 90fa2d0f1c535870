// Analysis of one capture file, as plain data (no HTML): every UDP datagram classified
// (tunnel frame, DTLS, other), decoded (src/lab/report/decode.ts), and totalled.

import { closeReason, FrameType, frameType, frameTypeName, looksLikeDtls } from '../../wire/frame';
import { IpRepr, parseIp, parseTransport, PROTO_UDP, TransportRepr, UdpRepr } from '../../wire/ip';
import { decodeLink, isSupportedLinkType, linkTypeName, PcapError, PcapFile, PcapRecord, readPcap } from '../pcap';
import {
  byteCounts, decodeInner, describeDtlsRecord, describeInner, DtlsRecordInfo, entropyOfCounts, InnerPacketInfo,
  isPrintable, parseDtlsRecords, PROTO_NAMES, readable, shannonEntropy,
} from './decode';

/** How a UDP payload looks to an observer. */
export type PacketKind = 'tunnel-data' | 'tunnel-control' | 'dtls-handshake' | 'dtls-appdata' | 'other';

export const KIND_LABELS: Record<PacketKind, string> = {
  'tunnel-data': 'tunnel DATA (plaintext)',
  'tunnel-control': 'tunnel control (plaintext)',
  'dtls-handshake': 'DTLS handshake / alert',
  'dtls-appdata': 'DTLS application data',
  other: 'other',
};
export const KINDS = Object.keys(KIND_LABELS) as PacketKind[];

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

/** The options with their defaults, checked. */
function checkOptions(opts: AnalyzeOptions): { find: string; port?: number; mapPackets: number; mapBytes: number } {
  const find = opts.find ?? DEFAULT_FIND;
  if (typeof find !== 'string' || find.length === 0) throw new TypeError('analyzeCapture: find must be a non-empty string');
  const port = opts.port;
  if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65535)) {
    throw new TypeError(`analyzeCapture: port must be an integer from 1 to 65535, got ${port}`);
  }
  return { find, port, mapPackets: opts.mapPackets ?? DEFAULT_MAP_PACKETS, mapBytes: opts.mapBytes ?? DEFAULT_MAP_BYTES };
}

/**
 * The UDP datagram in one capture record, or why the record is not analysed (a key of
 * CaptureAnalysis.skipped); null for what cannot happen but TypeScript cannot know.
 */
function recordUdp(linkType: number, rec: PcapRecord, port: number | undefined): { ip: IpRepr; udp: UdpRepr } | string | null {
  const link = decodeLink(linkType, rec.data);
  if (!link.ok) return link.reason.startsWith('not IP') ? link.reason : 'bad link header';
  let ip: IpRepr;
  try {
    ip = parseIp(rec.data, link.offset);
  } catch {
    // A snaplen shorter than the packet leaves its IP header promising more than is there.
    return rec.data.length < rec.originalLength ? 'cut short by the snaplen' : 'malformed IP';
  }
  if (ip.protocol !== PROTO_UDP) return `not UDP (${PROTO_NAMES[ip.protocol] ?? `protocol ${ip.protocol}`})`;
  if (!ip.hasTransportHeader) return 'IP fragment';
  let udp: TransportRepr | null;
  try {
    udp = parseTransport(ip, rec.data);
  } catch {
    return ip.fragmented ? 'IP fragment' : 'malformed UDP';
  }
  if (!udp || udp.kind !== 'udp') return null; // cannot happen for protocol 17; keeps TypeScript sure
  if (port !== undefined && udp.srcPort !== port && udp.dstPort !== port) return 'other port';
  return { ip, udp };
}

/** One datagram's PacketInfo: counts, search matches, and what its payload decodes to. */
function packetInfo(index: number, recordNumber: number, time: number, ip: IpRepr, udp: UdpRepr, needle: Buffer): PacketInfo {
  const payload = udp.payload;
  const p: PacketInfo = {
    index,
    number: recordNumber,
    time,
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
  analyzePayload(payload, p);
  return p;
}

/** The first longest run of printable bytes in `payload` (what `strings` would print first). */
function longestRun(payload: Buffer): { offset: number; length: number; text: string } | undefined {
  let best: { offset: number; length: number } | undefined;
  for (let i = 0; i < payload.length; ) {
    if (!isPrintable(payload[i])) {
      i++;
      continue;
    }
    let j = i;
    while (j < payload.length && isPrintable(payload[j])) j++;
    if (!best || j - i > best.length) best = { offset: i, length: j - i };
    i = j;
  }
  if (!best) return undefined;
  const end = best.offset + best.length;
  return { ...best, text: readable(payload.toString('latin1', best.offset, Math.min(end, best.offset + 200)), 120) };
}

/** The totals over all analysed packets, and where the search string was found. */
function summarize(packets: PacketInfo[], allCounts: number[]): {
  totals: CaptureAnalysis['totals']; foundPackets: number; firstFoundIndex?: number;
} {
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
  const totals: CaptureAnalysis['totals'] = {
    packets: packets.length,
    bytes,
    printableBytes,
    printableFraction: bytes > 0 ? printableBytes / bytes : 0,
    meanEntropy: withPayload > 0 ? entropySum / withPayload : 0,
    overallEntropy: entropyOfCounts(allCounts, bytes),
    kinds,
    duration: packets.length > 1 ? packets[packets.length - 1].time - packets[0].time : 0,
  };
  return { totals, foundPackets, firstFoundIndex };
}

/** readPcap, and a PcapError for a link type decodeLink cannot read. */
function readSupportedPcap(buf: Buffer): PcapFile {
  const file = readPcap(buf);
  const { linkType } = file.header;
  if (!isSupportedLinkType(linkType)) {
    throw new PcapError(
      'unsupported_link_type',
      `unsupported link type ${linkType}: this report reads EN10MB (1), RAW (101), LINUX_SLL (113) and LINUX_SLL2 (276) captures`,
    );
  }
  return file;
}

/** Seconds from the file's first record to record `r`. */
function timeSinceFirst(file: PcapFile): (r: PcapRecord) => number {
  // From the integer fields: a double holding seconds since 1970 has lost the nanoseconds already.
  const unit = file.header.nanosecond ? 1e9 : 1e6;
  const first = file.records[0];
  return (r) => r.tsSec - first.tsSec + (r.tsFrac - first.tsFrac) / unit;
}

/**
 * Analyses one capture file: every UDP datagram (from or to `port`, if given) on an IPv4
 * or IPv6 underlay. Throws PcapError when the file itself is unusable; damaged packets
 * inside a good file are counted or described, never thrown.
 */
export function analyzeCapture(buf: Buffer, opts: AnalyzeOptions = {}): CaptureAnalysis {
  const { find, port, mapPackets, mapBytes } = checkOptions(opts);
  const file = readSupportedPcap(buf);
  const { linkType } = file.header;
  const needle = Buffer.from(find, 'utf8');
  const since = timeSinceFirst(file);

  const skipped = new Map<string, number>();
  const packets: PacketInfo[] = [];
  const allCounts = new Array<number>(256).fill(0);
  const innerFlows = new Map<string, number>();
  const underlayFlows = new Map<string, number>();
  let longest: CaptureAnalysis['longestText'];

  for (const rec of file.records) {
    const r = recordUdp(linkType, rec, port);
    if (r === null) continue;
    if (typeof r === 'string') {
      bump(skipped, r);
      continue;
    }
    const { ip, udp } = r;
    const p = packetInfo(packets.length, rec.number, since(rec), ip, udp, needle);
    const run = longestRun(udp.payload);
    if (run && (!longest || run.length > longest.length)) longest = { index: p.index, ...run };
    byteCounts(udp.payload, allCounts);
    if (p.inner) bump(innerFlows, innerFlowKey(p.inner));
    const ep = (a: string, pt: number) => (ip.version === 6 ? `[${a}]:${pt}` : `${a}:${pt}`);
    bump(underlayFlows, `UDP ${ep(p.src, p.srcPort)} -> ${ep(p.dst, p.dstPort)}`);
    if (p.index < mapPackets) p.head = Buffer.from(udp.payload.subarray(0, mapBytes));
    packets.push(p);
  }

  const { totals, foundPackets, firstFoundIndex } = summarize(packets, allCounts);
  const result: CaptureAnalysis = {
    linkType,
    linkTypeName: linkTypeName(linkType),
    byteOrder: file.header.byteOrder,
    nanosecond: file.header.nanosecond,
    records: file.records.length,
    skipped: Object.fromEntries(skipped),
    packets,
    totals,
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
