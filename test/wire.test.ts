import t from 'tap';
import {
  checkIp,
  formatCidr,
  inCidr,
  intToIpv4,
  internetChecksum,
  ipPacketLength,
  ipVersion,
  ipv4Dst,
  ipv4HeaderChecksum,
  ipv4HeaderChecksumValid,
  ipv4Protocol,
  ipv4Src,
  ipv4ToInt,
  ipv6DstKey,
  ipv6SrcKey,
  IpParseError,
  isIpv4,
  parseCidr,
  parseIp,
  parseTransport,
  pseudoHeaderSum,
  writeIpv4HeaderChecksum,
} from '../src/wire/ip';
import { buildEchoReply, buildEchoRequest, isEchoRequest } from '../src/wire/icmp';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// A real ping captured with tcpdump on loopback (ping -c1 -s 24 127.0.0.1), and the
// kernel's own reply to it.
const PING_REQUEST = hex(`
  4500 0034 4f55 4000 4001 ed71 7f00 0001 7f00 0001
  0800 7ae6 20a5 0001 a544 026b 0000 0000 6073 0800 0000 0000 1011 1213 1415 1617`);
const KERNEL_REPLY = hex(`
  4500 0034 4f56 0000 4001 2d71 7f00 0001 7f00 0001
  0000 82e6 20a5 0001 a544 026b 0000 0000 6073 0800 0000 0000 1011 1213 1415 1617`);

// The textbook example header (Wikipedia "IPv4 header checksum"): checksum 0xb861.
const TEXTBOOK_HEADER = hex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');

/** Reference checksum, written independently of the module: sum 16-bit words, fold, invert. */
function refChecksum(parts: Buffer[]): number {
  const b = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i] << 8) + (i + 1 < b.length ? b[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}

function ipv4Packet(o: { src: string; dst: string; proto: number; payload: Buffer; options?: Buffer; frag?: number }): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const hl = 20 + opts.length;
  const b = Buffer.alloc(hl + o.payload.length);
  b[0] = 0x40 | (hl / 4);
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(0x1234, 4);
  b.writeUInt16BE(o.frag ?? 0x4000, 6);
  b[8] = 64;
  b[9] = o.proto;
  b.writeUInt32BE(ipv4ToInt(o.src), 12);
  b.writeUInt32BE(ipv4ToInt(o.dst), 16);
  opts.copy(b, 20);
  o.payload.copy(b, hl);
  writeIpv4HeaderChecksum(b, 0);
  return b;
}

function pseudoV4(src: string, dst: string, proto: number, len: number): Buffer {
  const p = Buffer.alloc(12);
  p.writeUInt32BE(ipv4ToInt(src), 0);
  p.writeUInt32BE(ipv4ToInt(dst), 4);
  p[9] = proto;
  p.writeUInt16BE(len, 10);
  return p;
}

function udpPacket(src: string, dst: string, sport: number, dport: number, data: Buffer): Buffer {
  const udp = Buffer.alloc(8 + data.length);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(udp.length, 4);
  data.copy(udp, 8);
  udp.writeUInt16BE(refChecksum([pseudoV4(src, dst, 17, udp.length), udp]), 6);
  return ipv4Packet({ src, dst, proto: 17, payload: udp });
}

function tcpSyn(src: string, dst: string): Buffer {
  // 20-byte header + 4 bytes of options (MSS 1460) + 3 bytes of data.
  const tcp = Buffer.alloc(27);
  tcp.writeUInt16BE(40000, 0);
  tcp.writeUInt16BE(22, 2);
  tcp.writeUInt32BE(0xdeadbeef, 4);
  tcp.writeUInt32BE(0, 8);
  tcp[12] = 6 << 4; // data offset 6 words
  tcp[13] = 0x02 | 0x10; // SYN ACK
  tcp.writeUInt16BE(64240, 14);
  tcp.set([2, 4, 0x05, 0xb4], 20);
  tcp.set([0x61, 0x62, 0x63], 24);
  tcp.writeUInt16BE(refChecksum([pseudoV4(src, dst, 6, tcp.length), tcp]), 16);
  return ipv4Packet({ src, dst, proto: 6, payload: tcp });
}

function ipv6Packet(nextHeader: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(40 + payload.length);
  b[0] = 0x60;
  b[1] = 0x0a; // flow label 0xa1234
  b.writeUInt16BE(0x1234, 2);
  b.writeUInt16BE(payload.length, 4);
  b[6] = nextHeader;
  b[7] = 255;
  hex('20010db8000000000000000000000001').copy(b, 8); // 2001:db8::1
  hex('fe800000000000000000000000000002').copy(b, 24); // fe80::2
  payload.copy(b, 40);
  return b;
}

t.test('address helpers', async (t) => {
  t.equal(ipv4ToInt('10.8.0.2'), 0x0a080002);
  t.equal(ipv4ToInt('255.255.255.255'), 0xffffffff, 'stays unsigned');
  t.equal(ipv4ToInt('0.0.0.0'), 0);
  t.equal(intToIpv4(0x0a080002), '10.8.0.2');
  t.equal(intToIpv4(0xc0000201), '192.0.2.1');
  for (const bad of ['10.8.0', '10.8.0.256', '10.8.0.2.1', ' 10.8.0.2', '010.8.0.2', 'a.b.c.d', '', '1e1.0.0.1']) {
    t.throws(() => ipv4ToInt(bad), IpParseError, `rejects ${JSON.stringify(bad)}`);
    t.notOk(isIpv4(bad));
  }
  t.notOk(isIpv4(42));
  t.ok(isIpv4('203.0.113.9'));

  t.same(parseCidr('10.8.0.0/24'), { network: 0x0a080000, prefix: 24, mask: 0xffffff00 });
  t.same(parseCidr('10.8.0.77/24'), { network: 0x0a080000, prefix: 24, mask: 0xffffff00 }, 'host bits cleared');
  t.same(parseCidr('0.0.0.0/0'), { network: 0, prefix: 0, mask: 0 });
  t.same(parseCidr('192.0.2.1'), { network: 0xc0000201, prefix: 32, mask: 0xffffffff }, 'bare address is /32');
  t.equal(formatCidr(parseCidr('198.51.100.7/30')), '198.51.100.4/30');
  for (const bad of ['10.8.0.0/33', '10.8.0.0/', '10.8.0.0/x', '10.8.0/24', '10.8.0.0/-1']) {
    t.throws(() => parseCidr(bad), IpParseError, `rejects ${bad}`);
  }
  const net = parseCidr('10.8.0.0/24');
  t.ok(inCidr(ipv4ToInt('10.8.0.2'), net));
  t.ok(inCidr(ipv4ToInt('10.8.0.255'), net));
  t.notOk(inCidr(ipv4ToInt('10.8.1.2'), net));
  t.ok(inCidr(0xffffffff, parseCidr('0.0.0.0/0')), 'default route matches everything');
  t.ok(inCidr(ipv4ToInt('255.255.255.254'), parseCidr('255.255.255.0/24')), 'high addresses (sign bit) work');
});

t.test('checksums', async (t) => {
  t.equal(ipv4HeaderChecksum(TEXTBOOK_HEADER), 0xb861, 'textbook header checksum');
  t.ok(ipv4HeaderChecksumValid(TEXTBOOK_HEADER));
  t.equal(internetChecksum(TEXTBOOK_HEADER, 0, 20), 0, 'a header with a correct checksum sums to 0');
  const broken = Buffer.from(TEXTBOOK_HEADER);
  broken[8] = 63; // TTL changed, checksum not updated
  t.notOk(ipv4HeaderChecksumValid(broken));
  writeIpv4HeaderChecksum(broken);
  t.ok(ipv4HeaderChecksumValid(broken));
  t.equal(broken.readUInt16BE(10), refChecksum([broken.subarray(0, 10), broken.subarray(12, 20)]));

  // Odd lengths, offsets and the initial partial sum agree with the reference.
  const data = Buffer.from('The quick brown fox jumps over the lazy dog!');
  t.equal(internetChecksum(data, 0, data.length), refChecksum([data]));
  t.equal(internetChecksum(data, 3, 11), refChecksum([data.subarray(3, 14)]));
  t.equal(internetChecksum(data, 0, 0), 0xffff, 'empty data');
  t.equal(internetChecksum(Buffer.alloc(4), 0, 4, 0x1234), ~0x1234 & 0xffff, 'initial sum is added');
  // Large input: carries beyond 32 bits still fold correctly.
  const big = Buffer.alloc(200000, 0xff);
  t.equal(internetChecksum(big, 0, big.length), refChecksum([big]));
});

t.test('checkIp: well-formed packets', async (t) => {
  t.equal(checkIp(PING_REQUEST, 0, PING_REQUEST.length), null);
  t.equal(ipVersion(PING_REQUEST), 4);
  t.equal(ipPacketLength(PING_REQUEST), 52);
  t.equal(ipv4Protocol(PING_REQUEST), 1);
  t.equal(ipv4Src(PING_REQUEST), 0x7f000001);
  t.equal(ipv4Dst(PING_REQUEST), 0x7f000001);

  // The packet as a slice of a larger batch buffer, at an odd offset, with trailing bytes.
  const batch = Buffer.alloc(300, 0xee);
  const pkt = udpPacket('10.8.0.2', '203.0.113.200', 5353, 53, Buffer.from('hello'));
  pkt.copy(batch, 101);
  t.equal(checkIp(batch, 101, pkt.length), null);
  t.equal(checkIp(batch, 101, pkt.length + 50), null, 'trailing padding allowed');
  t.equal(ipv4Src(batch, 101), ipv4ToInt('10.8.0.2'));
  t.equal(ipv4Dst(batch, 101), ipv4ToInt('203.0.113.200'));
  t.equal(ipv4Dst(batch, 101), 0xcb0071c8, 'unsigned even with the top bit set');
  t.ok(ipv4Dst(batch, 101) > 0);

  const withOptions = ipv4Packet({ src: '10.0.0.1', dst: '10.0.0.2', proto: 17, payload: Buffer.alloc(8), options: hex('01010100') });
  t.equal(checkIp(withOptions, 0, withOptions.length), null, 'IHL 6 with options');

  const v6 = ipv6Packet(17, Buffer.alloc(8));
  t.equal(checkIp(v6, 0, v6.length), null);
  t.equal(ipVersion(v6), 6);
  t.equal(ipPacketLength(v6), 48);
  t.equal(ipv6SrcKey(v6), '2001:db8::1');
  t.equal(ipv6DstKey(v6), 'fe80::2');
});

t.test('checkIp: malformed packets', async (t) => {
  const p = PING_REQUEST;
  t.equal(checkIp(p, 0, 0), 'truncated', 'empty');
  t.equal(checkIp(p, 0, 19), 'truncated', 'shorter than an IPv4 header');
  t.equal(checkIp(p, 0, 51), 'length_exceeds_buffer', 'total length (52) > data (51)');
  t.equal(checkIp(p.subarray(0, 30), 0, 52), 'length_exceeds_buffer', 'claimed len beyond the Buffer is clamped');
  t.equal(checkIp(p, 60, 10), 'truncated', 'offset past the end');

  const badIhl = Buffer.from(p);
  badIhl[0] = 0x44;
  t.equal(checkIp(badIhl, 0, badIhl.length), 'bad_ihl');
  const hugeIhl = Buffer.from(p.subarray(0, 24));
  hugeIhl[0] = 0x4f; // 60-byte header in a 24-byte buffer
  t.equal(checkIp(hugeIhl, 0, hugeIhl.length), 'truncated_header');
  const shortTotal = Buffer.from(p);
  shortTotal.writeUInt16BE(12, 2);
  t.equal(checkIp(shortTotal, 0, shortTotal.length), 'bad_total_length');
  const bigTotal = Buffer.from(p);
  bigTotal.writeUInt16BE(1500, 2);
  t.equal(checkIp(bigTotal, 0, bigTotal.length), 'length_exceeds_buffer');
  for (const first of [0x00, 0x55, 0xf0, 0x25, 0x16]) {
    const b = Buffer.from(p);
    b[0] = first;
    t.equal(checkIp(b, 0, b.length), 'bad_version', `first byte 0x${first.toString(16)}`);
  }

  const v6 = ipv6Packet(17, Buffer.alloc(8));
  t.equal(checkIp(v6, 0, 39), 'truncated', 'IPv6 shorter than 40 bytes');
  t.equal(checkIp(v6, 0, 47), 'length_exceeds_buffer', 'IPv6 payload length beyond data');
  const frameByte = Buffer.from(p);
  frameByte[0] = 0x41; // a tunnel DATA header where an IP header should be: version 4, IHL 1
  t.equal(checkIp(frameByte, 0, frameByte.length), 'bad_ihl');

  // Garbage never throws out of checkIp, and parseIp rejects exactly what checkIp rejects.
  const problems: string[] = [];
  let rejected = 0;
  for (let i = 0; i < 5000; i++) {
    const g = Buffer.alloc(i % 70);
    for (let j = 0; j < g.length; j++) g[j] = (i * 131 + j * 17 + ((i * j) >> 3)) & 0xff;
    const r = checkIp(g, 0, g.length);
    if (r) rejected++;
    try {
      parseIp(g);
      if (r) problems.push(`parseIp accepted what checkIp rejected (${r}): ${g.toString('hex')}`);
    } catch (e) {
      if (!(e instanceof IpParseError)) problems.push(`unexpected ${e}: ${g.toString('hex')}`);
      else if (!r && e.code !== 'truncated_transport') problems.push(`parseIp rejected a checked packet: ${g.toString('hex')}`);
    }
  }
  t.same(problems, []);
  t.ok(rejected > 4000, 'most garbage is rejected');
});

t.test('parseIp and parseTransport: ICMP (real ping)', async (t) => {
  const r = parseIp(PING_REQUEST);
  t.match(r, {
    version: 4,
    src: '127.0.0.1',
    dst: '127.0.0.1',
    protocol: 1,
    ttl: 64,
    totalLength: 52,
    headerLength: 20,
    payloadOffset: 20,
    payloadLength: 32,
    id: 0x4f55,
    dontFragment: true,
    moreFragments: false,
    fragmentOffset: 0,
    headerChecksum: 0xed71,
    headerChecksumValid: true,
  });
  const icmp = parseTransport(r, PING_REQUEST);
  t.match(icmp, { kind: 'icmp', type: 8, code: 0, id: 0x20a5, seq: 1, checksumValid: true, payloadOffset: 28, payloadLength: 24 });

  const corrupt = Buffer.from(PING_REQUEST);
  corrupt[10] ^= 1;
  corrupt[30] ^= 1;
  const rc = parseIp(corrupt);
  t.equal(rc.version === 4 && rc.headerChecksumValid, false, 'bad header checksum reported');
  t.equal(parseTransport(rc, corrupt)?.checksumValid, false, 'bad ICMP checksum reported');
});

t.test('parseTransport: UDP and TCP', async (t) => {
  const udp = udpPacket('10.8.0.2', '10.8.0.1', 5353, 53, Buffer.from('query'));
  const ur = parseIp(udp);
  const u = parseTransport(ur, udp);
  t.match(u, { kind: 'udp', srcPort: 5353, dstPort: 53, length: 13, checksumValid: true, payloadOffset: 28, payloadLength: 5 });
  t.equal(u?.kind === 'udp' && u.payload.toString(), 'query');

  // At an offset inside a bigger buffer, offsets are absolute.
  const batch = Buffer.concat([Buffer.alloc(7), udp, Buffer.alloc(5)]);
  const br = parseIp(batch, 7, udp.length);
  t.equal(br.offset, 7);
  const bu = parseTransport(br, batch);
  t.equal(bu?.kind === 'udp' && bu.payload.toString(), 'query');
  t.equal(bu?.checksumValid, true);

  const noSum = Buffer.from(udp);
  noSum.writeUInt16BE(0, 26);
  t.equal(parseTransport(parseIp(noSum), noSum)?.checksumValid, null, 'UDP checksum 0 means none');

  const syn = tcpSyn('198.51.100.10', '10.8.0.2');
  const tr = parseTransport(parseIp(syn), syn);
  t.match(tr, {
    kind: 'tcp',
    srcPort: 40000,
    dstPort: 22,
    seq: 0xdeadbeef,
    flags: 0x12,
    flagNames: ['SYN', 'ACK'],
    window: 64240,
    headerLength: 24,
    checksumValid: true,
    payloadOffset: 44,
    payloadLength: 3,
  });
  const badTcp = Buffer.from(syn);
  badTcp[46] ^= 0xff;
  t.equal(parseTransport(parseIp(badTcp), badTcp)?.checksumValid, false);

  const truncTcp = ipv4Packet({ src: '10.0.0.1', dst: '10.0.0.2', proto: 6, payload: Buffer.alloc(10) });
  t.throws(() => parseTransport(parseIp(truncTcp), truncTcp), { code: 'truncated_transport' });
  const badOff = Buffer.from(syn);
  badOff[32] = 0xf0; // data offset 60 > 27 bytes of TCP
  t.throws(() => parseTransport(parseIp(badOff), badOff), { code: 'truncated_transport' });
  const truncUdp = ipv4Packet({ src: '10.0.0.1', dst: '10.0.0.2', proto: 17, payload: Buffer.alloc(5) });
  t.throws(() => parseTransport(parseIp(truncUdp), truncUdp), { code: 'truncated_transport' });

  const gre = ipv4Packet({ src: '10.0.0.1', dst: '10.0.0.2', proto: 47, payload: Buffer.alloc(8) });
  t.equal(parseTransport(parseIp(gre), gre), null, 'unknown protocol -> null');

  // A non-first fragment has no transport header; a first fragment cannot be checksummed.
  const later = ipv4Packet({ src: '10.0.0.1', dst: '10.0.0.2', proto: 17, payload: Buffer.alloc(16), frag: 0x0003 });
  const lr = parseIp(later);
  t.match(lr, { fragmented: true, hasTransportHeader: false, fragmentOffset: 24 });
  t.equal(parseTransport(lr, later), null);
  const first = Buffer.from(udp);
  first.writeUInt16BE(0x2000, 6);
  writeIpv4HeaderChecksum(first);
  t.equal(parseTransport(parseIp(first), first)?.checksumValid, null);
});

t.test('parseIp: IPv6 with an extension header and ICMPv6', async (t) => {
  // Hop-by-hop header (8 bytes) then ICMPv6 echo request id 7 seq 9.
  const icmp6 = hex('8000 0000 0007 0009 6869');
  const hbh = hex('3a00 0000 0000 0000'); // next header 58, length 0 (8 bytes)
  const pkt = ipv6Packet(0, Buffer.concat([hbh, icmp6]));
  const sum = internetChecksum(pkt, 48, icmp6.length, pseudoHeaderSum(pkt, 0, 58, icmp6.length));
  pkt.writeUInt16BE(sum, 50);
  const r = parseIp(pkt);
  t.match(r, { version: 6, src: '2001:db8::1', dst: 'fe80::2', protocol: 58, ttl: 255, totalLength: 58, headerLength: 48, payloadOffset: 48, payloadLength: 10, flowLabel: 0xa1234 });
  t.match(parseTransport(r, pkt), { kind: 'icmpv6', type: 128, id: 7, seq: 9, checksumValid: true });

  // Cross-check the v6 pseudo-header against a hand-built one.
  const pseudo = Buffer.concat([pkt.subarray(8, 40), hex('0000000a 0000003a')]);
  t.equal(sum, refChecksum([pseudo, Buffer.concat([icmp6.subarray(0, 2), Buffer.alloc(2), icmp6.subarray(4)])]));

  const truncExt = ipv6Packet(0, hex('3a01 0000'));
  t.throws(() => parseIp(truncExt), { code: 'truncated_transport' });
});

t.test('ICMP echo: real ping request -> reply', async (t) => {
  t.ok(isEchoRequest(PING_REQUEST));
  t.notOk(isEchoRequest(KERNEL_REPLY), 'a reply is not a request');
  t.notOk(isEchoRequest(PING_REQUEST.subarray(0, 30)), 'truncated');
  const badSum = Buffer.from(PING_REQUEST);
  badSum[30] ^= 1;
  t.notOk(isEchoRequest(badSum), 'bad ICMP checksum');
  t.notOk(isEchoRequest(udpPacket('10.0.0.1', '10.0.0.2', 1, 2, Buffer.alloc(4))), 'UDP');
  t.notOk(isEchoRequest(ipv6Packet(58, hex('8000 0000 0001 0001'))), 'ICMPv6');

  const before = Buffer.from(PING_REQUEST);
  const reply = buildEchoReply(PING_REQUEST);
  t.same(PING_REQUEST, before, 'request left untouched');
  // The ICMP part must match what the Linux kernel sent, byte for byte.
  t.same(reply.subarray(20), KERNEL_REPLY.subarray(20), 'ICMP message identical to the kernel reply');
  t.equal(reply.length, KERNEL_REPLY.length);
  // Checksums verified by recomputation with the reference implementation.
  t.equal(reply.readUInt16BE(10), refChecksum([reply.subarray(0, 10), reply.subarray(12, 20)]), 'IP header checksum');
  t.equal(refChecksum([reply.subarray(20)]), 0, 'ICMP checksum');
  const r = parseIp(reply);
  t.match(r, { src: '127.0.0.1', dst: '127.0.0.1', ttl: 64, protocol: 1, headerChecksumValid: true });
  t.match(parseTransport(r, reply), { type: 0, code: 0, id: 0x20a5, seq: 1, checksumValid: true });

  t.throws(() => buildEchoReply(KERNEL_REPLY), /not a valid IPv4 ICMP echo request/);
});

t.test('ICMP echo: build request, answer it, addresses swapped', async (t) => {
  const payload = Buffer.from('minivpn ping payload');
  const req = buildEchoRequest({ src: '10.8.0.2', dst: '10.8.0.1', id: 0xbeef, seq: 7, payload });
  t.equal(checkIp(req, 0, req.length), null);
  t.ok(isEchoRequest(req));
  t.equal(refChecksum([req.subarray(0, 20)]), 0, 'IP header checksum');
  t.equal(refChecksum([req.subarray(20)]), 0, 'ICMP checksum');
  t.match(parseTransport(parseIp(req), req), { kind: 'icmp', type: 8, id: 0xbeef, seq: 7, payloadLength: payload.length });

  // Odd payload length exercises the padding byte of the checksum.
  const odd = buildEchoRequest({ src: ipv4ToInt('10.8.0.3'), dst: '10.8.0.1', id: 1, seq: 65535, payload: Buffer.from('abc'), ttl: 3 });
  t.ok(isEchoRequest(odd));
  t.equal(odd[8], 3, 'ttl');

  const reply = buildEchoReply(odd);
  t.equal(ipv4Src(reply), ipv4ToInt('10.8.0.1'));
  t.equal(ipv4Dst(reply), ipv4ToInt('10.8.0.3'));
  t.equal(refChecksum([reply.subarray(0, 20)]), 0);
  t.equal(refChecksum([reply.subarray(20)]), 0);
  t.same(reply.subarray(28), Buffer.from('abc'));

  // A request with IP options is answered without them.
  const icmp = Buffer.from(req.subarray(20));
  const withOpts = ipv4Packet({ src: '10.8.0.2', dst: '10.8.0.1', proto: 1, payload: icmp, options: hex('01010100') });
  t.ok(isEchoRequest(withOpts));
  const r2 = buildEchoReply(withOpts);
  t.equal(r2[0], 0x45);
  t.equal(r2.length, 20 + icmp.length);
  t.equal(refChecksum([r2.subarray(20)]), 0);
});
