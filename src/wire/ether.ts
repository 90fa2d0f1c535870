// Ethernet II frames, as a TAP device reads and writes them (no preamble, no FCS), in the same
// two layers as ip.ts:
//
// 1. A *checked view*: functions that read fields at an offset in a batch buffer, allocating
//    nothing. `checkEther` must pass before the accessors are trusted with a frame.
// 2. A *parsed representation* (`parseEther`): an object with MACs as text, for labs, tests
//    and reports.
//
//    0      6      12     14 (18 with an 802.1Q tag)
//    +------+------+------+----------------------------
//    | dst  | src  | type | payload (an IP packet, ARP, ...)
//    +------+------+------+----------------------------
//
// A MAC is handled as a number (48 bits fit a double exactly): it compares and keys a Map
// without a string.

export const ETHER_HEADER_LEN = 14;
/** Ethernet's minimum frame without the FCS; the kernel's TAP may hand us shorter ones (no padding). */
export const ETHER_MIN_FRAME = 60;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;

export const BROADCAST_MAC = 0xffff_ffff_ffff;

/** Why a buffer is not a usable Ethernet frame. */
export type EtherError =
  | 'truncated' // shorter than the 14-byte header
  | 'too_big' // longer than the tunnel carries (MTU + header)
  | 'bad_source'; // a group (multicast/broadcast) or all-zero source MAC: no station sends from one

// ---------------------------------------------------------------------------------------
// Checked view (hot path: no allocation)

/**
 * Whether buf[off, off+len) is a frame to carry: a whole header, at most `maxFrame` bytes (the
 * tunnel MTU plus the header), from a unicast, non-zero source. Returns null when it is.
 */
export function checkEther(buf: Buffer, off: number, len: number, maxFrame: number): EtherError | null {
  if (len > buf.length - off) len = buf.length - off;
  if (len < ETHER_HEADER_LEN) return 'truncated';
  if (len > maxFrame) return 'too_big';
  if (buf[off + 6] & 1) return 'bad_source';
  if (etherSrc(buf, off) === 0) return 'bad_source';
  return null;
}

/** The 48-bit MAC at buf[at] as a number. */
export function macAt(buf: Buffer, at: number): number {
  return buf.readUInt16BE(at) * 0x1_0000_0000 + buf.readUInt32BE(at + 2);
}

/** Destination MAC as a number. */
export function etherDst(buf: Buffer, off = 0): number {
  return macAt(buf, off);
}

/** Source MAC as a number. */
export function etherSrc(buf: Buffer, off = 0): number {
  return macAt(buf, off + 6);
}

/** The EtherType field (the outer one: 0x8100 for a VLAN-tagged frame). */
export function etherType(buf: Buffer, off = 0): number {
  return buf.readUInt16BE(off + 12);
}

/**
 * True for a frame to a group address (the I/G bit, the lowest bit of the first byte): the
 * broadcast address and every multicast (ARP requests, IPv6 neighbour discovery, mDNS, DHCP
 * discover). A switch floods these to every port.
 */
export function isGroupDst(buf: Buffer, off = 0): boolean {
  return (buf[off] & 1) === 1;
}

/** Writes the header: dst and src MACs (numbers) and the EtherType. */
export function writeEtherHeader(buf: Buffer, off: number, dst: number, src: number, type: number): void {
  writeMac(buf, off, dst);
  writeMac(buf, off + 6, src);
  buf.writeUInt16BE(type, off + 12);
}

export function writeMac(buf: Buffer, at: number, mac: number): void {
  buf.writeUInt16BE(Math.floor(mac / 0x1_0000_0000), at);
  buf.writeUInt32BE(mac % 0x1_0000_0000, at + 2);
}

// ---------------------------------------------------------------------------------------
// MACs as text (slow path)

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** "02:00:5e:10:00:01" -> number; throws for anything else. */
export function parseMac(s: string): number {
  if (!MAC_RE.test(s)) throw new Error(`not a MAC address like 02:00:5e:10:00:01: ${JSON.stringify(s)}`);
  return parseInt(s.replace(/:/g, ''), 16);
}

/** number -> "02:00:5e:10:00:01". */
export function formatMac(mac: number): string {
  const hex = mac.toString(16).padStart(12, '0');
  return hex.match(/../g)!.join(':');
}

// ---------------------------------------------------------------------------------------
// Parsed representation (slow path)

export interface EtherRepr {
  dst: string;
  src: string;
  /** The EtherType after an 802.1Q tag, if there is one. */
  etherType: number;
  /** The VLAN id of an 802.1Q tag (absent without one). */
  vlan?: number;
  /** Where the payload starts, from the start of the frame. */
  payloadOffset: number;
  payloadLength: number;
}

/** The frame at buf[off, off+len) as an object; throws for one shorter than its header. */
export function parseEther(buf: Buffer, off = 0, len = buf.length - off): EtherRepr {
  if (len < ETHER_HEADER_LEN || off + len > buf.length) throw new Error(`truncated Ethernet frame: ${len} bytes, the header alone is ${ETHER_HEADER_LEN}`);
  let type = etherType(buf, off);
  let at = ETHER_HEADER_LEN;
  let vlan: number | undefined;
  if (type === ETHERTYPE_VLAN) {
    if (len < ETHER_HEADER_LEN + 4) throw new Error('truncated 802.1Q tag');
    vlan = buf.readUInt16BE(off + 14) & 0x0fff;
    type = buf.readUInt16BE(off + 16);
    at += 4;
  }
  return {
    dst: formatMac(etherDst(buf, off)),
    src: formatMac(etherSrc(buf, off)),
    etherType: type,
    ...(vlan !== undefined ? { vlan } : {}),
    payloadOffset: at,
    payloadLength: len - at,
  };
}

/** A name for an EtherType: 'IPv4', 'ARP', 'IPv6', or its hex value. */
export function etherTypeName(type: number): string {
  switch (type) {
    case ETHERTYPE_IPV4: return 'IPv4';
    case ETHERTYPE_ARP: return 'ARP';
    case ETHERTYPE_IPV6: return 'IPv6';
    case ETHERTYPE_VLAN: return '802.1Q';
    default: return `0x${type.toString(16).padStart(4, '0')}`;
  }
}
