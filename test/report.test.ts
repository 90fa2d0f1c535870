// The capture report (src/lab/report/) and its pcap reader (src/lab/pcap.ts).
//
// Two small captures are built here, of the same made-up exchange (a tunnel set-up, then
// curl fetching /minivpn-secret-page through the tunnel):
//   A: the lab-only plaintext tunnel: tunnel frames straight in UDP (Ethernet link type)
//   B: the DTLS tunnel: DTLS records, handshake then random "ciphertext" (Linux cooked v2,
//      big-endian, nanosecond timestamps, to exercise the other file variants)
// The analysis is checked as data, the page as HTML and, in headless Chromium, as what a
// browser shows after its script ran. The screenshot lands in .tap/screenshots/report.png.
import t, { Test } from 'tap';
import { chromium, runGroup, CHROMIUM } from './helpers/chromium';
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  buildIpv4Tcp,
  buildIpv4Udp,
  decodeLink,
  frameForLink,
  LINKTYPE_ETHERNET,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  LINKTYPE_RAW,
  PcapError,
  readPcap,
  writePcap,
} from '../src/lab/pcap';
import { parseArgs } from '../src/lab/report-cli';
import { analyzeCapture, CaptureAnalysis, describePacket, isPrintable, parseDtlsRecords, renderReport, shannonEntropy } from '../src/lab/report';
import { encodeControl, encodeFrame, encodeKeepalive, FrameType } from '../src/wire/frame';
import { buildEchoRequest } from '../src/wire/icmp';
import { parseIp, parseTransport } from '../src/wire/ip';

// Chromium and the node processes can be slow on a busy machine, and Chromium's first start
// on a fresh one (profile, fonts; the snap on Ubuntu) can take minutes.
t.setTimeout(900_000);

const ROOT = path.resolve(__dirname, '..', '..');
const SHOTS = path.join(ROOT, '.tap', 'screenshots');
const CLI = path.join(ROOT, 'dist', 'src', 'lab', 'report-cli.js');

const CLIENT = { ip: '192.0.2.11', port: 40000 };
const SERVER = { ip: '198.51.100.2', port: 1194 };
const SECRET = 'minivpn-secret-page';

const HTTP_REQUEST = `GET /${SECRET} HTTP/1.1\r\nHost: 10.9.0.10\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n`;
const PAGE_BODY =
  '<!DOCTYPE html>\n<html><head><title>Secret page</title></head><body>\n' +
  '<h1>The minivpn secret page</h1>\n' +
  Array.from({ length: 14 }, (_, i) => `<p>Line ${i + 1}: only people inside the tunnel should be able to read this sentence.</p>\n`).join('') +
  '</body></html>\n';
const HTTP_RESPONSE = `HTTP/1.1 200 OK\r\nServer: minivpn-lab\r\nContent-Type: text/html\r\nContent-Length: ${PAGE_BODY.length}\r\n\r\n${PAGE_BODY}`;

// ---------------------------------------------------------------------------------------
// Building the captures

/** Underlay UDP datagram between the lab client and server; `up` = client to server. */
function underlay(up: boolean, payload: Buffer, id = 0): Buffer {
  const [s, d] = up ? [CLIENT, SERVER] : [SERVER, CLIENT];
  return buildIpv4Udp({ src: s.ip, dst: d.ip, srcPort: s.port, dstPort: d.port, payload, id });
}

const INNER_CLIENT = '10.8.0.2';
const WEB = '10.9.0.10';

/** The inner packets of the exchange, in order, with their direction. */
function innerPackets(): { up: boolean; frame: Buffer }[] {
  const c = { src: INNER_CLIENT, dst: WEB, srcPort: 41234, dstPort: 80 };
  const s = { src: WEB, dst: INNER_CLIENT, srcPort: 80, dstPort: 41234 };
  const data = (ip: Buffer) => encodeFrame(FrameType.DATA, ip);
  return [
    { up: true, frame: encodeControl({ type: 'hello', v: 1, cn: 'alice' }) },
    {
      up: false,
      frame: encodeControl({ type: 'config', v: 1, address: INNER_CLIENT, prefix: 24, gateway: '10.8.0.1', mtu: 1400, routes: ['10.9.0.0/24'], redirectGateway: false, dns: [], keepaliveSec: 10, timeoutSec: 60 }),
    },
    { up: true, frame: data(buildEchoRequest({ src: INNER_CLIENT, dst: WEB, id: 7, seq: 1, payload: Buffer.alloc(16, 0xab) })) },
    { up: true, frame: data(buildIpv4Tcp({ ...c, seq: 1000, flags: ['SYN'] })) },
    { up: false, frame: data(buildIpv4Tcp({ ...s, seq: 5000, ack: 1001, flags: ['SYN', 'ACK'] })) },
    { up: true, frame: data(buildIpv4Tcp({ ...c, seq: 1001, ack: 5001, flags: ['ACK'] })) },
    { up: true, frame: data(buildIpv4Tcp({ ...c, seq: 1001, ack: 5001, flags: ['PSH', 'ACK'], payload: Buffer.from(HTTP_REQUEST) })) },
    { up: false, frame: data(buildIpv4Tcp({ ...s, seq: 5001, ack: 1001 + HTTP_REQUEST.length, flags: ['PSH', 'ACK'], payload: Buffer.from(HTTP_RESPONSE) })) },
    { up: true, frame: data(buildIpv4Tcp({ ...c, seq: 1001 + HTTP_REQUEST.length, ack: 5001 + HTTP_RESPONSE.length, flags: ['FIN', 'ACK'] })) },
    { up: true, frame: encodeKeepalive() },
  ];
}

/** Capture A: plaintext frames, Ethernet, little-endian, microseconds; plus an ARP frame and an underlay TCP segment. */
function buildPlainCapture(): Buffer {
  const eth = (ip: Buffer) => frameForLink(LINKTYPE_ETHERNET, ip);
  const packets = innerPackets().map((p, i) => ({ data: eth(underlay(p.up, p.frame, i)), time: 1_700_000_000 + i * 0.01 }));
  const arp = Buffer.concat([Buffer.from('ffffffffffff020000000001', 'hex'), Buffer.from([0x08, 0x06]), Buffer.alloc(28)]);
  const ssh = buildIpv4Tcp({ src: CLIENT.ip, dst: SERVER.ip, srcPort: 50022, dstPort: 22, flags: ['ACK'] });
  // A DNS-looking datagram on another port: analysed as "other" unless a port filter drops it.
  const dns = buildIpv4Udp({ src: CLIENT.ip, dst: '198.51.100.53', srcPort: 53000, dstPort: 53, payload: Buffer.from('0001010000010000000000000377777700', 'hex') });
  packets.splice(1, 0, { data: arp, time: 1_700_000_000.005 });
  packets.push({ data: eth(ssh), time: 1_700_000_000.2 }, { data: eth(dns), time: 1_700_000_000.21 });
  return writePcap(packets, { linkType: LINKTYPE_ETHERNET });
}

/** One DTLS record. */
function record(ct: number, epoch: number, seq: number, body: Buffer, version = 0xfefd): Buffer {
  const h = Buffer.alloc(13);
  h[0] = ct;
  h.writeUInt16BE(version, 1);
  h.writeUInt16BE(epoch, 3);
  h.writeUInt16BE(Math.floor(seq / 2 ** 32), 5);
  h.writeUInt32BE(seq % 2 ** 32, 7);
  h.writeUInt16BE(body.length, 11);
  return Buffer.concat([h, body]);
}

/** One handshake message (12-byte DTLS handshake header + body). */
function hs(type: number, msgSeq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h[0] = type;
  h.writeUIntBE(body.length, 1, 3);
  h.writeUInt16BE(msgSeq, 4);
  h.writeUIntBE(body.length, 9, 3); // fragment length; fragment offset (6..8) 0
  return Buffer.concat([h, body]);
}

const APPDATA_SEQ_BASE = 2 ** 40; // exercises the full 48-bit sequence number

/**
 * Capture B: the same exchange through DTLS 1.2. The handshake flights carry readable
 * certificate names (as real ones do); application data is random bytes of the size the
 * AES-GCM record would have (8-byte explicit nonce + frame + 16-byte tag).
 */
function buildDtlsCapture(): Buffer {
  const rnd = (n: number) => crypto.randomBytes(n);
  const cert = Buffer.concat([rnd(40), Buffer.from('minivpn lab CA'), rnd(60), Buffer.from('server.minivpn.test'), rnd(300)]);
  const flights: { up: boolean; payload: Buffer }[] = [
    { up: true, payload: record(22, 0, 0, hs(1, 0, rnd(120)), 0xfeff) }, // ClientHello
    { up: false, payload: record(22, 0, 0, hs(3, 0, rnd(23)), 0xfeff) }, // HelloVerifyRequest
    { up: true, payload: record(22, 0, 1, hs(1, 1, rnd(140))) }, // ClientHello with cookie
    {
      up: false,
      payload: Buffer.concat([
        record(22, 0, 1, hs(2, 1, rnd(60))), // ServerHello
        record(22, 0, 2, hs(11, 2, cert)), // Certificate
        record(22, 0, 3, hs(12, 3, rnd(110))), // ServerKeyExchange
        record(22, 0, 4, hs(13, 4, rnd(30))), // CertificateRequest
        record(22, 0, 5, hs(14, 5, Buffer.alloc(0))), // ServerHelloDone
      ]),
    },
    {
      up: true,
      payload: Buffer.concat([
        record(22, 0, 2, hs(11, 2, Buffer.concat([rnd(50), Buffer.from('alice'), rnd(300)]))),
        record(22, 0, 3, hs(16, 3, rnd(66))), // ClientKeyExchange
        record(22, 0, 4, hs(15, 4, rnd(74))), // CertificateVerify
        record(20, 0, 5, Buffer.from([1])), // ChangeCipherSpec
        record(22, 1, 0, rnd(40)), // Finished, already encrypted
      ]),
    },
    { up: false, payload: Buffer.concat([record(20, 0, 6, Buffer.from([1])), record(22, 1, 0, rnd(40))]) },
  ];
  let seqUp = APPDATA_SEQ_BASE;
  let seqDown = APPDATA_SEQ_BASE;
  for (const p of innerPackets().slice(2)) {
    const body = rnd(8 + p.frame.length + 16);
    flights.push({ up: p.up, payload: record(23, 1, p.up ? seqUp++ : seqDown++, body) });
  }
  const packets = flights.map((f, i) => ({
    data: frameForLink(LINKTYPE_LINUX_SLL2, underlay(f.up, f.payload, i)),
    tsSec: 1_700_000_100,
    tsFrac: i * 10_000_000 + 123,
  }));
  return writePcap(packets, { linkType: LINKTYPE_LINUX_SLL2, bigEndian: true, nanosecond: true });
}

const PLAIN = buildPlainCapture();
const DTLS = buildDtlsCapture();

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-report-'));
}

// ---------------------------------------------------------------------------------------
// pcap reader and writer

t.test('writePcap/readPcap round trip: both byte orders, both timestamp precisions, four link types', async (t) => {
  const ip = buildIpv4Udp({ src: '192.0.2.1', dst: '198.51.100.2', srcPort: 1, dstPort: 2, payload: Buffer.from('xyz') });
  for (const linkType of [LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2]) {
    for (const bigEndian of [false, true]) {
      for (const nanosecond of [false, true]) {
        const name = `link ${linkType} ${bigEndian ? 'BE' : 'LE'} ${nanosecond ? 'ns' : 'us'}`;
        const frame = frameForLink(linkType, ip);
        const buf = writePcap(
          [
            { data: frame, time: 1_600_000_000.25 },
            { data: frame.subarray(0, frame.length - 2), tsSec: 1_600_000_001, tsFrac: nanosecond ? 123_456 : 123, originalLength: frame.length },
            { data: frame, time: 1_600_000_002.000123 },
          ],
          { linkType, bigEndian, nanosecond, snaplen: 65535 },
        );
        const f = readPcap(buf);
        t.same(
          f.header,
          { byteOrder: bigEndian ? 'big' : 'little', nanosecond, versionMajor: 2, versionMinor: 4, snaplen: 65535, linkType },
          `${name}: header`,
        );
        t.equal(f.records.length, 3, `${name}: three records`);
        t.equal(f.truncated, undefined);
        t.same([f.records[0].tsSec, f.records[0].tsFrac], [1_600_000_000, nanosecond ? 250_000_000 : 250_000], `${name}: timestamp`);
        t.same([f.records[1].tsSec, f.records[1].tsFrac], [1_600_000_001, nanosecond ? 123_456 : 123], `${name}: exact fraction`);
        t.ok(Math.abs(f.records[2].time - 1_600_000_002.000123) < 1e-6, `${name}: time from a float`);
        t.ok(f.records[0].data.equals(frame), `${name}: data`);
        t.same([f.records[1].number, f.records[1].data.length, f.records[1].originalLength], [2, frame.length - 2, frame.length]);
        const link = decodeLink(linkType, f.records[0].data);
        t.ok(link.ok, `${name}: link header understood`);
        if (link.ok) {
          t.equal(link.etherType, 0x0800);
          const repr = parseIp(f.records[0].data, link.offset);
          t.same([repr.src, repr.dst, repr.protocol], ['192.0.2.1', '198.51.100.2', 17], `${name}: IP packet found`);
          const udp = parseTransport(repr, f.records[0].data);
          t.equal(udp?.checksumValid, true, `${name}: the UDP checksum buildIpv4Udp wrote is right`);
        }
      }
    }
  }
});

t.test('decodeLink: VLAN tags, non-IP frames, short headers', async (t) => {
  const ip = buildIpv4Udp({ src: '192.0.2.1', dst: '192.0.2.2', srcPort: 1, dstPort: 2, payload: Buffer.alloc(0) });
  const vlan = Buffer.concat([Buffer.alloc(12, 2), Buffer.from('8100000a0800', 'hex'), ip]);
  t.same(decodeLink(LINKTYPE_ETHERNET, vlan), { ok: true, etherType: 0x0800, offset: 18 }, '802.1Q tag skipped');
  t.same(decodeLink(LINKTYPE_ETHERNET, Buffer.concat([Buffer.alloc(12), Buffer.from('0806', 'hex'), Buffer.alloc(28)])), {
    ok: false,
    reason: 'not IP: ethertype 0x0806 (ARP)',
  });
  t.same(decodeLink(LINKTYPE_ETHERNET, Buffer.alloc(5)), { ok: false, reason: 'Ethernet header truncated' });
  t.same(decodeLink(LINKTYPE_LINUX_SLL, Buffer.alloc(15)), { ok: false, reason: 'LINUX_SLL header truncated' });
  t.same(decodeLink(LINKTYPE_LINUX_SLL2, Buffer.alloc(19)), { ok: false, reason: 'LINUX_SLL2 header truncated' });
  t.same(decodeLink(LINKTYPE_RAW, Buffer.from([0x12])), { ok: false, reason: 'raw packet with IP version 1' });
  t.same(decodeLink(LINKTYPE_RAW, Buffer.alloc(0)), { ok: false, reason: 'empty packet' });
  t.same(decodeLink(105, ip), { ok: false, reason: 'unsupported link type 105' });
});

t.test('bad files give a PcapError naming the problem', async (t) => {
  const good = writePcap([{ data: Buffer.alloc(40, 0x45) }, { data: Buffer.alloc(40, 0x45) }]);
  const cases: [string, Buffer, string, RegExp][] = [
    ['empty file', Buffer.alloc(0), 'too_short', /0 bytes is shorter than the 24-byte global header/],
    ['short file', good.subarray(0, 10), 'too_short', /10 bytes/],
    ['text file', Buffer.from('this is not a capture file at all, just text\n'), 'bad_magic', /magic number 0x74686973/],
    ['pcapng', Buffer.concat([Buffer.from('0a0d0d0a', 'hex'), Buffer.alloc(40)]), 'pcapng', /pcapng.*editcap -F pcap/],
  ];
  const v3 = Buffer.from(good);
  v3.writeUInt16LE(3, 4);
  cases.push(['version 3', v3, 'bad_version', /unsupported pcap version 3\.4/]);
  const huge = Buffer.from(good);
  huge.writeUInt32LE(0x7fffffff, 24 + 8);
  cases.push(['absurd captured length', huge, 'bad_record', /record 1 at byte 24: captured length 2147483647 is impossible/]);
  const badFrac = Buffer.from(good);
  badFrac.writeUInt32LE(1_000_000, 24 + 16 + 40 + 4);
  cases.push(['timestamp fraction', badFrac, 'bad_record', /record 2 at byte 80: timestamp fraction 1000000 is not below 1000000/]);
  for (const [name, buf, code, msg] of cases) {
    for (const fn of [() => readPcap(buf), () => analyzeCapture(buf)]) {
      try {
        fn();
        t.fail(`${name}: should have thrown`);
      } catch (err) {
        t.ok(err instanceof PcapError, `${name}: a PcapError`);
        t.equal((err as PcapError).code, code, `${name}: code ${code}`);
        t.match((err as Error).message, msg, `${name}: message says what is wrong`);
      }
    }
  }
  t.throws(() => readPcap('nope' as unknown as Buffer), { code: 'not_a_buffer' });

  // Unsupported link type: the reader reads it, the report says what it can read.
  const ppp = writePcap([{ data: Buffer.alloc(10) }], { linkType: 9 });
  t.equal(readPcap(ppp).header.linkType, 9);
  t.throws(() => analyzeCapture(ppp), { name: 'PcapError', code: 'unsupported_link_type', message: /unsupported link type 9: this report reads EN10MB \(1\), RAW \(101\)/ });

  // A capture cut short (tcpdump killed mid-write): complete records kept, the loss reported.
  const cut = good.subarray(0, good.length - 5);
  const f = readPcap(cut);
  t.equal(f.records.length, 1, 'the complete record is kept');
  t.equal(f.truncated, 'file ends inside record 2 (35 of 40 bytes)');
  t.throws(() => readPcap(cut, { strict: true }), { code: 'truncated', message: /truncated pcap file: file ends inside record 2/ });
  t.equal(readPcap(good.subarray(0, 24 + 56 + 7)).truncated, 'file ends inside the header of record 2 (7 of 16 bytes)');
  t.equal(analyzeCapture(cut).truncated, 'file ends inside record 2 (35 of 40 bytes)', 'the report passes the warning on');
  // An empty but valid capture (tcpdump -w that saw nothing).
  const none = analyzeCapture(writePcap([]));
  t.same([none.records, none.totals.packets, none.found, none.totals.meanEntropy], [0, 0, false, 0]);
});

t.test('garbage never crashes the analysis: every cut point and random damage', async (t) => {
  // Truncations of both captures: every byte near a record boundary (where the headers
  // are), every 7th elsewhere. The loss is reported except exactly at a boundary.
  let cuts = 0;
  let wrong = 0;
  for (const cap of [PLAIN, DTLS]) {
    const boundaries = new Set<number>();
    let end = 24;
    boundaries.add(end);
    for (const r of readPcap(cap).records) boundaries.add((end += 16 + r.data.length));
    const near = (n: number) => [...boundaries].some((b) => n >= b - 4 && n <= b + 80);
    for (let n = 0; n < cap.length; n++) {
      if (!near(n) && n % 7 !== 0) continue;
      if (n < 24) {
        t.throws(() => analyzeCapture(cap.subarray(0, n)), { code: 'too_short' });
        continue;
      }
      const a = analyzeCapture(cap.subarray(0, n));
      if ((a.truncated === undefined) !== boundaries.has(n)) wrong++;
      cuts++;
    }
  }
  t.ok(cuts > 1500, `analysed ${cuts} truncated files without a crash`);
  t.equal(wrong, 0, 'each one reported as truncated exactly when it ends mid-record');

  // Random byte damage, reproducible from the seed.
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  let threw = 0;
  let crashed = 0;
  for (let i = 0; i < 3000; i++) {
    const base = i % 2 ? PLAIN : DTLS;
    const buf = Buffer.from(base);
    const hits = 1 + Math.floor(rand() * 12);
    for (let h = 0; h < hits; h++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
    try {
      const a = analyzeCapture(buf);
      if (i % 20 === 0) renderReport(a, a); // the page copes with whatever the analysis made of it (sampled: rendering is slower)
    } catch (err) {
      threw++;
      if (!(err instanceof PcapError) && crashed++ === 0) t.comment(`damage #${i} threw ${(err as Error).stack}`);
    }
  }
  t.equal(crashed, 0, `3000 damaged files: ${threw} rejected with a PcapError, none with anything else`);
});

t.test('tcpdump reads what writePcap writes', async (t) => {
  const tcpdump = spawnSync('tcpdump', ['--version'], { encoding: 'utf8' });
  t.equal(tcpdump.status, 0, 'tcpdump installed (scripts/deps.sh installs it)');
  const dir = tmpDir();
  try {
    for (const [name, buf, linkName] of [
      ['plain', PLAIN, 'EN10MB'],
      ['dtls', DTLS, 'LINUX_SLL2'],
    ] as const) {
      const file = path.join(dir, `${name}.pcap`);
      fs.writeFileSync(file, buf);
      const r = spawnSync('tcpdump', ['-nn', '-r', file], { encoding: 'utf8', timeout: 20000 });
      t.equal(r.status, 0, `tcpdump -r ${name}.pcap: ${r.stderr}`);
      t.match(r.stderr, new RegExp(`link-type ${linkName}`), `${name}: tcpdump sees link type ${linkName}`);
      const lines = r.stdout.trim().split('\n');
      t.equal(lines.length, readPcap(buf).records.length, `${name}: tcpdump counts every record`);
      t.ok(lines.some((l) => l.includes('192.0.2.11.40000 > 198.51.100.2.1194: UDP, length')), `${name}: tunnel datagrams decoded`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Runs a shell script in a fresh network namespace of its own (unshare -n): nothing it
 * sends can leave, and the namespace vanishes with its last process. Kills the whole
 * process group if it hangs.
 */
function inPrivateNetns(script: string, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runGroup('unshare', ['--net', 'sh', '-ec', script], timeoutMs);
}

/** Spawns a command in its own process group; on timeout kills that group (only ours). */

t.test('reads real tcpdump captures: lo (EN10MB), any (LINUX_SLL2, nanoseconds), any -y LINUX_SLL', async (t) => {
  if (process.getuid?.() !== 0) {
    t.fail('this test needs root (unshare -n, tcpdump); run the suite as root');
    return;
  }
  const dir = tmpDir();
  try {
    const frame = encodeFrame(
      FrameType.DATA,
      buildIpv4Tcp({ src: INNER_CLIENT, dst: WEB, srcPort: 41234, dstPort: 80, flags: ['PSH', 'ACK'], payload: Buffer.from(HTTP_REQUEST) }),
    );
    const port = 20000 + (process.pid % 20000);
    const send = `const s=require('dgram').createSocket('udp4');const f=Buffer.from(process.argv[1],'hex');` +
      `let n=0;const go=()=>s.send(f,${port},'127.0.0.1',()=>{if(++n<3)go();else s.close();});go();`;
    const script = `
      ip link set lo up
      cd ${dir}
      tcpdump -c 3 -i lo --immediate-mode -U -w lo.pcap udp port ${port} 2>lo.err & p1=$!
      tcpdump -c 3 -i any --immediate-mode -U --time-stamp-precision=nano -w any.pcap udp port ${port} 2>any.err & p2=$!
      tcpdump -c 3 -i any -y LINUX_SLL --immediate-mode -U -w sll.pcap udp port ${port} 2>sll.err & p3=$!
      for i in $(seq 600); do
        if grep -q listening lo.err && grep -q listening any.err && grep -q listening sll.err; then break; fi
        sleep 0.1
      done
      ${JSON.stringify(process.execPath)} -e ${JSON.stringify(send)} ${frame.toString('hex')}
      # -c 3: each tcpdump exits once it has written the three datagrams.
      wait $p1 $p2 $p3`;
    const r = await inPrivateNetns(script, 120_000);
    t.equal(r.code, 0, `capture script ran: ${r.stderr}`);
    for (const [file, linkType, nano] of [
      ['lo.pcap', LINKTYPE_ETHERNET, false],
      ['any.pcap', LINKTYPE_LINUX_SLL2, true],
      ['sll.pcap', LINKTYPE_LINUX_SLL, false],
    ] as const) {
      const buf = fs.readFileSync(path.join(dir, file));
      const f = readPcap(buf);
      t.same([f.header.linkType, f.header.nanosecond], [linkType, nano], `${file}: link type ${linkType}, nanosecond ${nano}`);
      t.equal(f.records.length, 3, `${file}: three datagrams`);
      const a = analyzeCapture(buf, { port, find: SECRET });
      t.equal(a.totals.packets, 3, `${file}: three tunnel packets analysed`);
      t.ok(a.found, `${file}: the secret is found`);
      const p = a.packets[0];
      t.same([p.src, p.dst, p.dstPort, p.length, p.kind], ['127.0.0.1', '127.0.0.1', port, frame.length, 'tunnel-data'], `${file}: underlay`);
      t.same([p.inner?.src, p.inner?.dst, p.inner?.dstPort, p.inner?.payloadText], [INNER_CLIENT, WEB, 80, `GET /${SECRET} HTTP/1.1`], `${file}: inner packet`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------
// Analysis

t.test('entropy and printable helpers', async (t) => {
  t.equal(shannonEntropy(Buffer.alloc(0)), 0);
  t.equal(shannonEntropy(Buffer.alloc(100, 7)), 0, 'one value: no information');
  t.equal(shannonEntropy(Buffer.from([0, 1, 0, 1])), 1, 'two equally likely values: 1 bit');
  const all = Buffer.alloc(256 * 4);
  for (let i = 0; i < all.length; i++) all[i] = i & 255;
  t.equal(shannonEntropy(all), 8, 'every value equally often: 8 bits');
  t.ok(shannonEntropy(crypto.randomBytes(4096)) > 7.9, 'random bytes: close to 8');
  t.ok(shannonEntropy(Buffer.from(PAGE_BODY)) < 5, 'English text: below 5');
  t.same([isPrintable(0x41), isPrintable(0x20), isPrintable(0x0a), isPrintable(0x0d), isPrintable(0x09)], [true, true, true, true, true]);
  t.same([isPrintable(0), isPrintable(0x7f), isPrintable(0x1b), isPrintable(0xe9)], [false, false, false, false]);
});

t.test('analysis of the plaintext capture: found, decoded inner headers, kinds, skipped records', async (t) => {
  const a = analyzeCapture(PLAIN, { find: SECRET });
  t.same([a.linkType, a.linkTypeName, a.byteOrder, a.nanosecond, a.records], [1, 'EN10MB', 'little', false, 13]);
  t.same(a.skipped, { 'not IP: ethertype 0x0806 (ARP)': 1, 'not UDP (TCP)': 1 }, 'ARP and the SSH segment are skipped, with reasons');
  t.equal(a.totals.packets, 11, '10 tunnel datagrams + 1 DNS datagram');
  t.same(a.totals.kinds, { 'tunnel-data': 7, 'tunnel-control': 3, 'dtls-handshake': 0, 'dtls-appdata': 0, other: 1 });
  t.equal(a.found, true, 'the secret path is readable');
  t.equal(a.foundPackets, 1);
  const get = a.packets[a.firstFoundIndex!];
  t.equal(get.number, 8, 'found in record 8 (the GET)');
  t.same(get.matches, [1 + 20 + 20 + 5], 'at its offset in the UDP payload: frame byte + IP + TCP + "GET /"');
  t.same(get.inner, {
    version: 4,
    src: INNER_CLIENT,
    dst: WEB,
    protocol: 'TCP',
    ttl: 64,
    length: 40 + HTTP_REQUEST.length,
    srcPort: 41234,
    dstPort: 80,
    flags: ['PSH', 'ACK'],
    seq: 1001,
    ack: 5001,
    payloadLength: HTTP_REQUEST.length,
    payloadText: `GET /${SECRET} HTTP/1.1`,
  });
  t.same([get.src, get.srcPort, get.dst, get.dstPort, get.frame, get.kind], [CLIENT.ip, CLIENT.port, SERVER.ip, SERVER.port, 'DATA', 'tunnel-data']);
  t.equal(describePacket(get), `DATA: IPv4 TCP 10.8.0.2:41234 -> 10.9.0.10:80 [PSH,ACK] ttl 64, ${HTTP_REQUEST.length} bytes of data: "GET /${SECRET} HTTP/1.1"`);

  const synAck = a.packets.find((p) => p.inner?.flags?.join() === 'SYN,ACK')!;
  t.same([synAck.inner?.src, synAck.inner?.srcPort, synAck.inner?.seq, synAck.inner?.ack, synAck.src], [WEB, 80, 5000, 1001, SERVER.ip], 'SYN-ACK decoded');
  const ping = a.packets.find((p) => p.inner?.protocol === 'ICMP')!;
  t.same([ping.inner?.icmpType, ping.inner?.icmpCode, ping.inner?.srcPort], [8, 0, undefined], 'ICMP echo request decoded');
  t.match(a.packets[0].controlText, /^\{"type":"hello","v":1,"cn":"alice"\}$/, 'CONTROL text readable');
  t.equal(a.packets.find((p) => p.frame === 'KEEPALIVE')?.kind, 'tunnel-control');
  t.equal(a.packets[a.packets.length - 1].kind, 'other', 'the DNS datagram is neither frame nor DTLS');
  t.same(a.innerFlows.slice(0, 2), [
    { flow: 'TCP 10.8.0.2:41234 -> 10.9.0.10:80', packets: 4 },
    { flow: 'TCP 10.9.0.10:80 -> 10.8.0.2:41234', packets: 2 },
  ]);
  t.ok(a.longestText!.length > 1000 && a.longestText!.text.startsWith('HTTP/1.1 200 OK'), 'the longest readable run is the HTTP response');
  t.ok(a.totals.printableFraction > 0.8, `mostly printable (${a.totals.printableFraction.toFixed(3)})`);
  const resp = a.packets.find((p) => p.inner?.payloadText === 'HTTP/1.1 200 OK')!;
  t.ok(resp.entropy < 5.5, `the HTTP response packet has text entropy (${resp.entropy.toFixed(2)})`);
  t.equal(resp.head!.length, 320, 'the byte map keeps the first 320 bytes');
  t.ok(Math.abs(a.packets[2].time - 0.02) < 1e-9, 'time is relative to the first record');

  // A port filter keeps only the tunnel; default search is HTTP/1.1.
  const only = analyzeCapture(PLAIN, { port: 1194 });
  t.same([only.totals.packets, only.skipped['other port'], only.find, only.found, only.foundPackets], [10, 1, 'HTTP/1.1', true, 2]);
  t.throws(() => analyzeCapture(PLAIN, { port: 70000 }), /port must be an integer from 1 to 65535/);
  t.throws(() => analyzeCapture(PLAIN, { find: '' }), /find must be a non-empty string/);
});

t.test('analysis of the DTLS capture: not found, high entropy, record headers', async (t) => {
  const b = analyzeCapture(DTLS, { find: SECRET });
  t.same([b.linkTypeName, b.byteOrder, b.nanosecond], ['LINUX_SLL2', 'big', true]);
  t.equal(b.found, false, 'the secret is not readable');
  t.equal(analyzeCapture(DTLS).found, false, 'nor is HTTP/1.1');
  t.same(b.totals.kinds, { 'tunnel-data': 0, 'tunnel-control': 0, 'dtls-handshake': 6, 'dtls-appdata': 8, other: 0 });
  t.same(b.innerFlows, [], 'no inner flow is visible');
  t.same(b.underlayFlows.map((f) => f.flow).sort(), ['UDP 192.0.2.11:40000 -> 198.51.100.2:1194', 'UDP 198.51.100.2:1194 -> 192.0.2.11:40000']);

  t.same(b.packets[0].dtls, [
    { contentType: 22, contentTypeName: 'handshake', version: 'DTLS 1.0', epoch: 0, sequence: 0, length: 132, encrypted: false, handshakeType: 1, handshakeTypeName: 'ClientHello' },
  ]);
  t.same(b.packets[3].dtls!.map((r) => r.handshakeTypeName), ['ServerHello', 'Certificate', 'ServerKeyExchange', 'CertificateRequest', 'ServerHelloDone'], 'the server flight: five records in one datagram');
  t.same(b.packets[3].dtls!.map((r) => r.sequence), [1, 2, 3, 4, 5]);
  const clientFlight = b.packets[4].dtls!;
  t.same(clientFlight.map((r) => [r.contentTypeName, r.epoch, r.encrypted]), [
    ['handshake', 0, false],
    ['handshake', 0, false],
    ['handshake', 0, false],
    ['change_cipher_spec', 0, false],
    ['handshake', 1, true],
  ], 'Finished travels encrypted, at epoch 1');
  t.equal(clientFlight[4].handshakeTypeName, undefined, 'an encrypted handshake message has no readable type');

  const app = b.packets.filter((p) => p.kind === 'dtls-appdata');
  t.equal(app.length, 8);
  t.same(app[0].dtls![0], { contentType: 23, contentTypeName: 'application_data', version: 'DTLS 1.2', epoch: 1, sequence: APPDATA_SEQ_BASE, length: app[0].length - 13, encrypted: true });
  t.match(describePacket(app[0]), /^application_data\(23\) epoch 1 seq 1099511627776 len \d+ \[encrypted\]$/);
  const big = app.reduce((x, y) => (y.length > x.length ? y : x));
  t.ok(big.length > 1000, 'the response record is large');
  t.ok(big.entropy > 7, `ciphertext entropy > 7 bits/byte (${big.entropy.toFixed(3)})`);

  const a = analyzeCapture(PLAIN, { find: SECRET });
  const plainResp = a.packets.find((p) => p.inner?.payloadText === 'HTTP/1.1 200 OK')!;
  t.ok(big.entropy > plainResp.entropy + 2, 'the same response: far higher entropy encrypted than in clear');
  t.ok(b.totals.meanEntropy > a.totals.meanEntropy, `mean entropy B ${b.totals.meanEntropy.toFixed(2)} > A ${a.totals.meanEntropy.toFixed(2)}`);
  t.ok(b.totals.overallEntropy > 7.5, `all DTLS bytes together look random (${b.totals.overallEntropy.toFixed(3)})`);
  t.ok(b.totals.printableFraction < 0.5 && b.totals.printableFraction > 0.3, `about 38% printable, like random bytes (${b.totals.printableFraction.toFixed(3)})`);
  t.equal(b.packets[1].time, 0.01, 'relative times exact to the nanosecond');

  // Record-level oddities are described, not thrown.
  const junk = parseDtlsRecords(Buffer.concat([record(23, 1, 9, Buffer.alloc(4)), Buffer.from('garbage!')]));
  t.same([junk.records.length, junk.error], [1, '8 bytes after the last record, too few for a record header']);
  const short = parseDtlsRecords(record(22, 0, 0, Buffer.alloc(50)).subarray(0, 30));
  t.same([short.records[0].truncated, short.records[0].length], [true, 50]);
  const alert = parseDtlsRecords(record(21, 0, 3, Buffer.from([2, 40])));
  t.equal(alert.records[0].alert, 'fatal handshake_failure');
});

t.test('an IPv6 underlay', async (t) => {
  // 2001:db8::/32 is the documentation prefix; UDP checksum left 0 (wrong for IPv6, and reported so).
  const payload = encodeFrame(FrameType.DATA, buildIpv4Tcp({ src: INNER_CLIENT, dst: WEB, srcPort: 1, dstPort: 80, flags: ['SYN'] }));
  const pkt = Buffer.alloc(40 + 8 + payload.length);
  pkt[0] = 0x60;
  pkt.writeUInt16BE(8 + payload.length, 4);
  pkt[6] = 17;
  pkt[7] = 64;
  Buffer.from('20010db8000000000000000000000001', 'hex').copy(pkt, 8);
  Buffer.from('20010db8000000000000000000000002', 'hex').copy(pkt, 24);
  pkt.writeUInt16BE(40000, 40);
  pkt.writeUInt16BE(1194, 42);
  pkt.writeUInt16BE(8 + payload.length, 44);
  payload.copy(pkt, 48);
  const a = analyzeCapture(writePcap([{ data: frameForLink(LINKTYPE_ETHERNET, pkt) }], { linkType: LINKTYPE_ETHERNET }));
  const p = a.packets[0];
  t.same([p.src, p.dst, p.srcPort, p.dstPort, p.kind, p.inner?.flags], ['2001:db8::1', '2001:db8::2', 40000, 1194, 'tunnel-data', ['SYN']]);
  t.same(a.underlayFlows, [{ flow: 'UDP [2001:db8::1]:40000 -> [2001:db8::2]:1194', packets: 1 }]);
});

// ---------------------------------------------------------------------------------------
// The page

const FIXED_DATE = new Date('2024-05-01T12:00:00Z');

function renderBoth(): { html: string; a: CaptureAnalysis; b: CaptureAnalysis } {
  const a = analyzeCapture(PLAIN, { find: SECRET, port: 1194 });
  const b = analyzeCapture(DTLS, { find: SECRET, port: 1194 });
  const html = renderReport(a, b, { labelA: 'plaintext tunnel', labelB: 'DTLS tunnel', fileA: 'plain.pcap', fileB: 'dtls.pcap', generatedAt: FIXED_DATE });
  return { html, a, b };
}

/** The opening tag of the element with this data-testid. */
function tagOf(html: string, testid: string): string {
  const m = new RegExp(`<[a-z]+[^>]*data-testid="${testid}"[^>]*>`).exec(html);
  return m ? m[0] : '';
}

/** The <svg> element with this data-testid, whole. */
function svgOf(html: string, testid: string): string {
  const m = new RegExp(`<svg[^>]*data-testid="${testid}"[\\s\\S]*?</svg>`).exec(html);
  return m ? m[0] : '';
}

/** Checks that hold for the generated HTML and for the DOM the browser ends up with. */
function checkPage(t: Test, html: string, a: CaptureAnalysis, b: CaptureAnalysis, where: string): void {
  t.match(tagOf(html, 'summary-a'), /data-found="true"/, `${where}: summary A says found`);
  t.match(tagOf(html, 'summary-b'), /data-found="false"/, `${where}: summary B says not found`);
  t.match(tagOf(html, 'found-a'), /data-found="true"/, `${where}: table A found`);
  t.match(tagOf(html, 'found-b'), /data-found="false"/, `${where}: table B not found`);
  t.match(tagOf(html, 'summary-a'), new RegExp(`data-packets="${a.totals.packets}"`));
  for (const [side, cap] of [['a', a], ['b', b]] as const) {
    for (const what of ['sizes', 'entropy']) {
      const svg = svgOf(html, `${what}-${side}`);
      const bars = svg.match(/<rect class="bar k-/g) ?? [];
      t.equal(bars.length, cap.totals.packets, `${where}: ${what} chart ${side} has one bar per packet`);
    }
    t.match(svgOf(html, `entropy-${side}`), new RegExp(`mean ${cap.totals.meanEntropy.toFixed(2)}`), `${where}: mean entropy line ${side}`);
  }
  t.match(svgOf(html, 'sizes-a'), /class="bar k-tunnel-data"/, `${where}: A bars coloured as tunnel data`);
  t.match(svgOf(html, 'sizes-b'), /class="bar k-dtls-appdata"/, `${where}: B bars coloured as DTLS application data`);
  t.match(svgOf(html, 'sizes-b'), /class="bar k-dtls-handshake"/);
  t.match(html, /<td class="what"><b>DATA<\/b> · IPv4 <b>10\.8\.0\.2:41234<\/b> → <b>10\.9\.0\.10:80<\/b> · TCP \[PSH,ACK\]/, `${where}: inner header row`);
  t.match(html, /<b>handshake<\/b> \(22\) · DTLS 1\.0 · epoch 0 · seq 0 · len 132 · <b>ClientHello<\/b>/, `${where}: DTLS record row`);
  t.match(html, /<b>application_data<\/b> \(23\) · DTLS 1\.2 · epoch 1 · seq 1099511627776 · len \d+ <span class="badge enc">encrypted<\/span>/, `${where}: encrypted mark`);
  // Nothing outside the file: no URLs, no src/href attributes, no CSS imports or url().
  t.notMatch(html, /https?:\/\/|\bsrc\s*=|\bhref\s*=|@import|url\(/i, `${where}: no external references`);
}

t.test('renderReport: a self-contained page showing the comparison', async (t) => {
  const { html, a, b } = renderBoth();
  t.match(html, /^<!DOCTYPE html>/);
  t.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none';/, 'the page forbids itself any fetch');
  checkPage(t, html, a, b, 'html');
  t.match(html, /<script type="application\/json" id="bytes-a">/, 'byte map data embedded');
  const data = JSON.parse(/<script type="application\/json" id="bytes-a">(.*?)<\/script>/.exec(html)![1]);
  t.equal(data.rows.length, 10);
  t.equal(data.findLength, SECRET.length);
  t.same(data.rows[6].m, [46], 'the match offset travels to the byte map');
  t.match(Buffer.from(data.rows[6].b, 'base64').toString('latin1'), SECRET);
  t.match(html, /2024-05-01 12:00:00 UTC/);

  // Hostile payloads stay text: nothing from a capture can inject markup or script.
  const evil = writePcap([
    { data: underlay(true, encodeFrame(FrameType.CONTROL, '<script>alert(1)</script>"\'&')) },
    { data: underlay(true, Buffer.from('</script><img src=x onerror=alert(2)>')) },
  ]);
  const e = analyzeCapture(evil, { find: '</script>' });
  const page = renderReport(e, e);
  t.notMatch(page, /<script>alert|<img/, 'markup from payloads is escaped');
  t.match(page, /&#60;script&#62;alert\(1\)&#60;\/script&#62;&#34;&#39;&#38;/);
  t.equal((page.match(/<\/script>/g) ?? []).length, 3, 'only the page\'s own scripts end (two data blocks and the code)');
  t.match(renderReport(e, e, { title: '<b>x</b>' }), /<title>&#60;b&#62;x&#60;\/b&#62;<\/title>/);

  // An empty capture still renders.
  const empty = analyzeCapture(writePcap([]));
  const ep = renderReport(empty, b);
  t.match(ep, /no UDP packets in this capture/);
  t.match(tagOf(ep, 'summary-a'), /data-packets="0"/);
});

t.test('report-cli: writes the page, explains bad input', async (t) => {
  const dir = tmpDir();
  try {
    const pa = path.join(dir, 'plain.pcap');
    const pb = path.join(dir, 'dtls.pcap');
    const out = path.join(dir, 'out.html');
    fs.writeFileSync(pa, PLAIN);
    fs.writeFileSync(pb, DTLS);
    const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30000 });
    const ok = run(pa, pb, '--out', out, '--find', SECRET, '--port', '1194', '--label-a', 'plaintext', '--label-b=DTLS', '--title', 'Lab 3');
    t.equal(ok.status, 0, `exit 0: ${ok.stderr}`);
    t.match(ok.stdout, /capture analysed side=A packets=10 .*found=true/, 'logs A');
    t.match(ok.stdout, /capture analysed side=B packets=14 .*found=false/, 'logs B');
    t.ok(ok.stdout.includes(`report written out=${out}`), 'logs where the page went');
    const html = fs.readFileSync(out, 'utf8');
    t.match(html, /<title>Lab 3<\/title>/, '--title');
    t.match(tagOf(html, 'summary-a'), /data-found="true"/, '--find');
    t.match(html, /<span class="side">B<\/span> DTLS<\/h2>/, '--label-b');

    const junk = path.join(dir, 'junk.pcap');
    fs.writeFileSync(junk, 'hello');
    const bad = run(pa, junk, '--out', out);
    t.equal(bad.status, 1, 'a bad capture: exit 1');
    t.equal(bad.stderr, `report: ${junk}: not a pcap file: 5 bytes is shorter than the 24-byte global header\n`, 'naming file and problem');
    const missing = run(pa, path.join(dir, 'nope.pcap'));
    t.equal(missing.status, 1, 'a missing file: exit 1');
    t.ok(missing.stderr.startsWith(`report: ${path.join(dir, 'nope.pcap')}: ENOENT`), `says which and why: ${missing.stderr}`);
    const usage = run(pa, '--port', 'x');
    t.equal(usage.status, 2, 'a usage error: exit 2');
    t.equal(usage.stderr, 'report: --port: expected an integer from 1 to 65535, got "x" (see --help)\n');
    // The rest of the option parsing in-process (each node start costs half a second).
    t.throws(() => parseArgs([pa]), { message: 'expected two capture files, got 1' });
    t.throws(() => parseArgs([pa, pb, '--bogus']), { message: 'unknown option "--bogus"' });
    t.throws(() => parseArgs([pa, pb, '--packets', '0']), { message: /--packets: expected an integer from 1 to 10000, got "0"/ });
    t.throws(() => parseArgs([pa, pb, '--find']), { message: '--find needs a value' });
    t.equal(parseArgs(['--help']), null);
    t.same(parseArgs([pa, pb, '--port=1194', '--map-bytes', '64', '--find', 'x y']), {
      files: [pa, pb], out: 'report.html', find: 'x y', port: 1194, packets: 40, mapBytes: 64,
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});


t.test('the page in headless Chromium: script ran, summary and charts shown, screenshot saved', async (t) => {
  t.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} exists (scripts/deps.sh test installs it: chromium on Debian, chromium-browser on Ubuntu)`);
  const { html, a, b } = renderBoth();
  fs.mkdirSync(SHOTS, { recursive: true });
  const page = path.join(SHOTS, 'report.html');
  fs.writeFileSync(page, html);
  const url = `file://${page}`;

  const dump = await chromium(['--dump-dom', url]);
  t.equal(dump.code, 0, 'chromium --dump-dom exited cleanly');
  const dom = dump.stdout;
  t.match(dom, /<body[^>]*data-ready="true"/, 'the page script finished');
  t.match(dom, /<div id="script-error" data-testid="script-error"><\/div>/, 'and reported no error');
  checkPage(t, dom, a, b, 'dom');

  // The byte maps were drawn by the script: one row per packet, one cell per byte.
  for (const [side, cap] of [['a', a], ['b', b]] as const) {
    t.match(tagOf(dom, `bytemap-${side}`), /data-rendered="true"/, `byte map ${side} rendered`);
    const map = /<div class="bytemap" id="bytemap-[ab]"[^>]*>([\s\S]*?)<\/div><script/.exec(dom.slice(dom.indexOf(`id="bytemap-${side}"`) - 30))![1];
    const rows = [...map.matchAll(/<div class="bm-row" data-index="(\d+)" data-printable="(\d+)" data-shown="(\d+)">/g)];
    t.equal(rows.length, cap.totals.packets, `byte map ${side}: a row per packet`);
    const cells = map.match(/<span class="c[ "]/g) ?? [];
    const shown = rows.reduce((n, r) => n + Number(r[3]), 0);
    t.equal(cells.length, shown, `byte map ${side}: a cell per byte (${shown})`);
    const printable = rows.reduce((n, r) => n + Number(r[2]), 0);
    if (side === 'a') {
      t.ok(printable / shown > 0.7, `A is mostly printable cells (${printable}/${shown})`);
      // The secret, read back from the cells the browser shows, marked as a match.
      const marked = [...map.matchAll(/<span class="c p r m">(.)<\/span>/g)].map((m) => m[1]).join('');
      t.equal(marked, SECRET, 'A: the matched cells spell the secret');
      const text = map.replace(/<span class="c[^"]*">([^<]*)<\/span>/g, '$1');
      t.match(text, 'Host: 10.9.0.10', 'A: HTTP headers readable in the cells');
    } else {
      t.ok(printable / shown < 0.55, `B is noise: ${printable}/${shown} printable cells`);
      t.notMatch(map, /class="c[^"]* m"/, 'B: no match marked');
    }
  }

  const png = path.join(SHOTS, 'report.png');
  fs.rmSync(png, { force: true });
  const shot = await chromium([`--screenshot=${png}`, '--window-size=1400,1800', url]);
  t.equal(shot.code, 0, 'chromium --screenshot exited cleanly');
  const img = fs.readFileSync(png);
  t.ok(img.subarray(0, 8).equals(Buffer.from('89504e470d0a1a0a', 'hex')), 'a PNG was written');
  t.same([img.readUInt32BE(16), img.readUInt32BE(20)], [1400, 1800], 'at the window size');
  t.ok(img.length > 50_000, `with content (${img.length} bytes)`);
  t.comment(`screenshot: ${png}`);
  t.comment(`page: ${page}`);
});
