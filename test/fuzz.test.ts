// Fuzz targets (property tests with fast-check) for everything that reads bytes from the
// network: the datagram classifier and frame parser (src/wire/frame.ts), the control-message
// parser (src/wire/control.ts), the IP packet validator and parsers (src/wire/ip.ts,
// icmp.ts), and the session core's receive path (src/session/core.ts). Each target runs
// the seed corpus (test/fuzz/*.hex) first, then random and mutated inputs for
// MINIVPN_FUZZ_SECONDS (default 7) seconds. See test/fuzz/README.md.
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import t, { Test } from 'tap';
import { PacketBatch } from '../src/batch';
import { Counters, DROP_REASONS } from '../src/device/counters';
import { PlaintextChannel } from '../src/session/channel';
import { SessionCore, Timing } from '../src/session/core';
import { ConfigMsg, ControlMsg, decodeControl, encodeControl, encodeControlFrame, MAX_CONTROL_BODY } from '../src/wire/control';
import {
  appRecordEpoch, closeReason, decodeFrame, DTLS_RECORD_HEADER_LEN, encodeClose, encodeFrame, frameErrorName, frameType,
  FrameType, FrameTypeValue, hasShortRecord, looksLikeDtls, looksLikeFrame, recordSeq,
} from '../src/wire/frame';
import { buildEchoReply, buildEchoRequest, isEchoRequest } from '../src/wire/icmp';
import {
  checkIp, IpParseError, ipPacketLength, ipv4Dst, ipv4HeaderChecksum, ipv4HeaderChecksumValid, ipv4HeaderLength, ipv4Protocol,
  ipv4Src, ipv6DstKey, ipv6SrcKey, ipVersion, parseIp, parseTransport,
} from '../src/wire/ip';
import { bytes, corpus, FUZZ_SECONDS, fuzzBytes, Mutation, mutated, mutation, runFuzz, seed, Tally } from './helpers/fuzz';
import { dtlsPairs } from './helpers/fuzz-dtls';
import { almostMsg, blameable, checkInvalid, checkValid, deeplyNested, nearby, validConfig, validMsg } from './helpers/fuzz-control';
import { ipPacket } from './helpers/fuzz-ip';

// The session targets' clock and settings (as in test/session-core.test.ts).
const T0 = 1_000_000;
const SERVER_TIMING: Timing = { keepaliveMs: 1000, deadMs: 5000, upWithinMs: 30_000 };
const CLIENT_TIMING: Timing = { keepaliveMs: 0, deadMs: 10_000, upWithinMs: 10_000 };
const CONFIG: ConfigMsg = {
  type: 'config', v: 1, address: '10.8.0.2', prefix: 24, gateway: '10.8.0.1', mtu: 1400, routes: [], redirectGateway: false, dns: [],
  keepaliveSec: 2, timeoutSec: 7,
};

// Ten targets of FUZZ_SECONDS each, and the time to start: this file's own time limit
// (tap's default, 30 s, is for ordinary test files).
t.setTimeout((10 * FUZZ_SECONDS + 60) * 1000);

// ---- inputs: a window buf[off, off+len) over some content --------------------------------

interface Win { buf: Buffer; off: number; len: number; /** XOR for the bytes outside the window */ x: number }

/** The content at an offset inside a bigger buffer (length a little off), or anywhere in it. */
function windows(content: fc.Arbitrary<Buffer>): fc.Arbitrary<Win> {
  const x = fc.integer({ min: 1, max: 255 });
  return fc.oneof(
    fc.tuple(bytes(8), content, bytes(8), fc.integer({ min: -2, max: 2 }), x).map(([pre, c, post, d, x]) => ({
      buf: Buffer.concat([pre, c, post]), off: pre.length, len: Math.max(0, c.length + d), x,
    })),
    fc.tuple(content, fc.nat(), fc.nat(), x).map(([b, o, l, x]) => ({ buf: b, off: o % (b.length + 4), len: l % (b.length + 9), x })),
  );
}

/** The corpus, each entry as a window of its own: the examples every wire target runs first. */
const corpusWindows: [Win][] = corpus.map((s) => [{ buf: s.bytes, off: 0, len: s.bytes.length, x: 0xff }]);

/** A copy of buf with every byte outside the window changed: what a function of the window alone must not notice. */
function outside(w: Win): Buffer {
  const c = Buffer.from(w.buf);
  const end = Math.min(c.length, w.off + w.len);
  for (let i = 0; i < c.length; i++) if (i < w.off || i >= end) c[i] ^= w.x;
  return c;
}

/** Bytes of the window that lie inside the buffer. */
const avail = (w: Win) => Math.max(0, Math.min(w.len, w.buf.length - w.off));

// ---- 1. the datagram classifier ------------------------------------------------------------

t.test('fuzz: datagram classifier (frameType, looksLikeFrame, looksLikeDtls, appRecordEpoch, recordSeq)', async (t) => {
  const tally = new Tally();
  const frameTypes: number[] = Object.values(FrameType);
  const prop = fc.property(windows(fuzzBytes()), (w) => {
    const { buf, off, len } = w;
    const ft = frameType(buf, off, len);
    if (ft > 0) {
      assert.ok(avail(w) >= 1 && frameTypes.includes(ft) && ft === buf[off], 'a frame type is the byte at off, one of FrameType');
    } else {
      assert.ok([-1, -2, -3].includes(ft), `frameType error code ${ft}`);
      assert.equal(ft === -1, avail(w) < 1, 'empty exactly when the window holds no byte');
    }
    assert.equal(looksLikeFrame(buf, off, len), ft > 0);

    const dtls = looksLikeDtls(buf, off, len);
    const spec = avail(w) >= DTLS_RECORD_HEADER_LEN && buf[off] >= 20 && buf[off] <= 25 && buf[off + 1] === 0xfe && (buf[off + 2] === 0xfd || buf[off + 2] === 0xff);
    assert.equal(dtls, spec, 'looksLikeDtls: a whole record header, content type 20..25, version 0xfefd or 0xfeff');
    assert.ok(!(dtls && ft > 0), 'never both a frame and a DTLS record');

    const epoch = appRecordEpoch(buf, off, len);
    if (epoch >= 0) {
      assert.ok(Number.isInteger(epoch) && epoch <= 0xffff, 'epoch is 16 bits');
      assert.ok(dtls && buf[off] === 23 && buf[off + 2] === 0xfd, 'an application-data record of DTLS 1.2');
      const length = buf.readUInt16BE(off + 11);
      assert.ok(off + len <= buf.length && length > 0 && DTLS_RECORD_HEADER_LEN + length <= len, 'the record fits the window and the window the buffer');
      const seq = recordSeq(buf, off);
      assert.ok(Number.isInteger(seq) && seq >= 0 && seq < 2 ** 48, 'the sequence number is 48 bits');
      tally.hit('app-record');
    } else {
      assert.equal(epoch, -1);
    }

    const short = hasShortRecord(buf, off, len, 24);
    if (short) assert.ok(avail(w) >= DTLS_RECORD_HEADER_LEN, 'a short record has a whole header');

    const o = outside(w);
    assert.equal(hasShortRecord(o, off, len, 24), short, 'hasShortRecord reads only the window');
    assert.equal(frameType(o, off, len), ft, 'frameType reads only the window');
    assert.equal(looksLikeDtls(o, off, len), dtls, 'looksLikeDtls reads only the window');
    assert.equal(appRecordEpoch(o, off, len), epoch, 'appRecordEpoch reads only the window');
    tally.hit(ft > 0 ? 'frame' : dtls ? 'dtls' : frameErrorName(ft));
  });
  const run = runFuzz(t, 'classifier', prop, corpusWindows);
  if (!run.failed) tally.expect(t, 'classifier', ['frame', 'dtls', 'app-record', 'empty', 'bad_version', 'bad_type']);
});

// ---- 2. the frame parser -------------------------------------------------------------------

t.test('fuzz: frame parser (decodeFrame, encodeFrame, closeReason, encodeClose)', async (t) => {
  const tally = new Tally();
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const input = fc.record({
    datagram: fuzzBytes(),
    type: fc.constantFrom(...(Object.values(FrameType) as FrameTypeValue[])),
    body: bytes(300),
    reason: fc.oneof(fc.string({ unit: 'binary', maxLength: 260 }), fc.string({ unit: 'binary', maxLength: 260, size: 'max' }), fc.string({ unit: 'binary-ascii', maxLength: 260, size: 'max' })),
  });
  const prop = fc.property(input, ({ datagram, type, body, reason }) => {
    const d = decodeFrame(datagram);
    if (d.ok) {
      assert.ok(d.type === datagram[0] && d.body.equals(datagram.subarray(1)), 'type byte and the rest');
      assert.equal(d.body.buffer, datagram.buffer, 'the body is a view, not a copy');
      tally.hit('frame');
    } else {
      assert.equal(d.error, frameErrorName(frameType(datagram)));
      tally.hit(d.error);
    }

    const r = decodeFrame(encodeFrame(type, body));
    assert.ok(r.ok && r.type === type && r.body.equals(body), 'encodeFrame -> decodeFrame round trip');

    const said = closeReason(d.ok ? d.body : datagram);
    assert.ok(!/[\x00-\x1f\x7f]/.test(said) && said.length <= 200, 'closeReason: no control characters, at most 200 characters');

    const close = decodeFrame(encodeClose(reason));
    assert.ok(close.ok && close.type === FrameType.CLOSE);
    const full = Buffer.from(reason, 'utf8');
    assert.ok(close.body.length <= 200 && full.subarray(0, close.body.length).equals(close.body), 'encodeClose: a prefix of the reason, at most 200 bytes');
    assert.doesNotThrow(() => utf8.decode(close.body), 'encodeClose never cuts a character in half');
    if (full.length <= 200) {
      assert.ok(close.body.equals(full), 'a short reason is sent whole');
      assert.equal(closeReason(close.body), full.toString('utf8').replace(/[\x00-\x1f\x7f]/g, '?'), 'and read back, control characters masked');
    } else {
      tally.hit('long reason cut');
    }
  });
  const run = runFuzz(t, 'frame parser', prop, corpus.map((s) => [{ datagram: s.bytes, type: FrameType.DATA, body: s.bytes, reason: '' }]));
  if (!run.failed) tally.expect(t, 'frame parser', ['frame', 'empty', 'bad_version', 'bad_type', 'long reason cut']);
});

// ---- 3. the control-message parser ----------------------------------------------------------

/** Re-encodes an accepted message: it must go out again, and decode to itself. */
function checkRoundTrip(m: ControlMsg): void {
  const body = encodeControl(m);
  const again = decodeControl(body);
  assert.ok(isDeepStrictEqual(again, JSON.parse(JSON.stringify(m))), `round trip: ${JSON.stringify(m).slice(0, 200)}`);
  assert.ok(encodeControl(again as ControlMsg).equals(body), 're-encoding is stable');
}

t.test('fuzz: control-message parser on bytes and almost-messages (decodeControl)', async (t) => {
  const tally = new Tally();
  const json = (a: fc.Arbitrary<unknown>) => a.map((v) => Buffer.from(JSON.stringify(v), 'utf8'));
  // A valid message padded with spaces to a size around the limit.
  const nearLimit = fc.tuple(validMsg, fc.integer({ min: -3, max: 3 })).map(([m, d]) => {
    const j = JSON.stringify(m);
    return Buffer.from(j + ' '.repeat(Math.max(0, MAX_CONTROL_BODY + d - Buffer.byteLength(j))), 'utf8');
  });
  // `blame`: the one field that was made wrong, when known.
  const body: fc.Arbitrary<{ b: Buffer; blame?: string }> = fc.oneof(
    fuzzBytes(() => true, 512).map((b) => ({ b: b[0] === FrameType.CONTROL ? b.subarray(1) : b })),
    mutated(json(almostMsg)).map((b) => ({ b })),
    json(almostMsg).map((b) => ({ b })),
    deeplyNested.map((d) => ({ b: Buffer.from(d.json, 'utf8'), blame: d.field })),
    nearLimit.map((b) => ({ b })),
  );
  const prop = fc.property(body, ({ b, blame }) => {
    const m = decodeControl(b);
    if (m.type === 'invalid') {
      const field = checkInvalid(m);
      tally.hit(`invalid ${field.replace(/\[\d+\]$/, '[i]')}`);
      if (b.length > MAX_CONTROL_BODY) assert.equal(m.field, 'body', 'too big: refused as a whole');
      else if (blame) assert.match(field, blameable(blame), `the error names the field made wrong (${blame}): ${m.error}`);
      return;
    }
    assert.ok(b.length <= MAX_CONTROL_BODY, 'nothing bigger than the limit is accepted');
    checkValid(m);
    checkRoundTrip(m);
    tally.hit(`valid ${m.type}`);
  });
  const examples = corpus.filter((s) => s.bytes[0] === FrameType.CONTROL).map((s): [{ b: Buffer }] => [{ b: s.bytes.subarray(1) }]);
  const run = runFuzz(t, 'control bytes', prop, examples);
  if (!run.failed) tally.expect(t, 'control bytes', [
    'valid hello', 'valid config', 'valid refuse', 'valid bye', 'invalid body', 'invalid type', 'invalid v', 'invalid cn', 'invalid want',
    'invalid address', 'invalid prefix', 'invalid gateway', 'invalid reason',
  ]);
});

t.test('fuzz: control messages: every valid message round trips; one bad field is the one blamed', async (t) => {
  const tally = new Tally();
  const input = fc.record({
    msg: validMsg,
    k: fc.nat(),
    change: fc.oneof(fc.record({ to: fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constant(undefined)) }), fc.record({ near: fc.nat() })),
  });
  const prop = fc.property(input, ({ msg, k, change }) => {
    const m = decodeControl(encodeControl(msg)); // encodeControl throws if it thinks a valid message is invalid
    checkValid(m);
    checkRoundTrip(msg);
    const f = decodeFrame(encodeControlFrame(msg));
    assert.ok(f.ok && f.type === FrameType.CONTROL && isDeepStrictEqual(decodeControl(f.body), m), 'as a CONTROL frame too');

    // Change (or drop) one field other than the type; the message stays valid, or the error names that field.
    const fields = Object.keys(msg).filter((x) => x !== 'type');
    const field = fields[k % fields.length];
    const value = 'to' in change ? change.to : nearby(msg, field, change.near);
    const changed = { ...msg, [field]: value };
    const d = decodeControl(Buffer.from(JSON.stringify(changed), 'utf8'));
    if (d.type === 'invalid') {
      assert.match(checkInvalid(d), blameable(field), `changed ${field} to ${JSON.stringify(value)}: ${d.error}`);
      tally.hit(`blamed ${field}`);
    } else {
      checkValid(d);
      for (const x of fields) if (x !== field) assert.ok(isDeepStrictEqual((d as never)[x], (m as never)[x]), `${x} unchanged`);
      tally.hit('still valid');
    }
  });
  const run = runFuzz(t, 'control valid', prop);
  const fields = ['v', 'cn', 'want', 'address', 'prefix', 'gateway', 'mtu', 'routes', 'redirectGateway', 'dns', 'keepaliveSec', 'timeoutSec', 'reason'];
  if (!run.failed) tally.expect(t, 'control valid', ['still valid', ...fields.map((f) => `blamed ${f}`)]);
});

// ---- 4. the IP packet validator and parsers ---------------------------------------------------

const IP_ERRORS = ['truncated', 'bad_version', 'bad_ihl', 'truncated_header', 'bad_total_length', 'length_exceeds_buffer'];

/** A parse result with offsets made relative to `base` and buffers as hex: comparable across buffers. */
function rebased(o: object | null, base: number): unknown {
  if (o === null) return null;
  const r: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) r[k] = Buffer.isBuffer(v) ? v.toString('hex') : /^(offset|payloadOffset)$/.test(k) ? (v as number) - base : v;
  return r;
}

t.test('fuzz: IP packet validator and parsers on arbitrary windows (checkIp, accessors, parseIp, parseTransport)', async (t) => {
  const tally = new Tally();
  const content = fc.oneof(fuzzBytes(), mutated(ipPacket.map((p) => p.bytes)), ipPacket.map((p) => p.bytes));
  const prop = fc.property(windows(content), (w) => {
    const { buf, off, len } = w;
    const err = checkIp(buf, off, len);
    assert.ok(err === null || IP_ERRORS.includes(err), `checkIp result ${err}`);
    assert.equal(checkIp(outside(w), off, len), err, 'checkIp reads only the window');
    if (err !== null) {
      assert.throws(() => parseIp(buf, off, len), (e: unknown) => e instanceof IpParseError && e.code === err, 'parseIp refuses it with the same code');
      tally.hit(err);
      return;
    }
    // Accepted: the header fields checkIp vouches for are in range.
    const v = ipVersion(buf, off);
    assert.ok(v === 4 || v === 6, 'version 4 or 6');
    const total = ipPacketLength(buf, off);
    assert.ok(total <= avail(w), 'the packet lies inside the window');
    if (v === 4) {
      const hl = ipv4HeaderLength(buf, off);
      assert.ok(hl >= 20 && hl <= total, 'IPv4: 20 <= header length <= total length');
    } else {
      assert.ok(total >= 40, 'IPv6: the fixed header is there');
    }
    // The accessors read only the packet: an exact copy of it gives the same answers.
    const exact = Buffer.from(buf.subarray(off, off + total));
    const readers = v === 4 ? [ipv4Protocol, ipv4Src, ipv4Dst, ipv4HeaderChecksum, ipv4HeaderChecksumValid] : [ipv6SrcKey, ipv6DstKey];
    for (const f of readers) assert.equal(f(exact, 0), f(buf, off), `${f.name} reads only the packet`);

    let r;
    try {
      r = parseIp(buf, off, len);
    } catch (e) {
      assert.ok(v === 6 && e instanceof IpParseError && e.code === 'truncated_transport', `parseIp: ${(e as Error).message}`);
      assert.throws(() => parseIp(exact), IpParseError);
      tally.hit('v6 extension truncated');
      return;
    }
    assert.ok(r.version === v && r.offset === off && r.totalLength === total, 'parseIp agrees with checkIp');
    assert.ok(r.headerLength >= (v === 4 ? 20 : 40) && r.payloadOffset === off + r.headerLength && r.payloadLength >= 0, 'header, then payload');
    assert.equal(r.payloadOffset + r.payloadLength, off + total, 'the payload ends where the packet does');
    assert.ok(isDeepStrictEqual(rebased(parseIp(exact), 0), rebased(r, off)), 'parseIp reads only the packet');
    let tr;
    try {
      tr = parseTransport(r, buf);
    } catch (e) {
      assert.ok(e instanceof IpParseError && e.code === 'truncated_transport', `parseTransport: ${(e as Error).message}`);
      tally.hit('transport truncated');
      return;
    }
    if (tr) {
      assert.ok(tr.payloadOffset >= r.payloadOffset && tr.payloadLength >= 0 && tr.payloadOffset + tr.payloadLength <= off + total, 'transport payload inside the packet');
      if (tr.kind === 'tcp' || tr.kind === 'udp') assert.ok(tr.srcPort <= 0xffff && tr.dstPort <= 0xffff);
      if (tr.kind === 'udp') assert.equal(tr.payload.length, tr.payloadLength);
      assert.ok(isDeepStrictEqual(rebased(parseTransport(parseIp(exact), exact), 0), rebased(tr, off)), 'parseTransport reads only the packet');
    }
    tally.hit(`v${v} ${tr ? tr.kind : 'no transport'}${tr?.checksumValid ? ' checksum ok' : ''}`);
  });
  const run = runFuzz(t, 'ip', prop, corpusWindows);
  if (!run.failed) tally.expect(t, 'ip', [...IP_ERRORS, 'v4 tcp checksum ok', 'v4 udp checksum ok', 'v4 icmp checksum ok', 'v6 icmpv6 checksum ok', 'v6 tcp', 'v6 udp', 'v4 no transport', 'v6 extension truncated', 'transport truncated']);
});

t.test('fuzz: IP packet validator and parsers accept well-formed packets and read their fields', async (t) => {
  const tally = new Tally();
  const prop = fc.property(ipPacket, fc.nat({ max: 16 }), (p, at) => {
    const buf = Buffer.concat([Buffer.alloc(at, 0x45), p.bytes]);
    assert.equal(checkIp(buf, at, p.bytes.length), null, 'a well-formed packet is accepted');
    assert.equal(ipPacketLength(buf, at), p.length);
    const r = parseIp(buf, at, p.bytes.length);
    assert.ok(r.version === p.version && r.protocol === p.protocol && r.ttl === p.ttl && r.headerLength === p.headerLength, 'parseIp reads the fields it was built with');
    assert.ok(r.fragmented === p.fragmented && r.hasTransportHeader === p.firstFragment, 'fragments');
    const tr = parseTransport(r, buf);
    if (p.transport === null) {
      assert.equal(tr, null, 'no transport header to read');
      tally.hit('none');
      return;
    }
    assert.ok(tr !== null && tr.kind === p.transport.kind && tr.payloadLength === p.transport.payloadLength, `${p.transport.kind} header read`);
    if (tr.kind === 'icmp' || tr.kind === 'icmpv6') assert.equal(tr.type, p.transport.type);
    else if (tr.kind === 'tcp' || tr.kind === 'udp') assert.ok(tr.srcPort === p.transport.srcPort && tr.dstPort === p.transport.dstPort, 'ports');
    assert.equal(tr.checksumValid, p.fragmented ? null : tr.kind === 'udp' && p.version === 4 && buf.readUInt16BE(r.payloadOffset + 6) === 0 ? null : true, 'checksum');
    tally.hit(`v${p.version} ${tr.kind}${p.fragmented ? ' fragment' : ''}`);
  });
  const run = runFuzz(t, 'ip well-formed', prop);
  if (!run.failed) tally.expect(t, 'ip well-formed', ['none', 'v4 tcp', 'v4 udp', 'v4 icmp', 'v6 tcp', 'v6 udp', 'v6 icmpv6', 'v4 udp fragment', 'v6 tcp fragment']);
});

t.test('fuzz: ICMP echo (isEchoRequest, buildEchoRequest, buildEchoReply)', async (t) => {
  const tally = new Tally();
  const echo = fc.record({
    src: fc.integer({ min: 0, max: 0xffffffff }), dst: fc.integer({ min: 0, max: 0xffffffff }), id: fc.integer({ min: 0, max: 0xffff }),
    seq: fc.integer({ min: 0, max: 0xffff }), payload: bytes(100), ttl: fc.integer({ min: 1, max: 255 }),
  });
  const prop = fc.property(echo, fc.nat(), windows(fc.oneof(fuzzBytes(), mutated(echo.map((e) => buildEchoRequest(e)), 2))), (e, bit, w) => {
    // Built requests are requests; one flipped bit in the ICMP message never is (the checksum sees it).
    const req = buildEchoRequest(e);
    assert.ok(isEchoRequest(req), 'a built echo request is one');
    const r = parseIp(req);
    const tr = parseTransport(r, req);
    assert.ok(r.src === ipv4(e.src) && r.dst === ipv4(e.dst) && r.ttl === e.ttl && r.version === 4 && r.headerChecksumValid, 'IP header as asked');
    assert.ok(tr?.kind === 'icmp' && tr.type === 8 && tr.id === e.id && tr.seq === e.seq && tr.checksumValid, 'ICMP header as asked');
    const flipped = Buffer.from(req);
    const b = 20 * 8 + (bit % ((req.length - 20) * 8));
    flipped[b >> 3] ^= 0x80 >> (b & 7);
    assert.equal(isEchoRequest(flipped), false, `bit ${b} flipped: no longer a valid echo request`);

    // Any window: if it is an echo request, the reply answers it.
    const { buf, off, len } = w;
    const yes = isEchoRequest(buf, off, len);
    assert.equal(isEchoRequest(outside(w), off, len), yes, 'isEchoRequest reads only the window');
    if (!yes) { tally.hit('not a request'); return; }
    assert.equal(checkIp(buf, off, len), null);
    const packet = Buffer.from(buf.subarray(off, off + ipPacketLength(buf, off)));
    const reply = buildEchoReply(packet);
    const q = parseIp(packet), a = parseIp(reply);
    const qt = parseTransport(q, packet), at = parseTransport(a, reply);
    assert.ok(a.src === q.dst && a.dst === q.src && a.protocol === 1 && a.version === 4 && a.headerChecksumValid && !a.fragmented, 'reply: addresses swapped, IP checksum right');
    assert.ok(at?.kind === 'icmp' && qt?.kind === 'icmp' && at.type === 0 && at.code === 0 && at.id === qt.id && at.seq === qt.seq && at.checksumValid, 'reply: type 0, same id and seq, ICMP checksum right');
    assert.ok(reply.subarray(a.payloadOffset + 8).equals(packet.subarray(q.payloadOffset + 8, q.offset + q.totalLength)), 'reply: same data');
    tally.hit('answered');
  });
  const run = runFuzz(t, 'icmp', prop);
  if (!run.failed) tally.expect(t, 'icmp', ['answered', 'not a request']);
});

function ipv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

// ---- 5. the session core's receive path ---------------------------------------------------------


type Action = { kind: 'datagrams'; list: Buffer[]; gaps: number[] } | { kind: 'tick'; dt: number } | { kind: 'accept' };

const datagram = fc.oneof(
  { weight: 3, arbitrary: fuzzBytes() },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom(...(Object.values(FrameType) as number[])), bytes(40)).map(([ty, b]) => Buffer.concat([Buffer.from([ty]), b])) },
  { weight: 2, arbitrary: fc.oneof(validMsg, validConfig).map((m) => encodeControlFrame(m)) },
);

const actions: fc.Arbitrary<Action[]> = fc.array(
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('datagrams' as const), list: fc.array(datagram, { minLength: 1, maxLength: 3 }), gaps: fc.array(fc.nat({ max: 7 }), { minLength: 4, maxLength: 4 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), dt: fc.oneof(fc.nat({ max: 3000 }), fc.nat({ max: 200_000 })) }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'accept' as const }) },
  ),
  { maxLength: 25 },
);

/** Everything about a core that may only grow (or, once set, stay). */
function grows(core: SessionCore, counters: Counters): Record<string, number> {
  return {
    rxBytes: core.rxBytes, rxPackets: core.rxPackets, txBytes: core.txBytes, txPackets: core.txPackets, droppedRecords: core.droppedRecords,
    lastSeen: core.lastSeen, lastSent: core.lastSent, ...counters.snapshot(),
  };
}

/** Datagrams laid out in one buffer with gaps between them, as a receive batch holds them. */
function batchOf(list: Buffer[], gaps: number[]): PacketBatch {
  const parts: Buffer[] = [];
  const b0 = PacketBatch.over(Buffer.alloc(0), list.length);
  let at = 0;
  list.forEach((d, i) => {
    // The gaps hold CLOSE bytes: a core that read outside its datagram would end the session.
    parts.push(Buffer.alloc(gaps[i], FrameType.CLOSE), d);
    b0.offs[i] = at + gaps[i];
    b0.lens[i] = d.length;
    at += gaps[i] + d.length;
  });
  parts.push(Buffer.alloc(gaps[list.length], FrameType.CLOSE));
  const b = PacketBatch.over(Buffer.concat(parts), list.length);
  b.offs.set(b0.offs);
  b.lens.set(b0.lens);
  b.count = list.length;
  return b;
}

/** One datagram into the core, and what must follow from it. */
function receive(core: SessionCore, counters: Counters, b: PacketBatch, i: number, now: number, tally: Tally): void {
  const d = b.packet(i);
  const ft = frameType(d, 0, d.length);
  const before = grows(core, counters);
  const was = { up: core.up, closed: core.closed, close: core.out.close, datagrams: core.out.datagrams.length, events: core.out.events.length };
  const work = core.decapsulate(b, i, now);
  const pk = core.packets;
  if (was.closed) {
    assert.ok(work === false && pk.count === 0 && isDeepStrictEqual(grows(core, counters), before) && core.out.datagrams.length === was.datagrams, 'closed: nothing happens');
    return;
  }
  assert.equal(core.rxBytes, before.rxBytes + d.length, 'received bytes counted');
  assert.equal(core.lastSeen, now, 'a frame is a sign of life');
  const handOut = ft === FrameType.DATA && was.up;
  assert.equal(pk.count, handOut ? 1 : 0, 'a DATA packet is handed out when the session is up, nothing else is');
  assert.equal(core.rxPackets, before.rxPackets + pk.count);
  if (handOut) {
    assert.ok(pk.buf === b.buf && pk.offs[0] === b.offs[i] + 1 && pk.lens[0] === d.length - 1, 'the packet is the datagram after its header byte');
    tally.hit('data handed out');
  }
  if (ft === FrameType.DATA && !was.up) assert.equal(counters.get('unauthorized'), before.unauthorized + 1, 'DATA before up: unauthorized');
  if (ft < 0) assert.equal(counters.get('garbage'), before.garbage + 1, 'not a frame: garbage');
  if (!work) assert.ok(core.out.datagrams.length === was.datagrams && core.out.events.length === was.events && core.out.close === was.close, 'no work reported: nothing to do');
  if (ft === FrameType.DATA) assert.equal(work, false, 'pure data is no control work');
  if (ft === FrameType.KEEPALIVE) assert.ok(isDeepStrictEqual(core.out.datagrams.at(-1), Buffer.from([FrameType.KEEPALIVE_REPLY])), 'a keepalive is answered');
  if (ft === FrameType.CLOSE) assert.equal(core.out.close?.code, 'peer-closed', 'CLOSE ends the session');
  if (ft === FrameType.CONTROL) {
    const m = decodeControl(d.subarray(1));
    if (m.type === 'invalid') assert.ok(isDeepStrictEqual(core.out.events.at(-1), { type: 'invalid', error: m.error }), 'an invalid message is reported with its error');
    if (m.type === 'bye') assert.ok(core.out.close?.code === 'bye' && core.out.close.reason === m.reason, 'bye ends the session');
    if (core.role === 'client' && m.type === 'config') {
      assert.ok(core.up && core.timing.keepaliveMs === m.keepaliveSec * 1000 && core.timing.deadMs === m.timeoutSec * 1000, 'client: the config sets it up');
      tally.hit('client up');
    }
    if (core.role === 'client' && m.type === 'refuse') assert.equal(core.out.close?.code, 'refused');
    tally.hit(`control ${m.type}`);
  }
  if (was.close !== null) assert.equal(core.out.close, was.close, 'a session ends once');
  if (core.closed) tally.hit('closed');
}

function sessionTarget(role: 'server' | 'client') {
  return (t: Test) => {
    const tally = new Tally();
    const prop = fc.property(actions, (list) => {
      const counters = new Counters();
      let now = T0;
      const core = new SessionCore(role, new PlaintextChannel(), role === 'server' ? SERVER_TIMING : CLIENT_TIMING, counters, now, 'alice');
      if (role === 'client') core.start(now);
      core.out.clear();
      for (const a of list) {
        const before = grows(core, counters);
        const close = core.out.close;
        if (a.kind === 'tick') {
          now += a.dt;
          core.tick(now);
        } else if (a.kind === 'accept') {
          if (role === 'server' && !core.closed) core.accept(CONFIG, now);
        } else {
          const b = batchOf(a.list, a.gaps);
          for (let i = 0; i < b.count; i++) receive(core, counters, b, i, now, tally);
        }
        // What is sent is counted: the bytes of every datagram queued, and the time.
        const sent = core.out.datagrams.reduce((n, d) => n + d.length, 0);
        assert.equal(core.txBytes - before.txBytes, sent, 'txBytes counts the datagrams queued');
        if (sent > 0) assert.equal(core.lastSent, now, 'lastSent is when they were queued');
        const after = grows(core, counters);
        for (const k of Object.keys(before)) assert.ok(after[k] >= before[k], `${k} only grows (${before[k]} -> ${after[k]})`);
        if (close !== null) assert.equal(core.out.close, close, 'a session ends once');
        core.out.clear(); // (the shell has acted on it)
      }
    });
    const run = runFuzz(t, `session ${role}`, prop);
    const expected = ['data handed out', 'closed', 'control invalid', 'control hello', 'control config', 'control bye'];
    if (!run.failed) tally.expect(t, `session ${role}`, role === 'client' ? [...expected, 'client up'] : expected);
  };
}

t.test('fuzz: session core receive path, server (SessionCore.decapsulate, plaintext channel)', async (t) => sessionTarget('server')(t));
t.test('fuzz: session core receive path, client (SessionCore.decapsulate, plaintext channel)', async (t) => sessionTarget('client')(t));

// ---- 6. the session core over DTLS: forged, replayed and mangled records -------------------

type DtlsStep =
  | { kind: 'fresh'; n: number } // n genuine records from the client, in one datagram
  | { kind: 'replay'; k: number; changes: Mutation[] } // an earlier datagram again, maybe changed
  | { kind: 'forged'; type: number; epoch: number; seq: number; length: number; body: Buffer; fresh: boolean }
  | { kind: 'garbage'; bytes: Buffer };

const dtlsSteps: fc.Arbitrary<DtlsStep[]> = fc.array(
  fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('fresh' as const), n: fc.integer({ min: 1, max: 3 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('replay' as const), k: fc.nat(), changes: fc.array(mutation, { maxLength: 3 }) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('forged' as const),
        type: fc.oneof(fc.constant(23), fc.integer({ min: 20, max: 25 })),
        epoch: fc.oneof(fc.constant(1), fc.integer({ min: 0, max: 3 })),
        seq: fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0, max: 2 ** 48 - 1 })),
        length: fc.oneof(fc.integer({ min: 0, max: 48 }), fc.integer({ min: 0, max: 0xffff })),
        body: bytes(64),
        fresh: fc.boolean(), // a genuine record after it, in the same datagram
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('garbage' as const), bytes: fuzzBytes() }) },
  ),
  { minLength: 1, maxLength: 20 },
);

/** A DTLS 1.2 record header and body, with whatever length field it is given. */
function record(s: Extract<DtlsStep, { kind: 'forged' }>): Buffer {
  const h = Buffer.alloc(DTLS_RECORD_HEADER_LEN);
  h[0] = s.type;
  h.writeUInt16BE(0xfefd, 1);
  h.writeUInt16BE(s.epoch, 3);
  h.writeUIntBE(s.seq, 5, 6);
  h.writeUInt16BE(s.length, 11);
  return Buffer.concat([h, s.body.subarray(0, s.length)]);
}

t.test('fuzz: session core receive path over DTLS (forged, replayed, mangled records)', async (t) => {
  const tally = new Tally();
  const pairs = await dtlsPairs(SERVER_TIMING, CONFIG);
  const prop = fc.property(dtlsSteps, (steps) => {
    let now = T0;
    const { server, serverRx, seal } = pairs(now);
    const history: Buffer[] = [];
    const delivered = new Set<string>();
    let nextId = 0, maxSeq = server.rxSeq; // (the hello was authenticated already)
    /** n new records, each a DATA frame with a unique body. */
    const fresh = (n: number) => Array.from({ length: n }, () => {
      const d = seal(Buffer.from(`packet ${nextId++}`), now);
      maxSeq = Math.max(maxSeq, recordSeq(d, 0));
      return d;
    });
    for (const s of steps) {
      now += 10;
      let d: Buffer, expect: string[] = [];
      if (s.kind === 'fresh') {
        const recs = fresh(s.n);
        d = Buffer.concat(recs);
        expect = recs.map((_, i) => `packet ${nextId - s.n + i}`);
      } else if (s.kind === 'replay') {
        if (!history.length) continue;
        d = s.changes.reduce<Buffer>((b, m) => m(b), Buffer.from(history[s.k % history.length]));
      } else if (s.kind === 'forged') {
        d = Buffer.concat([record(s), ...(s.fresh ? fresh(1) : [])]);
      } else {
        d = s.bytes;
      }
      const b = new PacketBatch(1, 65536);
      b.push(d);
      server.decapsulate(b, 0, now);
      const pk = server.packets;
      const got: string[] = [];
      for (let k = 0; k < pk.count; k++) {
        assert.ok(pk.buf === serverRx.buf && pk.offs[k] + pk.lens[k] <= pk.buf.length, 'packets lie in the receive batch');
        got.push(pk.buf.toString('latin1', pk.offs[k], pk.offs[k] + pk.lens[k]));
      }
      serverRx.count = 0; // (the shell has written the packets out)
      for (const g of got) {
        assert.ok(/^packet \d+$/.test(g) && Number(g.slice(7)) < nextId, `only what the client sealed comes out (${JSON.stringify(g)})`);
        assert.ok(!delivered.has(g), `each sealed packet comes out once (${g} again: a replay got through)`);
        delivered.add(g);
      }
      if (s.kind === 'fresh') assert.deepEqual(got, expect, 'fresh records from the peer get through');
      assert.ok(server.channel.state === 'open' && !server.closed, `the session survives whatever anyone sends (${s.kind}: ${server.channel.error ?? server.out.close?.reason})`);
      assert.ok(server.rxEpoch === 1 && server.rxSeq <= maxSeq, `the move rule's record numbers come from authenticated records (rxSeq ${server.rxSeq}, highest sealed ${maxSeq})`);
      history.push(d);
      tally.hit(got.length ? `${s.kind} delivered` : `${s.kind} dropped`);
    }
  });
  const run = runFuzz(t, 'session dtls', prop, [], 50); // (a handshake per run: fewer runs)
  if (!run.failed) tally.expect(t, 'session dtls', ['fresh delivered', 'replay dropped', 'forged dropped', 'forged delivered', 'garbage dropped']);
});

t.test('the counters the session target watches are every drop reason', async (t) => {
  t.same(Object.keys(new Counters().snapshot()).sort(), [...DROP_REASONS].sort());
  t.ok(seed('hello').length > 1, 'the corpus is there');
});
