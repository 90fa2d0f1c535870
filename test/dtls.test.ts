// DTLS over OpenSSL through the addon, in memory (no sockets): handshake, identity,
// refusals with reasons, replay and garbage handling, cookie flood, loss, key log.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import crypto from 'node:crypto';
import { CookieCheck, DtlsContext, DtlsConnection } from '../src/dtls/dtls';
import { PacketBatch } from '../src/batch';
import { testPki } from './helpers/certs';
import { handshake } from './helpers/dtls-link';
import { Issued, issueCert } from '../src/pki/pki';
import { isValidCn } from '../src/wire/control';

/** What sealOne asserts with: the subtest that calls it. */
type Asserts = Pick<typeof t, 'equal'>;

const server = (ca: Issued, id: Issued, extra = {}) =>
  new DtlsContext({ role: 'server', ca: ca.certPem, cert: id.certPem, key: id.keyPem, retransmitMs: 50, ...extra });
const client = (ca: Issued, id: Issued, extra = {}) =>
  new DtlsContext({ role: 'client', ca: ca.certPem, cert: id.certPem, key: id.keyPem, retransmitMs: 50, ...extra });

function sealOne(tt: Asserts, conn: DtlsConnection, text: string): Buffer {
  const inb = new PacketBatch(1, 2048);
  inb.push(Buffer.from(text));
  const out = new PacketBatch(1, 2048);
  tt.equal(conn.seal(inb, inb.count, out), 1, 'one record sealed');
  return Buffer.from(out.packet(0));
}

t.test('mutual authentication: handshake, peer identity, cipher, data both ways', async (t) => {
  const p = await testPki();
  const r = await handshake(server(p.ca, p.server), client(p.ca, p.client));
  t.equal(r.client.state, 'open');
  t.equal(r.server?.state, 'open');
  const peer = r.server!.peer()!;
  t.equal(peer.cn, 'alice', 'server sees the client CN');
  t.match(peer.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  t.ok(peer.validTo > Date.now() && peer.validFrom < Date.now(), 'validity is reported');
  t.equal(r.client.peer()!.cn, 'server');
  const info = r.client.info();
  t.equal(info.version, 'DTLSv1.2');
  t.match(info.cipher, /^ECDHE-ECDSA-(AES256-GCM-SHA384|CHACHA20-POLY1305)$/);

  const out = new PacketBatch(8, 2048);
  const rec = sealOne(t, r.client, 'ping through the tunnel');
  t.equal(rec[0], 23, 'an application_data record (content type 23)');
  t.notOk(rec.includes(Buffer.from('ping through')), 'the plaintext is not in the record');
  t.equal(r.server!.openOne(rec, out), 1);
  t.equal(out.packet(0).toString(), 'ping through the tunnel');
  t.equal(r.client.openOne(sealOne(t, r.server!, 'pong'), out), 1);
  t.equal(out.packet(0).toString(), 'pong');
});

t.test('refusals name the reason', async (t) => {
  const p = await testPki();
  const cases: Array<[string, DtlsContext, DtlsContext, 'client' | 'server', RegExp, string?]> = [
    ['server certificate from an unknown CA', server(p.otherCa, p.rogueServer), client(p.ca, p.client), 'client', /unable to get local issuer certificate|self.signed/],
    ['expired client certificate', server(p.ca, p.server), client(p.ca, p.expiredClient), 'server', /certificate has expired/],
    ['expired server certificate', server(p.ca, p.expiredServer), client(p.ca, p.client), 'client', /certificate has expired/],
    ['client without a certificate', server(p.ca, p.server),
      new DtlsContext({ role: 'client', ca: p.ca.certPem, cert: '', key: '', retransmitMs: 50 } as any), 'server', /did not return a certificate/],
    ['client certificate from another CA', server(p.ca, p.server), client(p.ca, p.rogueClient), 'server', /unable to get local issuer certificate/],
    ['server name mismatch', server(p.ca, p.server), client(p.ca, p.client), 'client', /hostname mismatch/i, 'vpn.example.test'],
  ];
  for (const [name, s, c, side, re, serverName] of cases) {
    const r = await handshake(s, c, { serverName, timeoutMs: 5000 });
    const failed = side === 'client' ? r.client : r.server;
    t.equal(failed?.state, 'failed', `${name}: ${side} refuses`);
    t.match(failed?.error ?? '', re, `${name}: reason is "${failed?.error}"`);
    t.not(r.client.state === 'open' && r.server?.state === 'open', true, `${name}: no tunnel`);
  }
});

t.test('a client context without a certificate cannot even be built silently', async (t) => {
  const p = await testPki();
  t.throws(() => new DtlsContext({ role: 'client', ca: p.ca.certPem, cert: p.client.certPem, key: p.server.keyPem }), /key: does not match the certificate/);
  t.throws(() => new DtlsContext({ role: 'client', ca: 'not a pem', cert: p.client.certPem, key: p.client.keyPem }), /ca: no PEM certificate found/);
});

t.test('replays, garbage and truncated datagrams are dropped and counted', async (t) => {
  const p = await testPki();
  const r = await handshake(server(p.ca, p.server), client(p.ca, p.client));
  const srv = r.server!;
  const out = new PacketBatch(8, 2048);
  const d0 = srv.dropped; // (0, or handshake retransmissions on a busy machine: not counted)
  const rec = sealOne(t, r.client, 'once');
  t.equal(srv.openOne(rec, out), 1, 'first copy delivered');
  t.equal(srv.openOne(rec, out), 0, 'replayed copy not delivered');
  t.equal(srv.dropped - d0, 1, 'replay counted');
  const forged = Buffer.from(sealOne(t, r.client, 'tamper me'));
  forged[forged.length - 1] ^= 1;
  t.equal(srv.openOne(forged, out), 0, 'a record with a bad tag is not delivered');
  t.equal(srv.openOne(Buffer.from('garbage that is not DTLS at all'), out), 0);
  t.equal(srv.openOne(rec.subarray(0, 20), out), 0, 'truncated');
  t.equal(srv.openOne(Buffer.alloc(0), out), 0, 'empty');
  t.equal(srv.dropped - d0, 5, 'every bad datagram counted');
  t.equal(srv.state, 'open', 'the connection survives');
  t.equal(srv.openOne(sealOne(t, r.client, 'still alive'), out), 1);
  t.equal(out.packet(0).toString(), 'still alive');
});

t.test('a datagram that carries several records yields every one, in order', async (t) => {
  const p = await testPki();
  const r = await handshake(server(p.ca, p.server), client(p.ca, p.client));
  const out = new PacketBatch(8, 2048);
  const d0 = r.server!.dropped;
  // DTLS allows several records in one datagram (RFC 6347 4.1.1); OpenSSL's own peers do it.
  const three = Buffer.concat(['one', 'two', 'three'].map((w) => sealOne(t, r.client, w)));
  t.equal(r.server!.openOne(three, out), 3, 'three packets out of one datagram');
  t.same([0, 1, 2].map((i) => out.packet(i).toString()), ['one', 'two', 'three']);
  t.equal(r.server!.openOne(sealOne(t, r.client, 'four'), out), 1, 'the next datagram as usual');
  t.equal(out.packet(0).toString(), 'four');
  t.equal(r.server!.dropped, d0, 'nothing counted as dropped');
  // Data and then close_notify in one datagram: the alert after the first record is read too.
  const last = sealOne(t, r.client, 'last');
  r.client.shutdown();
  const bye = r.client.takeOutput();
  t.ok(bye && bye.length === 1, 'close_notify queued as one datagram');
  t.equal(r.server!.openOne(Buffer.concat([last, bye![0]]), out), 1, 'the data record');
  t.equal(out.packet(0).toString(), 'last');
  t.equal(r.server!.state, 'closed', 'and the close_notify behind it');
});

t.test('spoofed ClientHellos create no state and do not disturb a live connection', async (t) => {
  const p = await testPki();
  const sctx = server(p.ca, p.server);
  const r = await handshake(sctx, client(p.ca, p.client));
  const out = new PacketBatch(8, 2048);
  // A real ClientHello, replayed from many spoofed source addresses.
  const spoofer = client(p.ca, p.client).connect('server.minivpn.test');
  spoofer.handshake();
  const hello = spoofer.takeOutput()![0];
  const flood = (n: number, base: number) => {
    let replies = 0, conns = 0;
    for (let i = 0; i < n; i++) {
      const res = sctx.listen(hello, `198.51.100.${i % 250}:${base + i}`);
      if (res && 'reply' in res) replies++;
      if (res && 'conn' in res) conns++;
    }
    return { replies, conns };
  };
  // A real GC between measurements, so garbage reply Buffers do not count as state.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  flood(20000, 1); // warm up allocators
  gc();
  const before = process.memoryUsage().rss;
  const f = flood(100000, 30000);
  gc();
  const grown = process.memoryUsage().rss - before;
  t.equal(f.conns, 0, 'no ClientHello without a valid cookie becomes a connection');
  t.equal(f.replies, 100000, 'each got a stateless HelloVerifyRequest');
  // State per peer would be an SSL object (several KiB each: hundreds of MiB for 100k);
  // allocator noise is a few MiB.
  t.ok(grown < 24 * 1024 * 1024, `memory stays flat (grew ${(grown / 1024).toFixed(0)} KiB over 100k hellos)`);
  // The same ClientHello fed into the established connection (spoofing the client's address).
  const droppedBefore = r.server!.dropped;
  r.server!.openOne(hello, out);
  t.equal(r.server!.state, 'open', 'a ClientHello aimed at a live session does not kill it');
  t.equal(r.server!.dropped, droppedBefore, 'handshake-layer records are not counted as dropped data');
  t.equal(r.server!.openOne(sealOne(t, r.client, 'after the flood'), out), 1);
  t.equal(out.packet(0).toString(), 'after the flood');
});

t.test('the handshake completes with 30% of datagrams dropped', async (t) => {
  const p = await testPki();
  let totalDropped = 0;
  for (const seed of [7, 11, 23]) {
    const r = await handshake(server(p.ca, p.server), client(p.ca, p.client), { loss: 0.3, seed, timeoutMs: 60000 });
    t.equal(r.client.state, 'open', `seed ${seed}: client open after ${r.dropped}/${r.datagrams} datagrams lost`);
    t.equal(r.server?.state, 'open', `seed ${seed}: server open`);
    totalDropped += r.dropped;
  }
  t.ok(totalDropped > 0, 'the lossy path really dropped datagrams');
});

t.test('key log: NSS format lines, file mode 0600', async (t) => {
  const p = await testPki();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-keylog-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'keys.log');
  const r = await handshake(server(p.ca, p.server, { keylogFile: file }), client(p.ca, p.client));
  t.equal(r.client.state, 'open');
  const text = fs.readFileSync(file, 'utf8');
  t.match(text, /^CLIENT_RANDOM [0-9a-f]{64} [0-9a-f]{96}$/m);
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
  // A file that was there (world-readable) is appended to and made 0600 before any secret goes in.
  const old = path.join(dir, 'old.log');
  fs.writeFileSync(old, '# kept\n', { mode: 0o644 });
  fs.chmodSync(old, 0o644);
  const r2 = await handshake(server(p.ca, p.server, { keylogFile: old }), client(p.ca, p.client));
  t.equal(r2.client.state, 'open');
  t.equal(fs.statSync(old).mode & 0o777, 0o600, 'an existing key log is made 0600');
  t.match(fs.readFileSync(old, 'utf8'), /^# kept\nCLIENT_RANDOM /, 'and appended to');
  // Errors show when the context is made (startup), naming the file, not at the first handshake.
  t.throws(() => server(p.ca, p.server, { keylogFile: path.join(dir, 'no-such-dir', 'k.log') }), /keylog: cannot open .*no-such-dir\/k\.log: ENOENT/);
  const link = path.join(dir, 'link.log');
  fs.symlinkSync(path.join(dir, 'target.log'), link);
  t.throws(() => server(p.ca, p.server, { keylogFile: link }), /keylog: cannot open .*link\.log: it is a symbolic link/);
  t.notOk(fs.existsSync(path.join(dir, 'target.log')), 'nothing written through the link');
  t.throws(() => server(p.ca, p.server, { keylogFile: dir }), /keylog: cannot (open|use) /, 'a directory is refused');
});

t.test('close_notify: the peer sees the connection closed', async (t) => {
  const p = await testPki();
  const r = await handshake(server(p.ca, p.server), client(p.ca, p.client));
  const out = new PacketBatch(8, 2048);
  r.client.shutdown();
  const notify = r.client.takeOutput();
  t.ok(notify && notify.length === 1, 'close_notify queued');
  r.server!.openOne(notify![0], out);
  t.equal(r.server!.state, 'closed');
  t.match(r.server!.error ?? '', /close_notify/);
});

t.test('loading files: an expired own certificate and a missing file are named', async (t) => {
  const p = await testPki();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-files-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const w = (n: string, s: string) => { fs.writeFileSync(path.join(dir, n), s, { mode: 0o600 }); return path.join(dir, n); };
  const ca = w('ca.crt', p.ca.certPem);
  t.throws(() => DtlsContext.fromFiles({ role: 'client', caFile: ca, certFile: w('old.crt', p.expiredClient.certPem), keyFile: w('old.key', p.expiredClient.keyPem) }),
    /cert: .*old\.crt expired on \d{4}-/);
  t.throws(() => DtlsContext.fromFiles({ role: 'client', caFile: ca, certFile: path.join(dir, 'missing.crt'), keyFile: ca }),
    /cert: cannot read .*missing\.crt/);
  // What OpenSSL finds wrong names the file too.
  t.throws(() => DtlsContext.fromFiles({ role: 'client', caFile: w('empty.crt', ''), certFile: w('c.crt', p.client.certPem), keyFile: w('c.key', p.client.keyPem) }),
    /^ca .*empty\.crt: no PEM certificate found/);
  t.throws(() => DtlsContext.fromFiles({ role: 'client', caFile: ca, certFile: w('d.crt', p.client.certPem), keyFile: w('wrong.key', p.server.keyPem) }),
    /^key .*wrong\.key: does not match the certificate/);
  const ok = DtlsContext.fromFiles({ role: 'client', caFile: ca, certFile: w('a.crt', p.client.certPem), keyFile: w('a.key', p.client.keyPem) });
  t.equal(ok.role, 'client', 'a valid set loads');
});

t.test("peer(): the certificate's whole CN, not cut at a NUL byte or at 255 bytes", async (t) => {
  const p = await testPki();
  const ca = p.ca;
  for (const cn of ['alice\u0000x', 'a'.repeat(300), 'bob\tsmith']) {
    const id = await issueCert(ca, { cn, kind: 'client', dnsNames: ['odd.minivpn.test'] });
    const r = await handshake(server(ca, p.server), client(ca, id));
    t.equal(r.server!.peer()?.cn, cn, `${JSON.stringify(cn.slice(0, 12))}${cn.length > 12 ? '...' : ''} (${cn.length} characters) comes through whole`);
    t.notOk(isValidCn(r.server!.peer()?.cn), 'and is not a valid client name, so the server refuses it');
  }
});

/** Every DTLS record of a datagram: [content type, epoch, first handshake message type (or -1)]. */
function records(d: Buffer): Array<[number, number, number]> {
  const out: Array<[number, number, number]> = [];
  for (let o = 0; o + 13 <= d.length;) {
    const len = d.readUInt16BE(o + 11);
    const epoch = d.readUInt16BE(o + 3);
    out.push([d[o], epoch, d[o] === 22 && epoch === 0 && len > 0 ? d[o + 13] : -1]);
    o += 13 + len;
  }
  return out;
}

t.test('no session resumption: the server sends no session ticket (each client proves itself every time)', async (t) => {
  const p = await testPki();
  const sctx = server(p.ca, p.server), cctx = client(p.ca, p.client);
  const c = cctx.connect('server.minivpn.test');
  const out = new PacketBatch(16, 2048);
  const seen: Array<[number, number, number]> = [];
  let s: DtlsConnection | null = null;
  c.handshake();
  let toServer = c.takeOutput() ?? [];
  for (let round = 0; round < 10 && toServer.length; round++) {
    const back: Buffer[] = [];
    for (const d of toServer) {
      if (s === null) {
        const r = sctx.listen(d, '192.0.2.11:40000');
        if (r && 'reply' in r) back.push(...r.reply);
        if (r && 'conn' in r) { s = r.conn; back.push(...(s.takeOutput() ?? [])); }
      } else {
        s.openOne(d, out);
        back.push(...(s.takeOutput() ?? []));
      }
    }
    for (const d of back) seen.push(...records(d));
    toServer = [];
    for (const d of back) { c.openOne(d, out); toServer.push(...(c.takeOutput() ?? [])); }
  }
  t.equal(c.state, 'open', 'the handshake completed');
  t.equal(s?.state, 'open');
  t.ok(seen.some(([ct, , hs]) => ct === 22 && hs === 2), 'the server flight was seen (ServerHello)');
  t.notOk(seen.some(([ct, , hs]) => ct === 22 && hs === 4), 'no NewSessionTicket (handshake type 4) in anything the server sent');
});

t.test('the cookie secret rotates: a cookie of the previous secret is still good, one of the secret before is not', async (t) => {
  const p = await testPki();
  const sctx = server(p.ca, p.server), cctx = client(p.ca, p.client);
  const out = new PacketBatch(16, 2048);
  const key = '192.0.2.11:40000';
  /** A ClientHello that carries the cookie the server gives now. */
  const helloWithCookie = (): Buffer => {
    const c = cctx.connect('server.minivpn.test');
    c.handshake();
    const r = sctx.listen(c.takeOutput()![0], key);
    if (!r || !('reply' in r)) throw new Error('expected a HelloVerifyRequest');
    c.openOne(r.reply[0], out);
    return c.takeOutput()![0];
  };
  const h1 = helloWithCookie();
  sctx.rotateCookieSecret();
  const r1 = sctx.listen(h1, key, false);
  t.ok(r1 && 'conn' in r1, 'one rotation later, the cookie is still accepted (a handshake under way survives it)');
  if (r1 && 'conn' in r1) r1.conn.destroy();
  const h2 = helloWithCookie();
  sctx.rotateCookieSecret();
  sctx.rotateCookieSecret();
  const r2 = sctx.listen(h2, key, false);
  t.ok(r2 && 'reply' in r2, 'two rotations later, it is not: a new HelloVerifyRequest instead');
  const h3 = helloWithCookie();
  const r3 = sctx.listen(h3, '192.0.2.12:40000', false);
  t.ok(r3 && 'reply' in r3, 'and a cookie is bound to its address');
});

t.test('checkCookie: our own cookie check before OpenSSL agrees with listen(), cookie by cookie', async (t) => {
  const p = await testPki();
  const secret = Buffer.alloc(32, 7);
  const sctx = server(p.ca, p.server, { cookieSecret: secret }), cctx = client(p.ca, p.client);
  const out = new PacketBatch(16, 2048);
  const key = Buffer.concat([Buffer.from('00000000000000000000ffffc000020b', 'hex'), Buffer.from([0x9c, 0x40])]); // 192.0.2.11:40000
  const c = cctx.connect('server.minivpn.test');
  c.handshake();
  const first = c.takeOutput()![0];
  t.equal(sctx.checkCookie(first, 0, first.length, key), CookieCheck.NONE, 'a ClientHello without a cookie: NONE');
  const r = sctx.listen(first, key, false);
  if (!r || !('reply' in r)) throw new Error('expected a HelloVerifyRequest');
  c.openOne(r.reply[0], out);
  const second = c.takeOutput()![0];
  // The cookie is HMAC-SHA256(secret, key), as the native code makes it with a context keyed once.
  const at = 13 + 12 + 2 + 32 + 1 + second[13 + 12 + 34];
  const cookie = second.subarray(at + 1, at + 1 + second[at]);
  t.same(cookie, crypto.createHmac('sha256', secret).update(key).digest(), 'the cookie is HMAC-SHA256(secret, peer key)');
  // At an offset in a larger buffer, as the server reads it from its receive batch.
  const batch = Buffer.concat([Buffer.alloc(100, 0xee), second, Buffer.alloc(50, 0xee)]);
  t.equal(sctx.checkCookie(batch, 100, second.length, key), CookieCheck.GOOD, 'the cookie listen() made: GOOD');
  t.equal(sctx.checkCookie(batch, 100, second.length, Buffer.concat([key.subarray(0, 17), Buffer.from([0x41])])), CookieCheck.BAD, 'from another port: BAD');
  const forged = Buffer.from(second);
  forged[at + 1] ^= 1;
  t.equal(sctx.checkCookie(forged, 0, forged.length, key), CookieCheck.BAD, 'one bit changed: BAD');
  t.equal(sctx.checkCookie(second, 0, at + 10, key), CookieCheck.NOT_A_HELLO, 'cut within the cookie: not a whole ClientHello');
  t.equal(sctx.checkCookie(Buffer.alloc(1), 0, 1, key), CookieCheck.NOT_A_HELLO, 'one byte: not a ClientHello');
  const fragment = Buffer.from(second);
  fragment.writeUIntBE(fragment.readUIntBE(22, 3) - 1, 22, 3); // (fragment length below the message length)
  t.equal(sctx.checkCookie(fragment, 0, fragment.length, key), CookieCheck.NOT_A_HELLO, 'a fragment: not a whole ClientHello');
  sctx.rotateCookieSecret();
  t.equal(sctx.checkCookie(second, 0, second.length, key), CookieCheck.GOOD, 'one rotation later: still GOOD (the previous secret)');
  const r2 = sctx.listen(second, key, false);
  t.ok(r2 && 'conn' in r2, 'and listen() agrees: a connection');
  if (r2 && 'conn' in r2) r2.conn.destroy();
  sctx.rotateCookieSecret();
  t.equal(sctx.checkCookie(second, 0, second.length, key), CookieCheck.BAD, 'two rotations later: BAD (stale)');
  const r3 = sctx.listen(second, key, false);
  t.ok(r3 && 'reply' in r3, 'and listen() agrees: a new HelloVerifyRequest');
});
