import t from 'tap';
import {
  closeReason,
  decodeFrame,
  DTLS_RECORD_HEADER_LEN,
  encodeClose,
  encodeControl as encodeControlRaw,
  encodeFrame,
  encodeKeepalive,
  encodeKeepaliveReply,
  FRAME_ERR_EMPTY,
  FRAME_ERR_TYPE,
  FRAME_ERR_VERSION,
  FRAME_OVERHEAD,
  frameErrorName,
  frameType,
  frameTypeName,
  FrameType,
  looksLikeDtls,
  looksLikeFrame,
  writeDataHeader,
  writeFrameHeader,
} from '../src/wire/frame';
import {
  ConfigMsg,
  ControlError,
  ControlMsg,
  decodeControl,
  encodeControl,
  encodeControlFrame,
  isValidCn,
  MAX_CONTROL_BODY,
  validateControl,
} from '../src/wire/control';
import { buildEchoRequest } from '../src/wire/icmp';
import { checkIp } from '../src/wire/ip';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Real DTLS records captured on loopback between `openssl s_client -dtls1_2` and
// `openssl s_server -dtls1_2` (OpenSSL 3.0): the first ClientHello's record header
// (version 0xfeff), the server's HelloVerifyRequest, and an encrypted alert (0xfefd).
const DTLS_CLIENT_HELLO_HEAD = hex('16feff000000000000000000c0010000b400000000000000b4fefd');
const DTLS_HELLO_VERIFY = hex('16feff00000000000000000023030000170000000000000017feff14bf738a72d42e4eaba0ba013ae6f67f4acb993e88');
const DTLS_ALERT = hex('15fefd0001000000000001001a696dee175b9888ff9e3631617945d6625f83a308e5fe9b1c2af8');
const DTLS_CCS = hex('14fefd000000000000000b000101');

t.test('frame types and header byte layout', async (t) => {
  t.equal(FRAME_OVERHEAD, 1);
  t.same(Object.values(FrameType), [0x41, 0x42, 0x43, 0x44, 0x45]);
  for (const v of Object.values(FrameType)) {
    t.equal(v >> 4, 4, 'version nibble 4 (protocol v1)');
    t.ok(v < 20 || v > 63, 'outside the DTLS first-byte range 20..63');
  }
  t.equal(frameTypeName(0x42), 'CONTROL');
  t.equal(frameTypeName(0x99), '0x99');
});

t.test('frameType on good frames and each error code', async (t) => {
  for (const v of Object.values(FrameType)) {
    t.equal(frameType(Buffer.from([v])), v);
    t.ok(looksLikeFrame(Buffer.from([v, 1, 2])));
  }
  t.equal(frameType(Buffer.alloc(0)), FRAME_ERR_EMPTY);
  t.equal(frameType(Buffer.from([0x41]), 0, 0), FRAME_ERR_EMPTY, 'zero length');
  t.equal(frameType(Buffer.from([0x41]), 1), FRAME_ERR_EMPTY, 'offset at the end');
  t.equal(frameType(Buffer.from([0x51])), FRAME_ERR_VERSION, 'version 5');
  t.equal(frameType(Buffer.from([0x01])), FRAME_ERR_VERSION);
  t.equal(frameType(Buffer.from([0x45, 0x00])), FrameType.CLOSE);
  t.equal(frameType(Buffer.from([0x40])), FRAME_ERR_TYPE, 'type 0');
  t.equal(frameType(Buffer.from([0x46])), FRAME_ERR_TYPE, 'type 6');
  t.equal(frameType(Buffer.from([0x4f])), FRAME_ERR_TYPE, 'type 15');
  t.equal(frameErrorName(FRAME_ERR_EMPTY), 'empty');
  t.equal(frameErrorName(FRAME_ERR_VERSION), 'bad_version');
  t.equal(frameErrorName(FRAME_ERR_TYPE), 'bad_type');
  t.notOk(looksLikeFrame(Buffer.alloc(0)));
  t.notOk(looksLikeFrame(DTLS_ALERT), 'a DTLS record is not a frame');
  t.equal(frameType(DTLS_ALERT), FRAME_ERR_VERSION);

  // Every possible first byte: exactly the five v1 types are frames, none is also DTLS-like.
  let frames = 0;
  for (let b = 0; b < 256; b++) {
    const buf = Buffer.alloc(DTLS_RECORD_HEADER_LEN);
    buf[0] = b;
    buf[1] = 0xfe;
    buf[2] = 0xfd;
    if (looksLikeFrame(buf)) {
      frames++;
      t.notOk(looksLikeDtls(buf), `0x${b.toString(16)} is not both`);
    }
  }
  t.equal(frames, 5);
});

t.test('looksLikeDtls on real DTLS records', async (t) => {
  t.ok(looksLikeDtls(DTLS_CLIENT_HELLO_HEAD), 'ClientHello (handshake, 0xfeff)');
  t.ok(looksLikeDtls(DTLS_HELLO_VERIFY), 'HelloVerifyRequest');
  t.ok(looksLikeDtls(DTLS_ALERT), 'alert, 0xfefd');
  t.ok(looksLikeDtls(DTLS_CCS), 'change cipher spec');
  const app = Buffer.from(DTLS_ALERT);
  app[0] = 23;
  t.ok(looksLikeDtls(app), 'application data');
  t.ok(looksLikeDtls(Buffer.concat([Buffer.alloc(3), DTLS_ALERT]), 3), 'at an offset');

  t.notOk(looksLikeDtls(DTLS_ALERT.subarray(0, 12)), 'shorter than a record header');
  const tls = Buffer.from(DTLS_ALERT);
  tls[1] = 0x03;
  tls[2] = 0x03;
  t.notOk(looksLikeDtls(tls), 'TLS 1.2 version bytes are not DTLS');
  const oldVer = Buffer.from(DTLS_ALERT);
  oldVer[2] = 0xfc;
  t.notOk(looksLikeDtls(oldVer), 'unknown DTLS version 0xfefc');
  for (const ct of [19, 26, 0x41, 0x17 + 0x30]) {
    const b = Buffer.from(DTLS_ALERT);
    b[0] = ct;
    t.notOk(looksLikeDtls(b), `content type ${ct}`);
  }
  const frame = Buffer.concat([Buffer.from([FrameType.DATA]), buildEchoRequest({ src: '10.8.0.2', dst: '10.8.0.1', id: 1, seq: 1 })]);
  t.notOk(looksLikeDtls(frame), 'a DATA frame is not DTLS');
});

t.test('hot path: DATA header written in place before a packet', async (t) => {
  const ping = buildEchoRequest({ src: '10.8.0.2', dst: '10.8.0.1', id: 5, seq: 6, payload: Buffer.from('xyz') });
  const batch = Buffer.alloc(200, 0xaa);
  const off = 50;
  ping.copy(batch, off + FRAME_OVERHEAD);
  t.equal(writeDataHeader(batch, off), FRAME_OVERHEAD);
  t.equal(batch[off], 0x41);
  t.equal(frameType(batch, off, ping.length + 1), FrameType.DATA);
  t.equal(checkIp(batch, off + FRAME_OVERHEAD, ping.length), null, 'packet intact after the header');
  t.equal(batch[off - 1], 0xaa, 'nothing written before the header');

  t.equal(writeFrameHeader(batch, 0, FrameType.KEEPALIVE), 1);
  t.equal(batch[0], 0x43);
});

t.test('encode/decode round trips', async (t) => {
  const ping = buildEchoRequest({ src: '10.8.0.2', dst: '10.8.0.1', id: 5, seq: 6 });
  const data = encodeFrame(FrameType.DATA, ping);
  t.equal(data.length, ping.length + 1);
  t.match(decodeFrame(data), { ok: true, type: FrameType.DATA });
  const d = decodeFrame(data);
  t.same(d.ok && d.body, ping);

  t.same(encodeKeepalive(), Buffer.from([0x43]));
  t.same(encodeKeepaliveReply(), Buffer.from([0x44]));
  t.match(decodeFrame(encodeKeepalive()), { ok: true, type: FrameType.KEEPALIVE });
  const ka = decodeFrame(encodeKeepalive());
  t.equal(ka.ok && ka.body.length, 0);

  t.same(encodeClose(), Buffer.from([0x45]));
  const c = decodeFrame(encodeClose('server shutting down'));
  t.equal(c.ok && c.type, FrameType.CLOSE);
  t.equal(c.ok && closeReason(c.body), 'server shutting down');
  t.equal(closeReason(Buffer.from('line1\nINFO forged\x1b[31m')), 'line1?INFO forged?[31m', 'control chars neutralised');
  const long = encodeClose('é'.repeat(150)); // 300 bytes of UTF-8
  t.ok(long.length - 1 <= 200, 'reason trimmed to 200 bytes');
  const lr = decodeFrame(long);
  t.equal(lr.ok && closeReason(lr.body), 'é'.repeat(100), 'trimmed on a character boundary');

  const raw = encodeControlRaw({ anything: [1, 2] });
  t.equal(raw[0], FrameType.CONTROL);
  t.same(JSON.parse(raw.subarray(1).toString()), { anything: [1, 2] });

  t.same(decodeFrame(Buffer.alloc(0)), { ok: false, error: 'empty' });
  t.same(decodeFrame(Buffer.from([0x31, 0])), { ok: false, error: 'bad_version' });
  t.same(decodeFrame(Buffer.from([0x4a])), { ok: false, error: 'bad_type' });
  t.same(decodeFrame(DTLS_HELLO_VERIFY), { ok: false, error: 'bad_version' });
});

const goodConfig: ConfigMsg = {
  type: 'config',
  v: 1,
  address: '10.8.0.2',
  prefix: 24,
  gateway: '10.8.0.1',
  mtu: 1434,
  routes: ['192.168.50.0/24', '10.20.0.0/16'],
  redirectGateway: false,
  dns: ['10.8.0.1'],
  keepaliveSec: 10,
  timeoutSec: 60,
};

function roundTrip(msg: ControlMsg) {
  const frame = encodeControlFrame(msg);
  const f = decodeFrame(frame);
  if (!f.ok || f.type !== FrameType.CONTROL) throw new Error('not a control frame');
  return decodeControl(f.body);
}

t.test('control messages round trip', async (t) => {
  const msgs: ControlMsg[] = [
    { type: 'hello', v: 1 },
    { type: 'hello', v: 1, cn: 'alice', want: { compress: false } },
    goodConfig,
    { ...goodConfig, routes: [], dns: [], redirectGateway: true, keepaliveSec: 0, timeoutSec: 0.5 },
    { type: 'refuse', v: 1, reason: 'address pool 10.8.0.0/30 exhausted' },
    { type: 'bye', v: 1, reason: 'client disconnecting' },
    { type: 'bye', v: 1, reason: '' },
  ];
  for (const m of msgs) t.same(roundTrip(m), m, `${m.type} round trip`);
  t.equal(encodeControlFrame(goodConfig)[0], 0x42, 'encodeControlFrame: a complete CONTROL frame');
  const body = encodeControl(goodConfig);
  t.equal(body[0], 0x7b, "encodeControl: the body only, starting with '{'");
  t.same(decodeControl(body), goodConfig, 'encodeControl and decodeControl are counterparts');
  t.same(encodeFrame(FrameType.CONTROL, body), encodeControlFrame(goodConfig));
});

t.test('decodeControl: extra fields ignored, only known fields returned', async (t) => {
  const body = Buffer.from(JSON.stringify({ type: 'bye', v: 1, reason: 'x', future: 1, __proto__x: 2 }));
  t.same(decodeControl(body), { type: 'bye', v: 1, reason: 'x' });
  const proto = decodeControl(Buffer.from('{"type":"hello","v":1,"__proto__":{"admin":true}}'));
  t.same(proto, { type: 'hello', v: 1 });
  t.equal(({} as any).admin, undefined, 'no prototype pollution');
});

t.test('decodeControl names each invalid field and never throws', async (t) => {
  const bad = (obj: unknown, field: string, re: RegExp, what: string) => {
    const r = decodeControl(Buffer.from(JSON.stringify(obj)));
    t.equal(r.type, 'invalid', what);
    if (r.type === 'invalid') {
      t.equal(r.field, field, `${what}: field`);
      t.match(r.error, re, `${what}: message`);
    }
  };
  const cfg = (patch: Record<string, unknown>) => ({ ...goodConfig, ...patch });
  const omit = (k: string) => {
    const o: Record<string, unknown> = { ...goodConfig };
    delete o[k];
    return o;
  };

  // Body-level problems
  const raw = (b: Buffer, re: RegExp, what: string) => {
    const r = decodeControl(b);
    t.match(r, { type: 'invalid', field: 'body' }, what);
    if (r.type === 'invalid') t.match(r.error, re, what);
  };
  raw(Buffer.from('{not json'), /^body: not valid JSON/, 'broken JSON');
  raw(Buffer.alloc(0), /^body: not valid JSON/, 'empty body');
  raw(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), /^body: not valid UTF-8/, 'invalid UTF-8');
  raw(Buffer.from('[1,2]'), /^body: must be a JSON object/, 'array');
  raw(Buffer.from('null'), /^body: must be a JSON object/, 'null');
  raw(Buffer.from('"hello"'), /^body: must be a JSON object/, 'string');
  raw(Buffer.alloc(MAX_CONTROL_BODY + 1, 0x20), /^body: .*more than/, 'too large');

  bad({ v: 1 }, 'type', /^type: unknown control message type undefined/, 'missing type');
  bad({ type: 'reboot', v: 1 }, 'type', /unknown control message type "reboot"/, 'unknown type');
  bad({ type: 'hello' }, 'v', /^v: unsupported control version undefined/, 'missing v');
  bad({ type: 'hello', v: 2 }, 'v', /unsupported control version 2 \(this build speaks 1\)/, 'future v');
  bad({ type: 'hello', v: '1' }, 'v', /unsupported control version "1"/, 'v as string');

  bad({ type: 'hello', v: 1, cn: '' }, 'cn', /^hello\.cn: /, 'empty cn');
  bad({ type: 'hello', v: 1, cn: '../etc/passwd' }, 'cn', /^hello\.cn: /, 'path in cn');
  bad({ type: 'hello', v: 1, cn: 'a'.repeat(65) }, 'cn', /^hello\.cn: /, 'cn too long');
  bad({ type: 'hello', v: 1, cn: 7 }, 'cn', /^hello\.cn: /, 'cn not a string');
  bad({ type: 'hello', v: 1, want: [] }, 'want', /^hello\.want: must be an object/, 'want array');
  bad({ type: 'hello', v: 1, want: null }, 'want', /^hello\.want: must be an object/, 'want null');

  bad(omit('address'), 'address', /^config\.address: must be an IPv4 address \(got undefined\)/, 'missing address');
  bad(cfg({ address: '10.8.0.300' }), 'address', /^config\.address: must be an IPv4 address/, 'bad address');
  bad(cfg({ address: '10.8.0.0' }), 'address', /network or broadcast/, 'network address');
  bad(cfg({ address: '10.8.0.255' }), 'address', /network or broadcast/, 'broadcast address');
  bad(cfg({ prefix: 31 }), 'prefix', /^config\.prefix: must be an integer 8\.\.30 \(got 31\)/, 'prefix 31');
  bad(cfg({ prefix: 24.5 }), 'prefix', /^config\.prefix: /, 'fractional prefix');
  bad(cfg({ prefix: '24' }), 'prefix', /^config\.prefix: /, 'prefix as string');
  bad(omit('gateway'), 'gateway', /^config\.gateway: must be an IPv4 address/, 'missing gateway');
  bad(cfg({ gateway: '10.9.0.1' }), 'gateway', /^config\.gateway: 10\.9\.0\.1 is not in 10\.8\.0\.0\/24/, 'gateway off-subnet');
  bad(cfg({ gateway: '10.8.0.2' }), 'gateway', /must differ from address/, 'gateway = address');
  bad(cfg({ gateway: '10.8.0.255' }), 'gateway', /network or broadcast/, 'gateway broadcast');
  bad(cfg({ mtu: 575 }), 'mtu', /^config\.mtu: must be an integer 576\.\.2000 \(got 575\)/, 'mtu too small');
  bad(cfg({ mtu: 2001 }), 'mtu', /^config\.mtu: must be an integer 576\.\.2000 \(got 2001\)/, 'mtu too big for the data path');
  bad(cfg({ mtu: null }), 'mtu', /^config\.mtu: .*got null/, 'mtu null');
  bad(cfg({ routes: '10.0.0.0/8' }), 'routes', /^config\.routes: must be an array/, 'routes not an array');
  bad(cfg({ routes: ['10.0.0.0/8', 'nope'] }), 'routes[1]', /^config\.routes\[1\]: must be an IPv4 CIDR/, 'bad route');
  bad(cfg({ routes: ['10.0.0.5'] }), 'routes[0]', /must be an IPv4 CIDR/, 'route without prefix');
  bad(cfg({ routes: ['10.0.0.5/24'] }), 'routes[0]', /host bits set in "10\.0\.0\.5\/24" \(did you mean "10\.0\.0\.0\/24"\?\)/, 'route host bits');
  bad(cfg({ routes: Array(257).fill('10.0.0.0/8') }), 'routes', /more than 256 entries/, 'too many routes');
  bad(cfg({ redirectGateway: 'yes' }), 'redirectGateway', /^config\.redirectGateway: must be true or false/, 'redirectGateway');
  bad(omit('redirectGateway'), 'redirectGateway', /must be true or false/, 'missing redirectGateway');
  bad(cfg({ dns: ['10.8.0.1', 'dns.example'] }), 'dns[1]', /^config\.dns\[1\]: must be an IPv4 address/, 'bad dns');
  bad(cfg({ keepaliveSec: -1 }), 'keepaliveSec', /^config\.keepaliveSec: must be a number 0\.\.86400/, 'negative keepalive');
  bad(cfg({ keepaliveSec: Infinity }), 'keepaliveSec', /keepaliveSec/, 'infinite keepalive (JSON null)');
  bad(cfg({ timeoutSec: 0 }), 'timeoutSec', /^config\.timeoutSec: must be a number/, 'zero timeout');
  bad(cfg({ timeoutSec: 10 }), 'timeoutSec', /must be longer than keepaliveSec \(10 <= 10\)/, 'timeout <= keepalive');

  bad({ type: 'refuse', v: 1 }, 'reason', /^refuse\.reason: must be a string \(got undefined\)/, 'refuse without reason');
  bad({ type: 'bye', v: 1, reason: 'a'.repeat(201) }, 'reason', /longer than 200/, 'long reason');
  bad({ type: 'bye', v: 1, reason: 'x\nINFO forged' }, 'reason', /control characters/, 'newline in reason');

  // Fuzz: random bytes and random JSON never throw.
  let threw = 0;
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.alloc(i % 40);
    for (let j = 0; j < b.length; j++) b[j] = (i * 7919 + j * 104729) & 0xff;
    try {
      decodeControl(b);
      validateControl(JSON.parse(JSON.stringify({ type: ['hello', 'config', 'bye'][i % 3], v: 1, reason: i, address: i, cn: i })));
    } catch {
      threw++;
    }
  }
  t.equal(threw, 0, 'no throw escapes');
});

t.test('encodeControl refuses to send an invalid message', async (t) => {
  t.throws(() => encodeControl({ ...goodConfig, mtu: 10 }), ControlError);
  t.throws(() => encodeControl({ ...goodConfig, mtu: 10 }), { field: 'mtu', message: /config\.mtu/ });
  t.throws(() => encodeControl({ type: 'hello', v: 1, cn: 'bad/cn' }), { name: 'ControlError', field: 'cn' });
  t.throws(() => encodeControlFrame({ type: 'bye', v: 1, reason: 'a\nb' }), { name: 'ControlError', field: 'reason' });
});

t.test('isValidCn', async (t) => {
  for (const ok of ['alice', 'client-01', 'lab.host_3', 'bob.example.org', 'A', '7', 'x'.repeat(64)]) t.ok(isValidCn(ok), ok);
  for (const bad of ['', '.hidden', '-x', '_x', '..', 'a/b', 'a b', 'bob@example.org', 'x'.repeat(65), 'ünï', 'a\n', 42, null]) {
    t.notOk(isValidCn(bad), JSON.stringify(bad));
  }
});
