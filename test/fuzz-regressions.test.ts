// What the fuzz targets (test/fuzz.test.ts) found, as plain tests: each failed before its fix.
import t from 'tap';
import { PacketBatch } from '../src/batch';
import { DtlsChannel } from '../src/session/channel';
import { Timing } from '../src/session/core';
import { ConfigMsg, ControlMsg, decodeControl, encodeControl, MAX_CONTROL_BODY } from '../src/wire/control';
import { DTLS_RECORD_HEADER_LEN, recordSeq } from '../src/wire/frame';
import { dtlsPairs } from './helpers/fuzz-dtls';

const T0 = 1_000_000;
const TIMING: Timing = { keepaliveMs: 1000, deadMs: 5000, upWithinMs: 30_000 };
const CONFIG: ConfigMsg = {
  type: 'config', v: 1, address: '10.8.0.2', prefix: 24, gateway: '10.8.0.1', mtu: 1400, routes: [], redirectGateway: false, dns: [],
  keepaliveSec: 2, timeoutSec: 7,
};

t.test('regression: a value nested thousands of levels deep is refused naming its field', async (t) => {
  const deep = (n: number, open: string, inner: string, close: string) => open.repeat(n) + inner + close.repeat(n);
  t.ok(Buffer.byteLength(deep(7000, '[', '', ']')) < MAX_CONTROL_BODY, 'within the size limit');
  // JSON.parse takes these; JSON.stringify (used to quote the bad value) overflowed the stack,
  // and the error said "body: Maximum call stack size exceeded" instead of naming the field.
  const v = decodeControl(Buffer.from(`{"type":"refuse","v":${deep(5000, '[', '', ']')},"reason":"x"}`));
  t.match(v, { type: 'invalid', field: 'v', error: /^v: unsupported control version \[/ });
  const addr = decodeControl(Buffer.from(`{"type":"config","v":1,"address":${deep(7000, '[', '', ']')}}`));
  t.match(addr, { type: 'invalid', field: 'address', error: /^config\.address: must be an IPv4 address \(got \[/ });
  const want = decodeControl(Buffer.from(`{"type":"hello","v":1,"want":${deep(5000, '[', '', ']')}}`));
  t.match(want, { type: 'invalid', field: 'want', error: /^hello\.want: must be an object/ });
});

t.test('regression: hello.want nests at most 16 levels (a decoded hello must re-encode)', async (t) => {
  // A want thousands of levels deep decoded as a valid hello, and then JSON.stringify
  // (encodeControl, a log line) or a deep comparison threw RangeError on it.
  const hello = (levels: number) => Buffer.from(`{"type":"hello","v":1,"want":${'{"a":'.repeat(levels - 1)}{}${'}'.repeat(levels - 1)}}`);
  const ok = decodeControl(hello(16));
  t.equal(ok.type, 'hello', '16 levels: accepted');
  t.same(decodeControl(encodeControl(ok as ControlMsg)), ok, 'and it round trips');
  t.match(decodeControl(hello(17)), { type: 'invalid', field: 'want', error: 'hello.want: nested more than 16 levels deep' });
  const arrays = Buffer.from(`{"type":"hello","v":1,"want":{"a":${'['.repeat(6000)}${']'.repeat(6000)}}}`);
  t.match(decodeControl(arrays), { type: 'invalid', field: 'want' }, 'encodeControl threw RangeError on this one');
});

t.test('regression: a JSON syntax error does not carry the peer\'s control characters', async (t) => {
  // V8's message quotes the input: "\u0000\n" came back inside the error, newline included.
  const m = decodeControl(Buffer.from([0x00, 0x0a]));
  t.equal(m.type, 'invalid');
  t.match(m, { field: 'body', error: /^body: not valid JSON/ });
  t.notMatch((m as { error: string }).error, /[\x00-\x1f\x7f]/, 'no control characters in the error');
});

t.test('regression: a forged DTLS record too short for the cipher does not end the session', async (t) => {
  // OpenSSL 3.0 answers an encrypted record shorter than the AEAD's nonce and tag with a fatal
  // internal error: one 14-byte datagram from the client's address, or from anywhere through
  // the move rule's trial (tryDecapsulate), ended the session.
  for (const [cipher, overhead] of [['ECDHE-ECDSA-AES256-GCM-SHA384', 24], ['ECDHE-ECDSA-CHACHA20-POLY1305', 16]] as const) {
    const { server, serverCounters, serverRx, client, seal } = (await dtlsPairs(TIMING, CONFIG, cipher))(T0);
    t.match(client.channel.kind === 'dtls' && (client.channel as DtlsChannel).conn.info().cipher, cipher);
    const forged = (length: number, seq: number) => {
      const h = Buffer.from('17fefd0001000000000000' + '0000', 'hex');
      h.writeUIntBE(seq, 5, 6);
      h.writeUInt16BE(length, 11);
      return Buffer.concat([h, Buffer.alloc(length, 0x5a)]);
    };
    const one = (d: Buffer) => { const b = new PacketBatch(1, 2048); b.push(d); return b; };
    for (const length of [0, 1, overhead - 1]) {
      // From anywhere: the server tries a record from an unknown address on the sessions it may be for.
      t.equal(server.tryDecapsulate(one(forged(length, server.rxSeq + 2)), 0, T0), null, 'a move trial: not this session\'s');
      t.equal(server.channel.state, 'open', `${cipher}: a ${length}-byte record, tried: the session stays`);
      // From the client's address.
      server.decapsulate(one(forged(length, server.rxSeq + 1)), 0, T0);
      t.equal(server.channel.state, 'open', `${cipher}: a ${length}-byte record, received: dropped, the session stays`);
    }
    t.equal(serverCounters.get('replayed_or_bad_record'), 3, 'counted as bad records (the trials are not)');
    // The shortest genuine records: a KEEPALIVE frame (1 byte), a DATA frame with an empty packet.
    client.keepalive(T0);
    const ka = client.out.datagrams.splice(0);
    t.equal(ka[0].length, DTLS_RECORD_HEADER_LEN + overhead + 1, 'a keepalive is the cipher\'s overhead and one byte');
    server.decapsulate(one(ka[0]), 0, T0);
    serverRx.count = 0;
    t.same(server.out.datagrams.length, 1, 'and is answered');
    server.decapsulate(one(seal(Buffer.alloc(0), T0)), 0, T0);
    t.equal(server.packets.count, 1, 'an empty DATA frame gets through');
  }
});

t.test('regression: a forged record in front of a genuine one does not set the move rule\'s numbers', async (t) => {
  const { server, seal } = (await dtlsPairs(TIMING, CONFIG))(T0);
  const genuine = seal(Buffer.from('x'), T0);
  const seq = recordSeq(genuine, 0);
  const forged = Buffer.alloc(DTLS_RECORD_HEADER_LEN + 40, 0x33); // application data, epoch 1, seq 2^40, 40 bytes of junk
  forged.writeUIntBE(0x17fefd0001, 0, 5);
  forged.writeUIntBE(2 ** 40, 5, 6);
  forged.writeUInt16BE(40, 11);
  const b = new PacketBatch(1, 2048);
  b.push(Buffer.concat([forged, genuine]));
  server.decapsulate(b, 0, T0);
  t.equal(server.packets.count, 1, 'OpenSSL skips the forged record and opens the genuine one');
  t.ok(server.rxSeq < seq, `rxSeq ${server.rxSeq} is not the forged header's`);
  const alone = new PacketBatch(1, 2048);
  alone.push(seal(Buffer.from('y'), T0));
  server.decapsulate(alone, 0, T0);
  t.equal(server.rxSeq, seq + 1, 'a datagram of one record sets it');
});

t.test('regression: a value with DEL or C1 characters is shown without them in the error', async (t) => {
  for (const ch of ['\x7f', '\x85', '\x9b']) {
    const r = decodeControl(Buffer.from(JSON.stringify({ type: `c${ch}nfig`, v: 1 })));
    t.equal(r.type, 'invalid');
    if (r.type === 'invalid') {
      t.match(r.error, /^type: unknown control message type "c\?nfig"/, `U+${ch.charCodeAt(0).toString(16)} masked`);
      t.notOk(/[\x00-\x1f\x7f-\x9f]/.test(r.error), 'no control character in the error');
    }
  }
});
