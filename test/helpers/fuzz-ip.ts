// Well-formed IPv4 and IPv6 packets with TCP, UDP, ICMP or ICMPv6 (or anything) inside,
// built here byte by byte (not with src/wire): the fuzz targets check that src/wire/ip.ts
// accepts and parses them to the fields they were built from, and mutate them to reach the
// parsers' every rejection.
import fc from 'fast-check';

export interface Built {
  bytes: Buffer;
  /** The packet's own length (bytes may have link-layer padding after it). */
  length: number;
  version: 4 | 6;
  protocol: number;
  ttl: number;
  headerLength: number;
  fragmented: boolean;
  firstFragment: boolean;
  transport: { kind: 'tcp' | 'udp' | 'icmp' | 'icmpv6'; srcPort?: number; dstPort?: number; type?: number; payloadLength: number } | null;
}

/** RFC 1071 checksum over the concatenation of `parts`. */
function checksum(parts: Buffer[]): number {
  const b = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) + (i + 1 < b.length ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((u) => Buffer.from(u));
const u16 = fc.integer({ min: 0, max: 0xffff });

interface TransportSpec { kind: 'tcp' | 'udp' | 'icmp' | 'raw'; a: number; b: number; extra: number; payload: Buffer; zeroUdpSum: boolean; rawProto: number }

const transportSpec: fc.Arbitrary<TransportSpec> = fc.record({
  kind: fc.constantFrom('tcp', 'udp', 'icmp', 'raw'),
  a: u16,
  b: u16,
  extra: fc.integer({ min: 0, max: 10 }),
  payload: bytes(64),
  zeroUdpSum: fc.boolean(),
  rawProto: fc.integer({ min: 0, max: 255 }).filter((p) => ![1, 6, 17, 58, 0, 43, 44, 60].includes(p)),
});

/** The transport bytes with its checksum filled in; `pseudo` is the pseudo-header (without length/protocol). */
function transport(s: TransportSpec, v6: boolean, pseudo: Buffer): { proto: number; body: Buffer; t: Built['transport'] } {
  const pseudoFor = (proto: number, len: number) => {
    const tail = Buffer.alloc(v6 ? 8 : 4);
    if (v6) { tail.writeUInt32BE(len, 0); tail[7] = proto; } else { tail[1] = proto; tail.writeUInt16BE(len, 2); }
    return Buffer.concat([pseudo, tail]);
  };
  if (s.kind === 'tcp') {
    const hl = 20 + 4 * (s.extra % 11); // data offset 5..15 words
    const body = Buffer.concat([Buffer.alloc(hl), s.payload]);
    body.writeUInt16BE(s.a, 0);
    body.writeUInt16BE(s.b, 2);
    body.writeUInt32BE((s.a * 65537) >>> 0, 4);
    body[12] = (hl / 4) << 4;
    body[13] = s.extra * 23 & 0xff;
    body.writeUInt16BE(checksum([pseudoFor(6, body.length), body]), 16);
    return { proto: 6, body, t: { kind: 'tcp', srcPort: s.a, dstPort: s.b, payloadLength: s.payload.length } };
  }
  if (s.kind === 'udp') {
    const body = Buffer.concat([Buffer.alloc(8), s.payload]);
    body.writeUInt16BE(s.a, 0);
    body.writeUInt16BE(s.b, 2);
    body.writeUInt16BE(body.length, 4);
    if (!s.zeroUdpSum || v6) body.writeUInt16BE(checksum([pseudoFor(17, body.length), body]) || 0xffff, 6);
    return { proto: 17, body, t: { kind: 'udp', srcPort: s.a, dstPort: s.b, payloadLength: s.payload.length } };
  }
  if (s.kind === 'icmp') {
    const body = Buffer.concat([Buffer.alloc(8), s.payload]);
    body[0] = s.a & 0xff;
    body[1] = s.a >> 8;
    body.writeUInt16BE(s.b, 4);
    body.writeUInt16BE(s.extra, 6);
    const proto = v6 ? 58 : 1;
    body.writeUInt16BE(checksum(v6 ? [pseudoFor(58, body.length), body] : [body]), 2);
    return { proto, body, t: { kind: v6 ? 'icmpv6' : 'icmp', type: s.a & 0xff, payloadLength: s.payload.length } };
  }
  return { proto: s.rawProto, body: s.payload, t: null };
}

export const ipv4Packet: fc.Arbitrary<Built> = fc
  .record({
    optionWords: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 10 })),
    options: bytes(40),
    frag: fc.oneof(fc.constantFrom(0, 0x4000, 0x2000), u16.map((f) => f & 0xbfff)), // DF; MF at offset 0: a first fragment
    ttl: fc.integer({ min: 0, max: 255 }),
    src: fc.integer({ min: 0, max: 0xffffffff }),
    dst: fc.integer({ min: 0, max: 0xffffffff }),
    tr: transportSpec,
    pad: bytes(8),
  })
  .map((r) => {
    const hl = 20 + 4 * r.optionWords;
    const head = Buffer.alloc(hl);
    r.options.copy(head, 20, 0, hl - 20);
    head.writeUInt32BE(r.src, 12);
    head.writeUInt32BE(r.dst, 16);
    const { proto, body, t } = transport(r.tr, false, head.subarray(12, 20));
    head[0] = 0x40 | (hl / 4);
    head.writeUInt16BE(hl + body.length, 2);
    head.writeUInt16BE(r.frag, 6);
    head[8] = r.ttl;
    head[9] = proto;
    head.writeUInt16BE(checksum([head]), 10);
    const offset = (r.frag & 0x1fff) * 8;
    return {
      bytes: Buffer.concat([head, body, r.pad]), length: hl + body.length, version: 4 as const, protocol: proto, ttl: r.ttl,
      headerLength: hl, fragmented: offset !== 0 || (r.frag & 0x2000) !== 0, firstFragment: offset === 0, transport: offset === 0 ? t : null,
    };
  });

/** IPv6 extension headers: hop-by-hop (0), routing (43), destination options (60), fragment (44). */
const extension = fc.record({ type: fc.constantFrom(0, 43, 60, 44), units: fc.integer({ min: 0, max: 3 }), fragOffset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0x1fff })) });

export const ipv6Packet: fc.Arbitrary<Built> = fc
  .record({
    exts: fc.array(extension, { maxLength: 3 }),
    hop: fc.integer({ min: 0, max: 255 }),
    flow: fc.integer({ min: 0, max: 0xfffff }),
    addrs: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((u) => Buffer.from(u)),
    tr: transportSpec,
    pad: bytes(8),
  })
  .map((r) => {
    const head = Buffer.alloc(40);
    r.addrs.copy(head, 8);
    const { proto, body, t } = transport(r.tr, true, head.subarray(8, 40));
    // Extension headers, last first: each names the header after it.
    let next = proto;
    let chain = Buffer.alloc(0);
    let fragmented = false, first = true;
    for (let i = r.exts.length - 1; i >= 0; i--) {
      const e = r.exts[i];
      const len = e.type === 44 ? 8 : (e.units + 1) * 8;
      const x = Buffer.alloc(len);
      x[0] = next;
      if (e.type === 44) {
        x.writeUInt16BE(e.fragOffset << 3, 2);
        fragmented = true;
        if (e.fragOffset !== 0) first = false;
      } else {
        x[1] = e.units;
      }
      chain = Buffer.concat([x, chain]);
      next = e.type;
    }
    head[0] = 0x60; // version 6, traffic class 0
    head[1] = r.flow >> 16;
    head.writeUInt16BE(r.flow & 0xffff, 2);
    head.writeUInt16BE(chain.length + body.length, 4);
    head[6] = next;
    head[7] = r.hop;
    return {
      bytes: Buffer.concat([head, chain, body, r.pad]), length: 40 + chain.length + body.length, version: 6 as const, protocol: proto, ttl: r.hop,
      headerLength: 40 + chain.length, fragmented, firstFragment: first, transport: first ? t : null,
    };
  });

export const ipPacket = fc.oneof(ipv4Packet, ipv6Packet);
