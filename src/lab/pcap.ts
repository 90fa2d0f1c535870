// A small reader (and writer) for classic libpcap capture files, the format `tcpdump -w`
// writes. Enough for lab tools; for anything bigger use Wireshark.
//
// File layout (all integers in the writer's byte order, which the magic number reveals):
//
//   global header, 24 bytes:
//     magic(4)  a1b2c3d4 = microsecond timestamps, a1b23c4d = nanosecond timestamps
//     version_major(2) = 2, version_minor(2) = 4, thiszone(4), sigfigs(4),
//     snaplen(4)  longest packet the capture kept, linktype(4)  what each packet starts with
//   then per packet a 16-byte record header followed by the captured bytes:
//     ts_sec(4), ts_frac(4) (micro- or nanoseconds), incl_len(4) bytes stored, orig_len(4) on the wire
//
// Link types we unwrap down to the IP packet (numbers from tcpdump.org/linktypes.html):
//   EN10MB (1)        Ethernet: tcpdump -i lo / -i eth0
//   RAW (101)         the IP packet itself: tcpdump -i tun0
//   LINUX_SLL (113)   "cooked" header, tcpdump -i any (older tcpdump)
//   LINUX_SLL2 (276)  "cooked" header v2, tcpdump -i any (tcpdump >= 4.99)
//
// Reading never throws anything but PcapError, whose `code` and message say what is wrong.

import { internetChecksum, ipv4ToInt, pseudoHeaderSum, PROTO_TCP, PROTO_UDP, writeIpv4HeaderChecksum } from '../wire/ip';

export const PCAP_MAGIC_US = 0xa1b2c3d4;
export const PCAP_MAGIC_NS = 0xa1b23c4d;
/** pcapng's first block type: a different (newer) format that this reader does not handle. */
const PCAPNG_MAGIC = 0x0a0d0d0a;

export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;

export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_LINUX_SLL2 = 276;

const LINKTYPE_NAMES: Record<number, string> = {
  [LINKTYPE_ETHERNET]: 'EN10MB',
  [LINKTYPE_RAW]: 'RAW',
  [LINKTYPE_LINUX_SLL]: 'LINUX_SLL',
  [LINKTYPE_LINUX_SLL2]: 'LINUX_SLL2',
};

/** 'EN10MB', 'RAW', ... or 'linktype N' for ones we do not know. */
export function linkTypeName(linkType: number): string {
  return LINKTYPE_NAMES[linkType] ?? `linktype ${linkType}`;
}

/** A record claiming more than this is corrupt, not a big packet (tcpdump's maximum snaplen is 256 KiB). */
export const MAX_RECORD_LEN = 16 * 1024 * 1024;

export type PcapErrorCode =
  | 'not_a_buffer'
  | 'too_short' // shorter than the 24-byte global header
  | 'pcapng' // a pcapng file, not classic pcap
  | 'bad_magic' // not a pcap file at all
  | 'bad_version' // version is not 2.x
  | 'bad_record' // a record header that cannot be right
  | 'unsupported_link_type' // (from the report) packets start with a header we cannot unwrap
  | 'truncated'; // (only with strict) the file ends in the middle of a record

export class PcapError extends Error {
  constructor(readonly code: PcapErrorCode, message: string) {
    super(message);
    this.name = 'PcapError';
  }
}

export interface PcapHeader {
  /** Byte order the file was written in. */
  byteOrder: 'little' | 'big';
  /** True when timestamps count nanoseconds (magic a1b23c4d), false for microseconds. */
  nanosecond: boolean;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  /** Link-layer type of every packet (low 16 bits of the field; the high bits carry FCS info). */
  linkType: number;
}

export interface PcapRecord {
  /** 1-based position in the file, the "No." column of Wireshark and tcpdump -# output. */
  number: number;
  /** Timestamp as seconds since 1970 (a float: sub-microsecond digits may be rounded). */
  time: number;
  tsSec: number;
  /** Fraction of the second in micro- or nanoseconds (see PcapHeader.nanosecond). */
  tsFrac: number;
  /** Bytes the packet had on the wire; more than data.length when the snaplen cut it. */
  originalLength: number;
  /** The captured bytes (a view into the file buffer, not a copy). */
  data: Buffer;
}

export interface PcapFile {
  header: PcapHeader;
  records: PcapRecord[];
  /** Set when the file ends in the middle of a record (e.g. tcpdump was killed): what was lost. */
  truncated?: string;
}

export interface ReadPcapOptions {
  /** Throw on a file that ends mid-record instead of returning the complete records. */
  strict?: boolean;
}

const hex32 = (n: number) => '0x' + (n >>> 0).toString(16).padStart(8, '0');

/** Parses a whole classic pcap file. Throws PcapError naming the problem on a bad file. */
export function readPcap(buf: Buffer, opts: ReadPcapOptions = {}): PcapFile {
  if (!Buffer.isBuffer(buf)) throw new PcapError('not_a_buffer', 'readPcap: expected a Buffer with the file contents');
  const header = readHeader(buf);
  const { records, truncated } = readRecords(buf, header);
  if (truncated && opts.strict) throw new PcapError('truncated', `truncated pcap file: ${truncated}`);
  return truncated ? { header, records, truncated } : { header, records };
}

/** 16- and 32-bit readers in the file's byte order. */
function readers(buf: Buffer, byteOrder: 'little' | 'big') {
  const le = byteOrder === 'little';
  return {
    u16: (off: number) => (le ? buf.readUInt16LE(off) : buf.readUInt16BE(off)),
    u32: (off: number) => (le ? buf.readUInt32LE(off) : buf.readUInt32BE(off)),
  };
}

/** The 24-byte global header: byte order and timestamp unit from the magic number, then the fields. */
function readHeader(buf: Buffer): PcapHeader {
  if (buf.length >= 4 && buf.readUInt32LE(0) === PCAPNG_MAGIC) {
    throw new PcapError(
      'pcapng',
      'this is a pcapng file, not classic pcap: capture with tcpdump -w, or convert with "editcap -F pcap in.pcapng out.pcap"',
    );
  }
  if (buf.length < PCAP_GLOBAL_HEADER_LEN) {
    throw new PcapError('too_short', `not a pcap file: ${buf.length} bytes is shorter than the 24-byte global header`);
  }
  // The writer stored the magic in its own byte order; reading it little-endian tells us which that was.
  const magicLE = buf.readUInt32LE(0);
  const magicBE = buf.readUInt32BE(0);
  let byteOrder: 'little' | 'big';
  let nanosecond: boolean;
  if (magicLE === PCAP_MAGIC_US || magicLE === PCAP_MAGIC_NS) {
    byteOrder = 'little';
    nanosecond = magicLE === PCAP_MAGIC_NS;
  } else if (magicBE === PCAP_MAGIC_US || magicBE === PCAP_MAGIC_NS) {
    byteOrder = 'big';
    nanosecond = magicBE === PCAP_MAGIC_NS;
  } else {
    throw new PcapError(
      'bad_magic',
      `not a pcap file: magic number ${hex32(magicBE)} is neither a1b2c3d4 (microseconds) nor a1b23c4d (nanoseconds) in either byte order`,
    );
  }
  const { u16, u32 } = readers(buf, byteOrder);
  const header: PcapHeader = {
    byteOrder,
    nanosecond,
    versionMajor: u16(4),
    versionMinor: u16(6),
    snaplen: u32(16),
    linkType: u32(20) & 0xffff,
  };
  if (header.versionMajor !== 2) {
    throw new PcapError('bad_version', `unsupported pcap version ${header.versionMajor}.${header.versionMinor} (want 2.4)`);
  }
  return header;
}

/** The records after the global header, up to the end of the file or the first cut-off one. */
function readRecords(buf: Buffer, header: PcapHeader): { records: PcapRecord[]; truncated?: string } {
  const { u32 } = readers(buf, header.byteOrder);
  const records: PcapRecord[] = [];
  const unit = header.nanosecond ? 1e9 : 1e6;
  let off = PCAP_GLOBAL_HEADER_LEN;
  while (off < buf.length) {
    const number = records.length + 1;
    if (off + PCAP_RECORD_HEADER_LEN > buf.length) {
      return { records, truncated: `file ends inside the header of record ${number} (${buf.length - off} of 16 bytes)` };
    }
    const tsSec = u32(off);
    const tsFrac = u32(off + 4);
    const inclLen = u32(off + 8);
    const origLen = u32(off + 12);
    if (inclLen > MAX_RECORD_LEN) {
      throw new PcapError(
        'bad_record',
        `record ${number} at byte ${off}: captured length ${inclLen} is impossible (corrupt file?)`,
      );
    }
    if (tsFrac >= unit) {
      throw new PcapError(
        'bad_record',
        `record ${number} at byte ${off}: timestamp fraction ${tsFrac} is not below ${unit} (corrupt file?)`,
      );
    }
    const start = off + PCAP_RECORD_HEADER_LEN;
    if (start + inclLen > buf.length) {
      return { records, truncated: `file ends inside record ${number} (${buf.length - start} of ${inclLen} bytes)` };
    }
    records.push({
      number,
      time: tsSec + tsFrac / unit,
      tsSec,
      tsFrac,
      // Some writers leave orig_len 0; the packet was at least as long as what was kept.
      originalLength: Math.max(origLen, inclLen),
      data: buf.subarray(start, start + inclLen),
    });
    off = start + inclLen;
  }
  return { records };
}

// ---------------------------------------------------------------------------------------
// Link layer: where the IP packet starts in a captured frame

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_QINQ = 0x88a8;

export type LinkResult =
  | { ok: true; /** 0x0800 IPv4, 0x86dd IPv6 */ etherType: number; /** offset of the IP header */ offset: number }
  | { ok: false; reason: string };

const hex16 = (n: number) => '0x' + n.toString(16).padStart(4, '0');

/** Finds the IP packet inside one captured frame of the given link type. */
export function decodeLink(linkType: number, data: Buffer): LinkResult {
  let etherType: number;
  let offset: number;
  switch (linkType) {
    case LINKTYPE_RAW: {
      if (data.length < 1) return { ok: false, reason: 'empty packet' };
      const v = data[0] >> 4;
      if (v !== 4 && v !== 6) return { ok: false, reason: `raw packet with IP version ${v}` };
      return { ok: true, etherType: v === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6, offset: 0 };
    }
    case LINKTYPE_ETHERNET: {
      // dst MAC(6) src MAC(6) ethertype(2), possibly 802.1Q VLAN tags (4 bytes each) before the ethertype.
      offset = 12;
      if (data.length < offset + 2) return { ok: false, reason: 'Ethernet header truncated' };
      etherType = data.readUInt16BE(offset);
      while ((etherType === ETHERTYPE_VLAN || etherType === ETHERTYPE_QINQ) && data.length >= offset + 6) {
        offset += 4;
        etherType = data.readUInt16BE(offset);
      }
      offset += 2;
      break;
    }
    case LINKTYPE_LINUX_SLL:
      // packet type(2) ARPHRD type(2) address length(2) address(8) protocol(2)
      if (data.length < 16) return { ok: false, reason: 'LINUX_SLL header truncated' };
      etherType = data.readUInt16BE(14);
      offset = 16;
      break;
    case LINKTYPE_LINUX_SLL2:
      // protocol(2) reserved(2) interface index(4) ARPHRD type(2) packet type(1) address length(1) address(8)
      if (data.length < 20) return { ok: false, reason: 'LINUX_SLL2 header truncated' };
      etherType = data.readUInt16BE(0);
      offset = 20;
      break;
    default:
      return { ok: false, reason: `unsupported link type ${linkType}` };
  }
  if (etherType !== ETHERTYPE_IPV4 && etherType !== ETHERTYPE_IPV6) {
    const name = etherType === 0x0806 ? ' (ARP)' : '';
    return { ok: false, reason: `not IP: ethertype ${hex16(etherType)}${name}` };
  }
  return { ok: true, etherType, offset };
}

/** True for the link types `decodeLink` understands. */
export function isSupportedLinkType(linkType: number): boolean {
  return linkType in LINKTYPE_NAMES;
}

// ---------------------------------------------------------------------------------------
// Writing: tests and the lab's reference captures build small pcap files from packets.

export interface PcapPacket {
  /** The frame as the link type has it (see `frameForLink` to wrap an IP packet). */
  data: Buffer;
  /**
   * Seconds since 1970; default: 1 ms after the previous packet. A double carries only
   * about 0.2 us of precision at today's dates: for exact nanoseconds give tsSec/tsFrac.
   */
  time?: number;
  /** Exact timestamp, overriding `time`: whole seconds and the fraction in the file's unit (us or ns). */
  tsSec?: number;
  tsFrac?: number;
  /** Length on the wire, when `data` was cut short; default data.length. */
  originalLength?: number;
}

export interface WritePcapOptions {
  linkType?: number; // default RAW
  nanosecond?: boolean; // default false (microsecond timestamps)
  bigEndian?: boolean; // default false
  snaplen?: number; // default 262144, tcpdump's default
}

/** A classic pcap file holding `packets`, in the format `tcpdump -w` writes. */
export function writePcap(packets: PcapPacket[], opts: WritePcapOptions = {}): Buffer {
  const le = !opts.bigEndian;
  const unit = opts.nanosecond ? 1e9 : 1e6;
  const total = PCAP_GLOBAL_HEADER_LEN + packets.reduce((n, p) => n + PCAP_RECORD_HEADER_LEN + p.data.length, 0);
  const out = Buffer.alloc(total);
  const w16 = (v: number, off: number) => (le ? out.writeUInt16LE(v, off) : out.writeUInt16BE(v, off));
  const w32 = (v: number, off: number) => (le ? out.writeUInt32LE(v >>> 0, off) : out.writeUInt32BE(v >>> 0, off));
  w32(opts.nanosecond ? PCAP_MAGIC_NS : PCAP_MAGIC_US, 0);
  w16(2, 4);
  w16(4, 6);
  w32(0, 8); // thiszone: timestamps are UTC
  w32(0, 12); // sigfigs: always 0 in practice
  w32(opts.snaplen ?? 262144, 16);
  w32(opts.linkType ?? LINKTYPE_RAW, 20);
  let off = PCAP_GLOBAL_HEADER_LEN;
  let time = 1_700_000_000; // a fixed, recognisable start when the caller gives no times
  for (const p of packets) {
    let sec: number;
    let frac: number;
    if (p.tsSec !== undefined) {
      sec = p.tsSec;
      frac = p.tsFrac ?? 0;
      if (!Number.isInteger(frac) || frac < 0 || frac >= unit) throw new RangeError(`writePcap: tsFrac must be an integer from 0 to ${unit - 1}`);
      time = sec + frac / unit;
    } else {
      time = p.time ?? time + 0.001;
      sec = Math.floor(time);
      frac = Math.round((time - sec) * unit);
      if (frac >= unit) {
        sec += 1;
        frac -= unit;
      }
    }
    w32(sec, off);
    w32(frac, off + 4);
    w32(p.data.length, off + 8);
    w32(p.originalLength ?? p.data.length, off + 12);
    p.data.copy(out, off + PCAP_RECORD_HEADER_LEN);
    off += PCAP_RECORD_HEADER_LEN + p.data.length;
  }
  return out;
}

/** Wraps an IP packet in the link-layer header of `linkType` (fixed, made-up MAC addresses). */
export function frameForLink(linkType: number, ip: Buffer): Buffer {
  const etherType = ip[0] >> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4;
  let head: Buffer;
  switch (linkType) {
    case LINKTYPE_RAW:
      return Buffer.from(ip);
    case LINKTYPE_ETHERNET:
      head = Buffer.alloc(14);
      Buffer.from('020000000002020000000001', 'hex').copy(head, 0); // locally administered MACs
      head.writeUInt16BE(etherType, 12);
      break;
    case LINKTYPE_LINUX_SLL:
      head = Buffer.alloc(16);
      head.writeUInt16BE(4, 0); // packet type 4: sent by us
      head.writeUInt16BE(1, 2); // ARPHRD_ETHER
      head.writeUInt16BE(6, 4);
      Buffer.from('020000000001', 'hex').copy(head, 6);
      head.writeUInt16BE(etherType, 14);
      break;
    case LINKTYPE_LINUX_SLL2:
      head = Buffer.alloc(20);
      head.writeUInt16BE(etherType, 0);
      head.writeUInt32BE(1, 4); // interface index
      head.writeUInt16BE(1, 8); // ARPHRD_ETHER
      head[10] = 4; // sent by us
      head[11] = 6;
      Buffer.from('020000000001', 'hex').copy(head, 12);
      break;
    default:
      throw new Error(`frameForLink: unsupported link type ${linkType}`);
  }
  return Buffer.concat([head, ip]);
}

// ---------------------------------------------------------------------------------------
// Building IPv4 packets with correct checksums, for synthetic captures.

export interface Ipv4Options {
  src: string;
  dst: string;
  ttl?: number; // default 64
  id?: number; // default 0
}

function ipv4(o: Ipv4Options, protocol: number, transport: Buffer): Buffer {
  const pkt = Buffer.alloc(20 + transport.length);
  pkt[0] = 0x45;
  pkt.writeUInt16BE(pkt.length, 2);
  pkt.writeUInt16BE((o.id ?? 0) & 0xffff, 4);
  pkt.writeUInt16BE(0x4000, 6); // don't fragment
  pkt[8] = o.ttl ?? 64;
  pkt[9] = protocol;
  pkt.writeUInt32BE(ipv4ToInt(o.src), 12);
  pkt.writeUInt32BE(ipv4ToInt(o.dst), 16);
  writeIpv4HeaderChecksum(pkt, 0);
  transport.copy(pkt, 20);
  return pkt;
}

export interface UdpOptions extends Ipv4Options {
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

/** An IPv4/UDP packet: what the tunnel's underlay carries. */
export function buildIpv4Udp(o: UdpOptions): Buffer {
  const udp = Buffer.alloc(8 + o.payload.length);
  udp.writeUInt16BE(o.srcPort, 0);
  udp.writeUInt16BE(o.dstPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  o.payload.copy(udp, 8);
  const pkt = ipv4(o, PROTO_UDP, udp);
  let sum = internetChecksum(pkt, 20, udp.length, pseudoHeaderSum(pkt, 0, PROTO_UDP, udp.length));
  if (sum === 0) sum = 0xffff; // 0 means "no checksum" in UDP
  pkt.writeUInt16BE(sum, 20 + 6);
  return pkt;
}

const TCP_FLAG_BITS: Record<string, number> = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32, ECE: 64, CWR: 128 };

export interface TcpOptions extends Ipv4Options {
  srcPort: number;
  dstPort: number;
  seq?: number;
  ack?: number;
  /** Flag names, e.g. ['SYN', 'ACK']. */
  flags?: string[];
  window?: number;
  payload?: Buffer;
}

/** An IPv4/TCP segment (no options): what a tunnel DATA frame might carry. */
export function buildIpv4Tcp(o: TcpOptions): Buffer {
  const payload = o.payload ?? Buffer.alloc(0);
  const tcp = Buffer.alloc(20 + payload.length);
  tcp.writeUInt16BE(o.srcPort, 0);
  tcp.writeUInt16BE(o.dstPort, 2);
  tcp.writeUInt32BE((o.seq ?? 0) >>> 0, 4);
  tcp.writeUInt32BE((o.ack ?? 0) >>> 0, 8);
  tcp[12] = 5 << 4; // data offset: 5 words
  let flags = 0;
  for (const f of o.flags ?? []) {
    const bit = TCP_FLAG_BITS[f];
    if (bit === undefined) throw new Error(`buildIpv4Tcp: unknown TCP flag ${JSON.stringify(f)}`);
    flags |= bit;
  }
  tcp[13] = flags;
  tcp.writeUInt16BE(o.window ?? 65535, 14);
  payload.copy(tcp, 20);
  const pkt = ipv4(o, PROTO_TCP, tcp);
  pkt.writeUInt16BE(internetChecksum(pkt, 20, tcp.length, pseudoHeaderSum(pkt, 0, PROTO_TCP, tcp.length)), 20 + 16);
  return pkt;
}
