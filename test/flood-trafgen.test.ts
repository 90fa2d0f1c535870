// The trafgen configuration of src/tools/flood.ts (the spoofed floods of the hardening and
// roaming tests): trafgen writes what it would send into a pcap instead of onto a cable, and
// every frame is checked: sources within the prefixes, random ports, the kinds in their
// weights, a fresh forged cookie each time (which the server's own check refuses), record
// numbers ahead of the session's. No network, no namespace.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { attackerContext, clientHello, trafgenConfig } from '../src/tools/flood';
import { udpDatagrams } from '../src/tools/replay';
import { CookieCheck, DtlsContext } from '../src/dtls/dtls';
import { testPki } from './helpers/certs';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-trafgen-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const MACS = { dstMac: '02:00:00:00:00:02', srcMac: '02:00:00:00:00:01' };
const TO = { host: '198.51.100.2', port: 1194 };

/** The frames trafgen makes from `config`: `n` of them, as datagrams. */
function generate(name: string, config: string, n: number) {
  const cfg = path.join(dir, `${name}.trafgen`), pcap = path.join(dir, `${name}.pcap`);
  fs.writeFileSync(cfg, config);
  const r = spawnSync('trafgen', ['-i', cfg, '-o', pcap, '-n', String(n), '--cpus', '1', '--no-sock-mem'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`trafgen exited ${r.status}: ${r.stderr}${r.stdout}`);
  return udpDatagrams(fs.readFileSync(pcap)).datagrams;
}

/** The 16-bit one's complement sum of an IPv4 header: 0xffff when its checksum is right. */
function ipSum(h: Buffer): number {
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += h.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

t.test('ClientHellos, five without a cookie to one with a forged one, from random sources of two prefixes', async (t) => {
  const hello = clientHello(await attackerContext());
  const config = trafgenConfig({ to: TO, sources: ['192.0.2.128/25', '203.0.113.128/25'], kinds: ['hellos', 'hellos', 'hellos', 'hellos', 'hellos', 'forged'], hello, ...MACS });
  const ds = generate('hellos', config, 1200);
  t.equal(ds.length, 1200, 'trafgen made 1200 frames');
  const inPrefix = (a: string) => /^192\.0\.2\.(\d+)$/.test(a) || /^203\.0\.113\.(\d+)$/.test(a);
  t.ok(ds.every((d) => inPrefix(d.src) && Number(d.src.split('.')[3]) >= 128), 'every source is in 192.0.2.128/25 or 203.0.113.128/25');
  t.ok(new Set(ds.map((d) => d.src)).size > 200, `random sources (${new Set(ds.map((d) => d.src)).size} distinct of 256)`);
  t.ok(ds.every((d) => d.dst === TO.host && d.dstPort === TO.port && d.srcPort >= 1024), 'to the server\'s port, from ports 1024 and up');
  t.ok(new Set(ds.map((d) => d.srcPort)).size > 1000, 'random source ports');
  t.ok(ds.every((d) => ipSum(d.record.data.subarray(d.ipOffset, d.ipOffset + 20)) === 0xffff), 'every IPv4 header checksum is right');
  t.ok(ds.every((d) => d.record.data[d.ipOffset + 8] === 64), 'TTL 64');
  const plain = ds.filter((d) => d.payload.equals(hello));
  t.equal(plain.length, 1000, 'five of six are the ClientHello without a cookie');
  const forged = ds.filter((d) => !d.payload.equals(hello));
  const key = Buffer.alloc(18);
  const p = await testPki();
  const server = new DtlsContext({ role: 'server', ca: p.ca.certPem, cert: p.server.certPem, key: p.server.keyPem });
  const cookieOf = (h: Buffer) => { const at = 60 + h[59]; return h.subarray(at + 1, at + 1 + h[at]); }; // (after session_id)
  t.ok(forged.every((d) => cookieOf(d.payload).length === 32), 'the forged cookies are 32 bytes, as ours');
  const cookies = new Set(forged.map((d) => cookieOf(d.payload).toString('hex')));
  t.equal(cookies.size, forged.length, 'each forged ClientHello carries a cookie of its own');
  t.ok(forged.every((d) => server.checkCookie(d.payload, 0, d.payload.length, key) === CookieCheck.BAD), 'the server\'s check finds every forged cookie bad (a whole ClientHello, not ours)');
  t.ok(plain.every((d) => server.checkCookie(d.payload, 0, d.payload.length, key) === CookieCheck.NONE), 'and the others without a cookie');
});

t.test('records of one epoch, numbers ahead of the session\'s, and 1-byte junk', async (t) => {
  const seq = 5_000_000, spread = 700_000;
  const config = trafgenConfig({ to: TO, sources: ['10.0.0.0/8'], kinds: ['records', 'junk', 'control'], record: { epoch: 3, seq, spread }, ...MACS });
  const ds = generate('records', config, 900);
  const records = ds.filter((_, i) => i % 3 === 0); // (the kinds in turn: records, junk, control)
  t.equal(records.length, 300, 'one of three a record');
  t.ok(records.every((d) => d.payload[0] === 23), 'of content type 23');
  t.ok(records.every((d) => d.payload.length === 77 && d.payload.readUInt16BE(1) === 0xfefd && d.payload.readUInt16BE(3) === 3 && d.payload.readUInt16BE(11) === 64),
    'DTLS 1.2 application data of epoch 3, 64 bytes of body');
  const nums = records.map((d) => d.payload.readUIntBE(5, 6));
  t.ok(nums.every((n) => n > seq && n <= seq + spread + 65_536 * 2), `record numbers within N+1..N+S+131072 (${Math.min(...nums) - seq}..${Math.max(...nums) - seq} past N)`);
  t.ok(Math.max(...nums) - Math.min(...nums) > spread / 2, 'spread over the range');
  // (The kinds in turn: records, junk, control.)
  t.ok(ds.every((d, i) => i % 3 !== 2 || (d.payload.length === 1 && d.payload[0] === 0x42)), 'one of three the 1-byte CONTROL frame 0x42');
  const junk = ds.filter((_, i) => i % 3 === 1);
  t.ok(junk.every((d) => d.payload.length === 1) && new Set(junk.map((d) => d.payload[0])).size > 100, 'and one of three 1 random byte');
  t.ok(new Set(ds.map((d) => d.src)).size > 800, 'sources from all over 10.0.0.0/8');
});
