// npm run bench:cost: the server's data path, counted in CPU instructions per packet.
//
// Seconds are useless for a before/after of a few percent on a loaded machine; the number of
// instructions a fixed piece of work executes is not (valgrind's callgrind counts them, the
// same whatever else the machine does). So this drives the server's two data-path callbacks
// itself, with fixed batches and no timing in between:
//
//   UDP -> TUN: `--batch` DTLS records (from an in-process client) handed to the server's
//               datagram callback, as its UDP reader would; the packets go to the TUN and
//               the kernel drops them (a blackhole route);
//   TUN -> UDP: `--batch` IP packets for the client put into the server's TUN read batch and
//               handed to its TUN callback; the sealed datagrams go to the client's socket.
//
// `--topology p2p` (or `subnet,p2p`: both in one run, and their ratio) runs the server with a
// TUN per session: the client's packets go to its link's TUN, and the TUN -> UDP batch goes to
// that link's TUN callback (the one its device calls), measured once the link is up.
//
// Each build (this checkout, and with --baseline DIR another checkout, e.g. a git worktree of
// an older commit after `bash scripts/deps.sh test`) runs twice under callgrind: with N and
// with 3N packets each way (`--packets N`) after the same warm-up. The difference of the two
// totals over the 2N packets is the cost of one packet each way: start-up, key and record
// making, handshake, JIT warm-up and whatever happens once after the measured packets cancel
// out. Inside a network namespace of its own (unshare -n -m: nothing to clean up, no name to
// collide with); the server runs as in production (its TUN, its UDP socket, its init script).
//
// What made earlier counts wrong: copying into the batches in the measured part (they are on
// SharedArrayBuffers in newer builds, which V8 copies into with relaxed atomic moves, several
// times memcpy's cost; the server's reader fills them in the kernel), so every record is
// copied in before; V8 inlining the server's callbacks into an optimized driver (the driver is
// kept unoptimized: in the server each callback is its own optimized root); V8's random hash
// seed, whose making costs a varying count (fixed); code compiled, flushed or deoptimized inside
// the window (a warm-up in both batch sizes, no flushing, a full collection before).
//
//   npm run bench:cost -- [--baseline DIR] [--topology subnet[,p2p]] [--packets N] [--warmup N] [--batch N[,N]] [--size BYTES] [--json FILE]
import { execFileSync, spawnSync } from 'child_process';
import * as dgram from 'dgram';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeLabPki } from '../src/pki/pki';
import { eachFlag } from './args';

const THIS_BUILD = path.resolve(__dirname, '..', '..');

type Topology = 'subnet' | 'p2p';

interface Options {
  baseline?: string; topologies: Topology[]; packets: number; warmup: number; batches: number[]; size: number; json?: string;
  /** Child mode: one run of one build, in the current process (under callgrind and unshare -n -m). */
  child?: { build: string; packets: number; batch: number; pki: string; topology: Topology };
}

function usage(): string {
  return 'usage: npm run bench:cost -- [--baseline DIR (another checkout of minivpn, built: before and after in one run)] [--topology subnet|p2p|subnet,p2p (default subnet; both: p2p / subnet per batch)] [--packets N (default 4000, each way)] [--warmup N (default 4000: that many in batches of one, then in batches of the measured size)] [--batch N[,N] (packets per callback, default 64,1)] [--size BYTES (IP packet size, default 1400)] [--json FILE]';
}

export function parseArgs(argv: string[]): Options {
  const o: Options = { topologies: ['subnet'], packets: 4000, warmup: 4000, batches: [64, 1], size: 1400 };
  let child: Options['child'] | undefined;
  eachFlag(argv, usage, (f) => {
    if (f.name === '--baseline') o.baseline = path.resolve(f.value());
    else if (f.name === '--topology') o.topologies = topologies(f.value());
    else if (f.name === '--packets') o.packets = f.number(1, 1_000_000);
    else if (f.name === '--warmup') o.warmup = f.number(0, 1_000_000);
    else if (f.name === '--batch') {
      o.batches = f.value().split(',').map((x) => Number(x));
      if (o.batches.some((b) => !Number.isInteger(b) || b < 1 || b > 64)) throw new Error(`bad --batch: expected integers from 1 to 64\n${usage()}`);
    } else if (f.name === '--size') o.size = f.number(64, 1400);
    else if (f.name === '--json') o.json = f.value();
    else if (f.name === '--child') child = { build: f.value(), packets: 0, batch: 0, pki: '', topology: 'subnet' };
    else if (f.name === '--child-topology' && child) child.topology = topologies(f.value())[0];
    else if (f.name === '--child-packets' && child) child.packets = f.number(0, 3_000_000);
    else if (f.name === '--child-batch' && child) child.batch = f.number(1, 64);
    else if (f.name === '--child-pki' && child) child.pki = f.value();
    else return false;
    return true;
  });
  if (child) o.child = child;
  return o;
}

/** "subnet", "p2p" or both, comma-separated, each once. */
function topologies(v: string): Topology[] {
  const ts = v.split(',');
  if (ts.length === 0 || ts.some((t) => t !== 'subnet' && t !== 'p2p') || new Set(ts).size !== ts.length) {
    throw new Error(`bad --topology "${v}": expected subnet, p2p or subnet,p2p\n${usage()}`);
  }
  return ts as Topology[];
}

// ---- the child: one build's server, driven ---------------------------------------------

/* eslint-disable @typescript-eslint/no-explicit-any */
type Mod = any;

const POOL = '10.77.0.0/24';
/** Where the client's packets go: dropped by the kernel without an answer (a blackhole route). */
const SINK = [10, 99, 0, 1];

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

/** An IPv4/UDP packet of `size` bytes, header checksum set. */
function ipPacket(size: number, src: number[], dst: number[]): Buffer {
  const p = Buffer.alloc(size);
  p[0] = 0x45;
  p.writeUInt16BE(size, 2);
  p[8] = 64;
  p[9] = 17;
  Buffer.from(src).copy(p, 12);
  Buffer.from(dst).copy(p, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  p.writeUInt16BE(~sum & 0xffff, 10);
  p.writeUInt16BE(40000, 20);
  p.writeUInt16BE(9, 22);
  p.writeUInt16BE(size - 20, 24);
  return p;
}

/** The client: a DTLS connection of the build under test over a plain UDP socket, up to the server's config. */
async function connectClient(req: (m: string) => Mod, pki: string): Promise<{ conn: Mod; sock: dgram.Socket; clientPort: number; address: string }> {
  const { DtlsContext } = req('dtls/dtls');
  const { PacketBatch } = req('batch');
  const { decodeControl, encodeControlFrame } = req('wire/control');
  const { FrameType } = req('wire/frame');
  const ctx = DtlsContext.fromFiles({ role: 'client', caFile: `${pki}/ca.crt`, certFile: `${pki}/clients/bench.crt`, keyFile: `${pki}/clients/bench.key`, mtu: 1400 });
  const conn = ctx.connect('server.minivpn.test');
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const clientPort = sock.address().port;
  const send = (d: Buffer): void => { sock.send(d, 11940, '127.0.0.1'); };
  const inb = new PacketBatch(1, 2048);
  const opened = new PacketBatch(64, 2048);
  let configured: (address: string) => void;
  const up = new Promise<string>((r) => (configured = r));
  sock.on('message', (m: Buffer) => {
    inb.clear();
    inb.push(m);
    opened.clear();
    conn.openSlot(inb, 0, opened);
    for (const d of conn.takeOutput() ?? []) send(d);
    for (let k = 0; k < opened.count; k++) {
      const f = opened.packet(k);
      if (f[0] !== FrameType.CONTROL) continue;
      const msg = decodeControl(f.subarray(1));
      if (msg.type === 'config') configured(msg.address);
    }
  });
  conn.handshake();
  for (const d of conn.takeOutput() ?? []) send(d);
  await waitFor(() => conn.state === 'open', 'the DTLS handshake');
  const hello = new PacketBatch(1, 2048);
  hello.push(encodeControlFrame({ type: 'hello', v: 1 }));
  const sealedHello = new PacketBatch(1, 2048);
  conn.seal(hello, 1, sealedHello);
  send(sealedHello.packet(0));
  const address = await withTimeout(up, 'the config');
  return { conn, sock, clientPort, address };
}

/**
 * One counted run: the server, its client, the records, then the measured loop. (Over 60
 * lines: one straight script whose closures share the batches; split, it would hand them all on.)
 */
async function child(c: NonNullable<Options['child']>, o: Options): Promise<void> {
  if (!c.pki) throw new Error('--child needs --child-pki DIR (the parent makes one)');
  const req = (m: string): Mod => require(path.join(c.build, 'dist', 'src', m));
  const { parseServerArgs } = req('config');
  const { VpnServer } = req('server/server');
  const { PacketBatch } = req('batch');
  const { UdpBatch } = req('conn/udp');
  const { FrameType } = req('wire/frame');
  req('log').setLevel('warn');

  sh('ip', ['link', 'set', 'lo', 'up']);
  // This namespace's devices in /sys (link-up checks them there); the mount namespace is the
  // child's own (unshare -m, private), so it goes with the process.
  sh('mount', ['-t', 'sysfs', 'sysfs', '/sys']);
  sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-cost-'));
  try {
    const pki = c.pki;
    const p2p = c.topology === 'p2p';
    const cfg = parseServerArgs([
      '--listen', '127.0.0.1:11940', '--pool', POOL, '--topology', c.topology, '--tun-name', p2p ? 'mvcost%d' : 'mvcost0',
      '--ca', `${pki}/ca.crt`, '--cert', `${pki}/server.crt`, '--key', `${pki}/server.key`,
      '--authorized-dir', `${pki}/authorized`, '--leases-file', `${dir}/leases.json`,
      '--status-socket', `${dir}/status.sock`, '--log-level', 'warn',
    ], {});
    const server = new VpnServer(cfg);
    await server.start();
    sh('ip', ['route', 'add', 'blackhole', `${SINK.join('.')}/32`]);

    // (With p2p the server sends the config once the link's link-up run is done: it is up now.)
    const { conn, sock, clientPort, address } = await connectClient(req, pki);
    const clientAddr = address.split('.').map(Number);
    const tunSide = tunCallback(server, p2p);

    // Every record the run needs, sealed and put into the datagram batch before (the client's
    // cost and the copying are then the same whatever N; a copy into a SharedArrayBuffer, which
    // the newer builds' batches are on, costs V8 several times a plain one, and the server
    // itself never copies there: its reader does, in the kernel).
    const total = 2 * o.warmup + 3 * o.packets; // (the same in every run: what the longest one needs)
    const rx = new UdpBatch(total, 2048);
    const frame = Buffer.concat([Buffer.from([FrameType.DATA]), ipPacket(o.size, clientAddr, SINK)]);
    const frames = new PacketBatch(64, 2048);
    const sealed = new PacketBatch(64, 2048);
    const recOff = new Uint32Array(total), recLen = new Uint32Array(total);
    for (let n = 0; n < total; n += 64) {
      frames.clear();
      for (let k = 0; k < Math.min(64, total - n); k++) frames.push(frame);
      conn.seal(frames, frames.count, sealed);
      for (let k = 0; k < sealed.count; k++) {
        recOff[n + k] = (n + k) * 2048;
        recLen[n + k] = sealed.lens[k];
        sealed.buf.copy(rx.buf, (n + k) * 2048, sealed.offs[k], sealed.offs[k] + sealed.lens[k]);
      }
    }
    sock.setRecvBufferSize?.(65536);

    // What the server's readers would fill: records from the client's address (entries 0..batch-1
    // point at the next records), and TUN packets for the client (the same ones each batch: the
    // server only writes the frame header into the headroom in front of them).
    const from = Buffer.alloc(16);
    from[10] = from[11] = 0xff;
    Buffer.from([127, 0, 0, 1]).copy(from, 12);
    for (let k = 0; k < 64; k++) { from.copy(rx.addrs, 16 * k); rx.ports[k] = clientPort; }
    const tunRx = tunSide.rx;
    const down = ipPacket(o.size, SINK, clientAddr);
    // (In the last slots: a TUN read after a write of a small batch, latency.ts, fills the first ones.)
    const slot = (k: number): number => (tunRx.capacity - 1 - k) * tunRx.slotSize + 8;
    const now = Math.floor(performance.now());
    // One batch each way. Never optimized (below): V8 would inline the server's callbacks into
    // it, which is not how they run in the server, where each is its own optimized root.
    const batch = (next: number, b: number): void => {
      for (let k = 0; k < b; k++) {
        rx.offs[k] = recOff[next + k];
        rx.lens[k] = recLen[next + k];
      }
      rx.count = b;
      server.onDatagrams(rx, now);
      for (let k = 0; k < b; k++) {
        tunRx.offs[k] = slot(k);
        tunRx.lens[k] = down.length;
      }
      tunRx.count = b;
      tunSide.deliver(tunRx, now);
    };
    neverOptimize(batch);
    const run = (count: number, next: number, size = c.batch): number => {
      for (let k = 0; k < size; k++) down.copy(tunRx.buf, slot(k)); // (again: a TUN read may have landed there)
      for (let done = 0; done < count; done += size) {
        const b = Math.min(size, count - done);
        batch(next, b);
        next += b;
      }
      return next;
    };
    // Warm-up: first a packet per batch, so that every function on the path, the per-batch
    // ones too, is called often enough for V8 to optimize it; then batches of the measured
    // size, so that the optimized code has settled for them. (Compiling, or a deoptimization,
    // after the warm-up would land in the difference.)
    let next = run(o.warmup, run(o.warmup, 0, 1));
    // A full collection now, in every run: the heap is then the same when the measured part
    // starts, and a collection in it is one that part's own allocations caused. (Without, a
    // collection the setup had made due falls in or out of the window by chance.)
    const gc = (globalThis as { gc?: () => void }).gc;
    if (gc) { gc(); gc(); }
    if (process.env.MINIVPN_COST_TRACE) process.stderr.write('[cost] warm-up done\n'); // (with --trace-opt: what was still compiled after)
    next = run(c.packets, next);
    if (process.env.MINIVPN_COST_TRACE) process.stderr.write('[cost] measured part done\n');
    // Each record was opened once and routed: anything else would make the count meaningless.
    const st = server.snapshot();
    const cl = st.clients[0] ?? {};
    process.stdout.write(`${JSON.stringify({ result: { build: c.build, packets: c.packets, batch: c.batch, records: next, rxPackets: cl.rxPackets, txPackets: cl.txPackets, drops: st.drops } })}\n`);
    sock.close();
    await server.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}

/**
 * Where the TUN -> UDP batch goes: the callback the TUN's reads call (the same function as in
 * the server: the shared TUN's, or with p2p the session's link's; that link up).
 */
function tunCallback(server: Mod, p2p: boolean): { rx: Mod; deliver: (b: Mod, now: number) => boolean } {
  const links = [...(server.links?.open ?? [])];
  if (p2p && (links.length !== 1 || links[0].state !== 'up')) {
    throw new Error(`p2p: expected one link up, found ${links.map((l: Mod) => `${l.name} ${l.state}`).join(', ') || 'none'}`);
  }
  const dev = p2p ? links[0].dev : server.tun;
  const cb = dev.onBatch; // (Tun's private field: what its reads hand their batches to)
  if (typeof cb !== 'function') {
    // (builds whose Tun keeps it elsewhere: the server's callback itself)
    if (!p2p && typeof server.onTunBatch === 'function') return { rx: dev.rx, deliver: (b, now) => server.onTunBatch(b, now) };
    throw new Error(`${dev.name} has no read callback`);
  }
  return { rx: dev.rx, deliver: cb };
}

/** %NeverOptimizeFunction (the child runs with --allow-natives-syntax; without it, nothing). */
function neverOptimize(f: (...args: never[]) => unknown): void {
  try {
    new Function('f', '%NeverOptimizeFunction(f)')(f);
  } catch {
    // (not under the parent's flags: the driver is then optimized too)
  }
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const until = Date.now() + 60_000;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), 60_000).unref())]);
}

// ---- the parent: callgrind runs and the arithmetic ---------------------------------------

interface Run { instructions: number; compiling: number; result: Record<string, unknown> }

/** Instructions spent in V8's optimizing compiler (callgrind_annotate, per function). */
function compilingIn(file: string): number {
  const r = spawnSync('callgrind_annotate', ['--inclusive=no', '--threshold=100', file], { encoding: 'utf8', maxBuffer: 256 << 20 });
  let n = 0;
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = /^\s*([\d,]+) .*v8::internal::compiler::/.exec(line);
    if (m) n += Number(m[1].replace(/,/g, ''));
  }
  return n;
}

/**
 * Node's flags for a counted run: V8's compiler on the main thread (no background threads to
 * interleave), gc() for the driver, a fixed hash seed (the random one costs a varying number of
 * instructions to make), no flushing of code that V8 finds idle during a collection (a flush in
 * the measured part brings a recompile into the count), and the driver kept unoptimized.
 */
const CHILD_FLAGS = ['--single-threaded', '--expose-gc', '--hash-seed=1', '--random-seed=1', '--no-flush-bytecode', '--no-flush-baseline-code', '--allow-natives-syntax'];

/** One child under callgrind in a namespace of its own; its total instruction count. */
function counted(build: string, topology: Topology, packets: number, batch: number, pki: string, o: Options): Run {
  const out = path.join(os.tmpdir(), `minivpn-cost-${process.pid}-${Date.now()}.callgrind`);
  const args = [
    '-n', '-m', 'valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`, '--quiet',
    process.execPath, ...CHILD_FLAGS, __filename, '--child', build, '--child-packets', String(packets), '--child-batch', String(batch),
    '--child-pki', pki, '--child-topology', topology,
    '--warmup', String(o.warmup), '--packets', String(o.packets), '--size', String(o.size),
  ];
  const r = spawnSync('unshare', args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  try {
    if (r.status !== 0) throw new Error(`the run of ${build} failed (${r.status}): ${r.stderr.trim().split('\n').slice(-5).join(' | ')}`);
    const line = r.stdout.split('\n').find((l) => l.startsWith('{"result"'));
    if (!line) throw new Error(`the run of ${build} printed no result: ${r.stdout.slice(-500)}`);
    const summary = /^summary:\s+(\d+)/m.exec(fs.readFileSync(out, 'utf8'));
    if (!summary) throw new Error(`no summary line in ${out}`);
    return { instructions: Number(summary[1]), compiling: compilingIn(out), result: JSON.parse(line).result };
  } finally {
    fs.rmSync(out, { force: true });
  }
}

/** Instructions per packet each way: (run with 3N packets - run with N) / 2N. */
function perPacket(build: string, topology: Topology, batch: number, pki: string, o: Options): { perPacket: number; compiling: number } {
  const runs = [o.packets, 3 * o.packets].map((n) => {
    const r = counted(build, topology, n, batch, pki, o);
    const res = r.result as { records: number; rxPackets: number; txPackets: number };
    // Every record opened and its packet passed on, every TUN packet sealed: else the count means nothing.
    const want = 2 * o.warmup + n;
    // (p2p: the kernel's own few packets on the new link, IPv6 router solicitation and MLD, go
    // to the client too, as link-local traffic does there; the shared TUN drops them.)
    const kernels = topology === 'p2p' ? 8 : 0;
    if (res.records !== want || res.rxPackets !== want || res.txPackets < want || res.txPackets > want + kernels) {
      throw new Error(`the run of ${build} (${topology}) with ${n} packets moved ${res.rxPackets} up and ${res.txPackets} down, not ${want}`);
    }
    return r;
  });
  return {
    perPacket: (runs[1].instructions - runs[0].instructions) / (2 * o.packets),
    compiling: (runs[1].compiling - runs[0].compiling) / (2 * o.packets),
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (o.child) return child(o.child, o);
  const builds = [THIS_BUILD, ...(o.baseline ? [o.baseline] : [])];
  // One PKI for every run (making keys costs a varying number of instructions).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-cost-pki-'));
  const pki = path.join(dir, 'pki');
  await writeLabPki(pki, { clients: ['bench'], serverName: 'server.minivpn.test', days: 2 });
  try {
    await measure(builds, pki, o);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(builds: string[], pki: string, o: Options): Promise<void> {
  console.log(`[cost] instructions per packet (one each way), server data path; ${o.packets} packets after 2 x ${o.warmup} of warm-up, ${o.size}-byte IP packets`);
  type Row = { build: string; topology: Topology; batch: number; perPacket: number; compiling: number };
  const rows: Row[] = [];
  const name = (build: string): string => (build === THIS_BUILD ? 'this build' : build);
  for (const batch of o.batches) {
    for (const build of builds) {
      for (const topology of o.topologies) {
        const { perPacket: n, compiling } = perPacket(build, topology, batch, pki, o);
        rows.push({ build, topology, batch, perPacket: n, compiling });
        console.log(`[cost] batch ${batch}: ${name(build)}, ${topology}: ${Math.round(n)} instructions per packet` +
          ` (of them ${Math.round(compiling)} in V8's compiler)`);
        // The compiler at work inside the window: code still being optimized (or again, after a
        // deoptimization); the figure is then not the steady state's.
        if (Math.abs(compiling) > 0.01 * n) console.log(`[cost] warning: more than 1 % of that is compiling; a longer --warmup may settle it`);
      }
      if (o.topologies.length === 2) {
        const [sub, p2p] = (['subnet', 'p2p'] as const).map((t) => rows.find((r) => r.batch === batch && r.build === build && r.topology === t)!);
        console.log(`[cost] batch ${batch}: ${name(build)}: p2p / subnet = ${(p2p.perPacket / sub.perPacket).toFixed(3)}`);
      }
    }
    if (o.baseline) {
      const mine = rows.filter((r) => r.batch === batch && r.build === THIS_BUILD);
      for (const a of mine) {
        const b = rows.find((r) => r.batch === batch && r.build !== THIS_BUILD && r.topology === a.topology)!;
        console.log(`[cost] batch ${batch}, ${a.topology}: this build / baseline = ${(a.perPacket / b.perPacket).toFixed(3)}`);
      }
    }
  }
  if (o.json) fs.writeFileSync(o.json, JSON.stringify({ options: { ...o, child: undefined }, rows }, null, 2));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`[cost] ${(err as Error).message}`);
    process.exit(1);
  });
}
