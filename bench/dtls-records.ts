// Record sealing benchmark: how many 1400-byte DTLS records one core can seal and open
// through the binding (native/dtls.cc), in memory, client -> server, in batches of 64.
//
// The figures are put next to a baseline measured in the same run on the same machine:
// the raw AEAD speed of OpenSSL itself (`openssl speed -aead -evp <cipher> -bytes 1400`)
// and node:crypto encrypting 1400-byte buffers one by one. The ratio to `openssl speed` is
// the number to watch: it says how much the DTLS record layer and the JS/native crossing
// cost on top of the cipher, independent of how fast this CPU is.
//
//   npm run bench:records [-- --seconds 3 --batch 64 --size 1400]
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { DtlsConnection, DtlsContext } from '../src/dtls/dtls';
import { PacketBatch } from '../src/batch';
import { addon } from '../src/native';
import { makeCA, issueCert, Issued } from '../src/pki/pki';
import { handshake } from '../test/helpers/dtls-link';

const TARGET = 150_000; // records/s per core, from the issue

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name}: expected a positive number, got ${process.argv[i + 1]}`);
  return v;
}
const SECONDS = arg('seconds', 2);
const BATCH = Math.floor(arg('batch', 64));
const SIZE = Math.floor(arg('size', 1400));

interface Suite {
  label: string;
  dtls: string;      // OpenSSL cipher suite name for DtlsContext `ciphers`
  evp: string;       // `openssl speed -evp` name
  nodeCipher: 'aes-256-gcm' | 'chacha20-poly1305';
}
const SUITES: Suite[] = [
  { label: 'AES-256-GCM', dtls: 'ECDHE-ECDSA-AES256-GCM-SHA384', evp: 'aes-256-gcm', nodeCipher: 'aes-256-gcm' },
  { label: 'ChaCha20-Poly1305', dtls: 'ECDHE-ECDSA-CHACHA20-POLY1305', evp: 'chacha20-poly1305', nodeCipher: 'chacha20-poly1305' },
];

interface Rates { seal: number; open: number; both: number; records: number }

async function connect(suite: Suite, pki: { ca: Issued; server: Issued; client: Issued }): Promise<{ client: DtlsConnection; server: DtlsConnection }> {
  const ctx = (role: 'server' | 'client', id: Issued) =>
    new DtlsContext({ role, ca: pki.ca.certPem, cert: id.certPem, key: id.keyPem, ciphers: suite.dtls });
  const r = await handshake(ctx('server', pki.server), ctx('client', pki.client));
  if (r.client.state !== 'open' || r.server?.state !== 'open') {
    throw new Error(`handshake failed: ${r.client.error ?? r.server?.error ?? 'no reason'}`);
  }
  const got = r.client.info().cipher;
  if (got !== suite.dtls) throw new Error(`asked for ${suite.dtls}, got ${got}`);
  return { client: r.client, server: r.server };
}

/** CPU time of this process in nanoseconds: per-core figures that other load on the machine does not skew. */
function cpuNs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

/**
 * Seals RING batches on the client, then opens them on the server, over and over. Each phase
 * is timed on its own (CPU time, as `openssl speed` does), so seal and open rates come from
 * the same run. Every batch is checked (count, and the contents now and then) so that a
 * broken binding cannot look fast.
 */
const RING = 32;
function measure(client: DtlsConnection, server: DtlsConnection, seconds: number): Rates {
  const plain = new PacketBatch(BATCH, SIZE);
  const payload = randomBytes(SIZE);
  for (let i = 0; i < BATCH; i++) {
    payload.writeUInt32BE(i, 0);
    plain.push(payload);
  }
  // Output slots: a record is the payload plus at most 13 + 8 + 16 bytes; open() wants
  // 2048 bytes free before each read.
  const sealed = Array.from({ length: RING }, () => new PacketBatch(BATCH, SIZE + 64));
  const opened = new PacketBatch(BATCH, Math.max(SIZE + 64, 2048));
  let sealNs = 0, openNs = 0, records = 0, rounds = 0;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    const t0 = cpuNs();
    for (let j = 0; j < RING; j++) {
      const n = client.seal(plain, BATCH, sealed[j]);
      if (n !== BATCH) throw new Error(`sealed ${n} of ${BATCH} (client ${client.state} ${client.error ?? ''})`);
    }
    const t1 = cpuNs();
    for (let j = 0; j < RING; j++) {
      const m = server.open(sealed[j], opened);
      if (m !== BATCH) throw new Error(`opened ${m} of ${BATCH} (server ${server.state} ${server.error ?? ''}, dropped ${server.dropped})`);
    }
    const t2 = cpuNs();
    if (rounds++ % 64 === 0) {
      for (let i = 0; i < BATCH; i++) {
        if (!opened.packet(i).equals(plain.packet(i))) throw new Error(`record ${i} opened to different bytes`);
      }
    }
    sealNs += t1 - t0;
    openNs += t2 - t1;
    records += RING * BATCH;
  }
  if (client.takeOutput() !== null) throw new Error('records overflowed the output batch');
  const perSec = (ns: number) => records / (ns / 1e9);
  return { seal: perSec(sealNs), open: perSec(openNs), both: perSec(sealNs + openNs), records };
}

/** `openssl speed` for one AEAD at SIZE bytes, in records/s; null if the tool is missing. */
function opensslSpeed(evp: string): { rate: number; cmd: string } | null {
  for (const extra of [['-aead'], []]) { // -aead: IV, AAD, data, tag per record (TLS-like); older versions lack it
    const args = ['speed', ...extra, '-evp', evp, '-bytes', String(SIZE), '-seconds', '1'];
    const r = spawnSync('openssl', args, { encoding: 'utf8', timeout: 30000 });
    if (r.status !== 0) continue;
    // Last line: "<NAME>   <n>k" with n in 1000s of bytes per second.
    const m = r.stdout.trim().split('\n').pop()?.match(/([\d.]+)k\s*$/);
    if (m) return { rate: (Number(m[1]) * 1000) / SIZE, cmd: `openssl ${args.join(' ')}` };
  }
  return null;
}

/** node:crypto, one createCipheriv per 1400-byte record (what a pure-JS record layer would pay). */
function nodeCryptoSpeed(cipher: Suite['nodeCipher'], seconds: number): number {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const aad = randomBytes(13); // the DTLS record header is the AAD
  const data = randomBytes(SIZE);
  let n = 0;
  const start = cpuNs();
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    for (let k = 0; k < 256; k++, n++) {
      iv.writeUInt32BE(n, 8); // a fresh nonce per record, as the record layer does
      // Two calls because the typings overload on the algorithm name.
      const c = cipher === 'aes-256-gcm'
        ? createCipheriv(cipher, key, iv, { authTagLength: 16 })
        : createCipheriv(cipher, key, iv, { authTagLength: 16 });
      c.setAAD(aad, { plaintextLength: SIZE });
      c.update(data);
      c.final();
      c.getAuthTag();
    }
  }
  return n / ((cpuNs() - start) / 1e9);
}

const k = (n: number) => `${(n / 1000).toFixed(0)}k`;
const gbit = (recs: number) => ((recs * SIZE * 8) / 1e9).toFixed(2);
const ratio = (a: number, b: number | undefined) => (b ? `${(a / b).toFixed(2)}` : 'n/a');

async function main(): Promise<void> {
  const ca = await makeCA({ cn: 'bench CA' });
  const pki = {
    ca,
    server: await issueCert(ca, { cn: 'server', kind: 'server', dnsNames: ['server.minivpn.test'] }),
    client: await issueCert(ca, { cn: 'bench', kind: 'client' }),
  };
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`# DTLS record sealing: ${SIZE}-byte records, batches of ${BATCH}, ${SECONDS} s per cipher, one thread (= one core)`);
  console.log(`# node ${process.version}, addon linked to ${addon.opensslVersion}, ${cpu} (${os.cpus().length} cores)\n`);

  const rows: string[] = [];
  let opensslCmd = '';
  const misses: string[] = [];
  for (const suite of SUITES) {
    const { client, server } = await connect(suite, pki);
    measure(client, server, 0.3); // warm-up: caches, JIT, branch predictors
    const r = measure(client, server, SECONDS);
    client.destroy();
    server.destroy();
    const base = opensslSpeed(suite.evp);
    if (base) opensslCmd = base.cmd.replace(suite.evp, '<cipher>');
    const nodeRate = nodeCryptoSpeed(suite.nodeCipher, 1);
    rows.push(`| ${suite.label} | ${k(r.seal)} | ${k(r.open)} | ${k(r.both)} | ${gbit(r.seal)} | ${base ? k(base.rate) : 'n/a'} | ${k(nodeRate)} | ${ratio(r.seal, base?.rate)} | ${ratio(r.open, base?.rate)} |`);
    for (const [what, v] of [['seal', r.seal], ['open', r.open]] as const) {
      if (v < TARGET) misses.push(`${suite.label} ${what} ${k(v)}`);
    }
  }
  console.log('| cipher | seal rec/s | open rec/s | seal+open rec/s | seal Gbit/s | openssl speed rec/s | node:crypto rec/s | seal / openssl | open / openssl |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const row of rows) console.log(row);
  console.log('');
  console.log(`seal+open: one core doing both (records/s through a tunnel end that seals and the other that opens, on one core).`);
  console.log(`baseline: ${opensslCmd || 'openssl speed not available'}; node:crypto = createCipheriv + setAAD + update + final + getAuthTag per record.`);
  console.log(misses.length === 0
    ? `target ${k(TARGET)} records/s per core (seal and open): met`
    : `target ${k(TARGET)} records/s per core (seal and open): NOT met by ${misses.join(', ')}`);
}

main().catch((err) => {
  console.error(`bench failed: ${(err as Error).message}`);
  process.exit(1);
});
