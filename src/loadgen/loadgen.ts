// A load generator: many simulated VPN clients in one Node process, without TUN devices.
//
// Each simulated session is what the real client (src/client/client.ts) does on the wire,
// minus the TUN: its own connected UDP socket, a native DTLS client connection, the
// `hello` control frame, waiting for `config`, answering KEEPALIVE with KEEPALIVE_REPLY
// (and sending its own KEEPALIVE after keepaliveSec of silence), and, on request, DATA
// frames carrying ICMP echo requests from its assigned address. It counts echo replies.
//
// One process drives all sessions, so they share the receive and seal buffers: a socket's
// datagrams are read and handled synchronously in one callback, and nothing keeps a
// reference to those buffers afterwards.
//
// The process must run where the server is reachable (in the lab: inside a client
// namespace), so the benchmark and the test start it as a worker with `runWorker` and talk
// to it over stdin/stdout, one JSON command per line (WorkerHandle is the other end).
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { PacketBatch } from '../batch';
import { UdpBatch, UdpSocket } from '../conn/udp';
import { DtlsChannel } from '../session/channel';
import { DtlsContext } from '../dtls/dtls';
import { waitForLine } from '../lab/topology';
import { logger } from '../log';
import { ConfigMsg, decodeControl, encodeControl } from '../wire/control';
import { FrameType, encodeFrame, frameType } from '../wire/frame';
import { buildEchoRequest, ICMP_ECHO_REPLY } from '../wire/icmp';
import { checkIp, ipv4Dst, ipv4HeaderLength, ipv4Protocol, ipv4ToInt, PROTO_ICMP } from '../wire/ip';

const log = logger('loadgen');
const SLOT = 2048;
// Small shared batches: a simulated client receives a few datagrams at a time.
const BATCH = 16;

export interface ClientIdentity {
  cn: string;
  /** PEM text. */
  cert: string;
  key: string;
}

export interface LoadGenOptions {
  server: { host: string; port: number };
  /** The name the server certificate must carry. */
  serverName: string;
  /** PEM text of the CA. */
  ca: string;
  /** Give up on a session that has no config after this long (default 30 s). */
  connectTimeoutMs?: number;
  /**
   * Send our own KEEPALIVE after keepaliveSec of silence, as the real client does (default
   * true). Off, a session only answers the server's keepalives: a test can then tell from
   * the server's status that the answers arrive.
   */
  clientKeepalives?: boolean;
}

/** Reads pki/clients/<cn>.crt and .key (the layout writeLabPki makes). */
export function loadIdentity(pkiDir: string, cn: string): ClientIdentity {
  const f = (ext: string) => path.join(pkiDir, 'clients', `${cn}.${ext}`);
  return { cn, cert: fs.readFileSync(f('crt'), 'utf8'), key: fs.readFileSync(f('key'), 'utf8') };
}

export interface PingStats {
  sent: number;
  received: number;
  lost: number;
  maxRttMs: number;
  avgRttMs: number;
}

type SessionState = 'new' | 'connecting' | 'up' | 'closed';

/** The buffers all sessions of a generator share (see the note at the top). */
class Shared {
  readonly udpRx = new UdpBatch(BATCH, SLOT);
  readonly rx = new PacketBatch(BATCH, SLOT);
  readonly sealOut = new PacketBatch(4, SLOT);
  readonly small = new PacketBatch(1, SLOT);
}

/** One simulated client. */
export class SimSession {
  state: SessionState = 'new';
  config: ConfigMsg | null = null;
  /** ClientHello sent -> config received, in ms (of the latest connect). */
  tunnelUpMs = 0;
  keepalivesAnswered = 0;
  keepalivesSent = 0;
  error: string | null = null;
  private ctx: DtlsContext | null = null;
  private sock: UdpSocket | null = null;
  private ch: DtlsChannel | null = null;
  private hsTimer: NodeJS.Timeout | null = null;
  private lastSent = 0;
  private settle: ((err: Error | null) => void) | null = null;
  // Echo requests in flight: seq -> send time (performance.now()).
  private readonly inFlight = new Map<number, number>();
  /** Called when the last request in flight gets its reply (see answered()). */
  private onAnswered: (() => void) | null = null;
  private readonly icmpId: number;
  readonly ping: PingStats = { sent: 0, received: 0, lost: 0, maxRttMs: 0, avgRttMs: 0 };
  private rttSum = 0;

  constructor(readonly id: ClientIdentity, private readonly opts: LoadGenOptions, private readonly shared: Shared, index: number) {
    this.icmpId = (index + 1) & 0xffff;
  }

  get address(): string | null { return this.config?.address ?? null; }

  /** DTLS handshake, hello, config. Resolves with the config; rejects on refuse, failure or timeout. */
  connect(): Promise<ConfigMsg> {
    if (this.state === 'connecting' || this.state === 'up') return Promise.reject(new Error(`${this.id.cn}: already ${this.state}`));
    // The context (certificate, key, CA) is made once per identity, as the real client does at startup.
    this.ctx ??= new DtlsContext({ role: 'client', ca: this.opts.ca, cert: this.id.cert, key: this.id.key, mtu: 1472 });
    this.state = 'connecting';
    this.config = null;
    this.error = null;
    let sock: UdpSocket;
    try {
      sock = UdpSocket.connect(this.opts.server.host, this.opts.server.port);
    } catch (err) {
      this.state = 'closed';
      return Promise.reject(new Error(`${this.id.cn}: cannot reach ${this.opts.server.host}: ${(err as Error).message}`));
    }
    this.sock = sock;
    const sh = this.shared;
    sock.onDatagrams(sh.udpRx, (rx) => {
      for (let i = 0; i < rx.count; i++) this.onDatagram(rx, i);
    }, (errno) => this.fail(`network error (errno ${errno})`));
    const done = new Promise<ConfigMsg>((resolve, reject) => {
      const t = setTimeout(() => this.fail(`no config within ${this.opts.connectTimeoutMs ?? 30_000} ms`), this.opts.connectTimeoutMs ?? 30_000);
      this.settle = (err) => {
        clearTimeout(t);
        this.settle = null;
        if (err) reject(err); else resolve(this.config!);
      };
    });
    const t0 = performance.now();
    this.t0 = t0;
    const conn = this.ctx.connect(this.opts.serverName);
    this.ch = new DtlsChannel(conn, sh.rx);
    conn.handshake(); // queues the ClientHello
    this.flush();
    return done;
  }
  private t0 = 0;

  private fail(why: string): void {
    if (this.state === 'closed') return;
    this.error = why;
    const settle = this.settle;
    this.teardown();
    settle?.(new Error(`${this.id.cn}: ${why}`));
  }

  private onDatagram(rx: PacketBatch, i: number): void {
    const ch = this.ch;
    if (!ch) return;
    const wasOpen = ch.state === 'open';
    this.shared.rx.count = 0; // frames are handled right away: the shared batch starts empty
    const frames = ch.receive(rx, i);
    if (!wasOpen) {
      this.flush();
      const st: string = ch.state;
      if (st === 'failed') return this.fail(`DTLS handshake failed: ${ch.error}`);
      if (st === 'open') this.sendFrame(encodeFrame(FrameType.CONTROL, encodeControl({ type: 'hello', v: 1 })));
    }
    const fb = frames.buf;
    for (let k = frames.first; k < frames.count; k++) {
      const o = frames.offs[k], l = frames.lens[k];
      const type = frameType(fb, o, l);
      if (type === FrameType.KEEPALIVE) {
        this.keepalivesAnswered++;
        this.sendFrame(encodeFrame(FrameType.KEEPALIVE_REPLY));
      } else if (type === FrameType.DATA) {
        this.onData(fb, o + 1, l - 1);
      } else if (type === FrameType.CONTROL) {
        const msg = decodeControl(fb.subarray(o + 1, o + l));
        if (msg.type === 'config' && this.state === 'connecting') {
          this.tunnelUpMs = performance.now() - this.t0;
          this.config = msg;
          this.state = 'up';
          this.settle?.(null);
        } else if (msg.type === 'refuse' || msg.type === 'bye') {
          return this.fail(`server said ${msg.type}: ${msg.reason}`);
        } else if (msg.type === 'invalid') {
          log.warn('bad control message from server', { cn: this.id.cn, error: msg.error });
        }
      } else if (type === FrameType.CLOSE) {
        return this.fail('server closed the tunnel');
      }
    }
    const after: string = ch.state; // (re-read: receive() may have seen close_notify)
    if (wasOpen && after === 'closed') this.fail('server closed the connection');
  }

  // An echo reply to one of our requests: check it is for us, take the RTT.
  private onData(buf: Buffer, off: number, len: number): void {
    if (checkIp(buf, off, len) !== null || ipv4Protocol(buf, off) !== PROTO_ICMP || !this.config) return;
    if (ipv4Dst(buf, off) !== ipv4ToInt(this.config.address)) return;
    const p = off + ipv4HeaderLength(buf, off);
    if (buf[p] !== ICMP_ECHO_REPLY || buf.readUInt16BE(p + 4) !== this.icmpId) return;
    const sentAt = this.inFlight.get(buf.readUInt16BE(p + 6));
    if (sentAt === undefined) return; // a duplicate, or one we already gave up on
    this.inFlight.delete(buf.readUInt16BE(p + 6));
    const rtt = performance.now() - sentAt;
    this.ping.received++;
    this.rttSum += rtt;
    this.ping.avgRttMs = this.rttSum / this.ping.received;
    if (rtt > this.ping.maxRttMs) this.ping.maxRttMs = rtt;
    if (this.inFlight.size === 0) this.onAnswered?.();
  }

  /** Resolves when every request sent so far has its reply, or after timeoutMs, whichever is first. */
  answered(timeoutMs: number): Promise<void> {
    if (this.inFlight.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { clearTimeout(t); this.onAnswered = null; resolve(); };
      const t = setTimeout(done, timeoutMs);
      this.onAnswered = done;
    });
  }

  /** Sends one ICMP echo request from our tunnel address to dst, inside a DATA frame. */
  sendPing(dst: string, seq: number, payloadBytes = 56): void {
    if (this.state !== 'up' || !this.config) throw new Error(`${this.id.cn}: not up`);
    const pkt = buildEchoRequest({ src: this.config.address, dst, id: this.icmpId, seq, payload: Buffer.alloc(payloadBytes, 0x61) });
    this.inFlight.set(seq & 0xffff, performance.now());
    this.ping.sent++;
    this.sendFrame(Buffer.concat([Buffer.from([FrameType.DATA]), pkt]));
  }

  /** Requests with no reply so far count as lost (call after waiting long enough). */
  settlePings(): PingStats {
    this.ping.lost = this.ping.sent - this.ping.received;
    this.inFlight.clear();
    return { ...this.ping };
  }

  resetPings(): void {
    Object.assign(this.ping, { sent: 0, received: 0, lost: 0, maxRttMs: 0, avgRttMs: 0 });
    this.rttSum = 0;
    this.inFlight.clear();
  }

  /** The real client's keepalive rule: send KEEPALIVE after keepaliveSec without sending anything. */
  tick(now: number): void {
    if (this.state !== 'up' || !this.config || this.config.keepaliveSec <= 0 || this.opts.clientKeepalives === false) return;
    if (now - this.lastSent >= this.config.keepaliveSec * 1000) {
      this.keepalivesSent++;
      this.sendFrame(encodeFrame(FrameType.KEEPALIVE));
    }
  }

  private sendFrame(frame: Buffer): void {
    const ch = this.ch, sock = this.sock, sh = this.shared;
    if (!ch || !sock || ch.state !== 'open') return;
    sh.small.clear();
    if (!sh.small.push(frame)) throw new Error(`control frame of ${frame.length} bytes exceeds ${SLOT}`);
    sock.sendBatch(ch.seal(sh.small, 1, sh.sealOut), null);
    this.lastSent = Date.now();
    this.flush();
  }

  // Sends what DTLS queued (handshake flights, alerts) and runs its retransmission timer.
  private flush(): void {
    const ch = this.ch, sock = this.sock;
    if (!ch || !sock) return;
    const out = ch.takeOutput();
    if (out) for (const d of out) sock.send(d, null);
    if (this.hsTimer) { clearTimeout(this.hsTimer); this.hsTimer = null; }
    if (ch.state === 'handshaking') {
      const ms = ch.timeoutMs();
      if (ms >= 0) {
        this.hsTimer = setTimeout(() => {
          this.hsTimer = null;
          ch.onTimeout();
          this.flush();
          if (ch.state === 'failed') this.fail(`DTLS handshake failed: ${ch.error}`);
        }, Math.max(ms, 1));
      }
    }
  }

  /** Orderly goodbye (bye + close_notify), then frees the socket and connection. */
  close(): void {
    if (this.state === 'up') {
      this.sendFrame(encodeFrame(FrameType.CONTROL, encodeControl({ type: 'bye', v: 1, reason: 'load generator done' })));
      this.ch?.shutdown();
      this.flush();
    }
    const settle = this.settle;
    this.teardown();
    settle?.(new Error(`${this.id.cn}: closed`));
  }

  private teardown(): void {
    if (this.hsTimer) clearTimeout(this.hsTimer);
    this.hsTimer = null;
    this.ch?.destroy();
    this.ch = null;
    this.sock?.close();
    this.sock = null;
    this.state = 'closed';
  }
}

export interface RampResult {
  requested: number;
  up: number;
  failed: number;
  errors: string[];
  ms: number;
  handshakesPerSec: number;
  tunnelUpMs: { median: number; p95: number; max: number };
  distinctAddresses: number;
}

export function median(xs: number[]): number { return quantile(xs, 0.5); }
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

/** Many sessions to one server, with one keepalive timer for all of them. */
export class LoadGenerator {
  readonly sessions = new Map<string, SimSession>();
  private readonly shared = new Shared();
  private timer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;

  constructor(readonly opts: LoadGenOptions) {
    // Keepalives as the real client sends them; checked 4 times a second for sub-second settings.
    this.timer = setInterval(() => {
      const now = Date.now();
      for (const s of this.sessions.values()) s.tick(now);
    }, 250);
    this.timer.unref(); // the sockets keep the process alive while sessions exist
  }

  session(id: ClientIdentity): SimSession {
    let s = this.sessions.get(id.cn);
    if (!s) this.sessions.set(id.cn, (s = new SimSession(id, this.opts, this.shared, this.sessions.size)));
    return s;
  }

  /** Brings up one session per identity, at most `concurrency` handshakes at a time. */
  async rampUp(ids: ClientIdentity[], concurrency = 64): Promise<RampResult> {
    const t0 = performance.now();
    const errors: string[] = [];
    const times: number[] = [];
    let next = 0;
    const lane = async () => {
      while (next < ids.length) {
        const s = this.session(ids[next++]);
        try {
          await s.connect();
          times.push(s.tunnelUpMs);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, ids.length)) }, lane));
    const ms = performance.now() - t0;
    const addrs = new Set(ids.map((id) => this.sessions.get(id.cn)?.address).filter((a): a is string => !!a));
    return {
      requested: ids.length, up: times.length, failed: errors.length, errors: errors.slice(0, 10), ms,
      handshakesPerSec: times.length / (ms / 1000),
      tunnelUpMs: { median: median(times), p95: quantile(times, 0.95), max: Math.max(0, ...times) },
      distinctAddresses: addrs.size,
    };
  }

  /** Tunnel-up time of one identity, `count` times in a row (each session closed before the next). */
  async tunnelUpTimes(id: ClientIdentity, count: number): Promise<number[]> {
    const s = this.session(id);
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      await s.connect();
      out.push(s.tunnelUpMs);
      s.close();
      // Let the server see the close before the same CN connects again.
      await new Promise((r) => setTimeout(r, 20));
    }
    return out;
  }

  /** Pings dst from one session every intervalMs until stopPinging(). */
  startPinging(cn: string, dst: string, intervalMs: number): void {
    const s = this.sessions.get(cn);
    if (!s || s.state !== 'up') throw new Error(`ping: session ${cn} is not up`);
    this.stopPingTimer();
    s.resetPings();
    let seq = 0;
    this.pingTimer = setInterval(() => { if (s.state === 'up') s.sendPing(dst, ++seq); }, intervalMs);
  }

  /** Stops, waits for the last replies (at most graceMs), and returns the counts. */
  async stopPinging(cn: string, graceMs = 1000): Promise<PingStats> {
    this.stopPingTimer();
    const s = this.sessions.get(cn);
    if (!s) throw new Error(`ping: no session ${cn}`);
    await s.answered(graceMs);
    return s.settlePings();
  }

  private stopPingTimer(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  stats(): { up: number; addresses: string[]; keepalivesAnswered: number; keepalivesSent: number; minKeepalivesAnswered: number; pingsSent: number } {
    let up = 0, ka = 0, ks = 0, minKa = Infinity, pings = 0;
    const addresses: string[] = [];
    for (const s of this.sessions.values()) {
      if (s.state !== 'up') continue;
      up++;
      ka += s.keepalivesAnswered;
      ks += s.keepalivesSent;
      pings += s.ping.sent;
      minKa = Math.min(minKa, s.keepalivesAnswered);
      addresses.push(s.address!);
    }
    return { up, addresses, keepalivesAnswered: ka, keepalivesSent: ks, minKeepalivesAnswered: up ? minKa : 0, pingsSent: pings };
  }

  /** Closes every session (bye + close_notify) and stops the timers. */
  async close(): Promise<void> {
    this.stopPingTimer();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const s of this.sessions.values()) s.close();
    // The datagrams are in the kernel already; a moment for the loop to settle.
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---- worker: the generator as a child process driven over stdin/stdout --------------------

/** What a worker is told, one JSON object per stdin line. */
export type WorkerCommand =
  | { cmd: 'ramp'; cns: string[]; concurrency?: number }
  | { cmd: 'tunnel-up'; cn: string; count: number }
  | { cmd: 'ping-start'; cn: string; dst: string; intervalMs: number }
  | { cmd: 'ping-stop'; cn: string; graceMs?: number }
  | { cmd: 'stats' }
  | { cmd: 'close' };

const RESULT = '@result ';

export interface WorkerArgs { pki: string; server: { host: string; port: number }; serverName: string; clientKeepalives: boolean }

/** Parses `--pki DIR --server HOST:PORT --server-name NAME [--no-client-keepalives]`; errors name the option. */
export function parseWorkerArgs(argv: string[]): WorkerArgs {
  const get = (flag: string): string => {
    const i = argv.indexOf(flag);
    if (i < 0 || argv[i + 1] === undefined) throw new Error(`worker: ${flag} is required`);
    return argv[i + 1];
  };
  const server = get('--server');
  const m = /^([0-9.]+):(\d{1,5})$/.exec(server);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new Error(`worker: --server must be IPv4:PORT (got ${JSON.stringify(server)})`);
  return { pki: get('--pki'), server: { host: m[1], port: Number(m[2]) }, serverName: get('--server-name'), clientKeepalives: !argv.includes('--no-client-keepalives') };
}

/**
 * Runs a generator that obeys commands from stdin and answers each with one line
 * "@result {json}" on stdout ({error} when the command failed). Exits after 'close' or
 * when stdin ends (the parent is gone).
 */
export async function runWorker(a: WorkerArgs): Promise<void> {
  const gen = new LoadGenerator({
    server: a.server, serverName: a.serverName, ca: fs.readFileSync(path.join(a.pki, 'ca.crt'), 'utf8'), clientKeepalives: a.clientKeepalives,
  });
  const id = (cn: string) => loadIdentity(a.pki, cn);
  const reply = (o: unknown) => process.stdout.write(RESULT + JSON.stringify(o) + '\n');
  const rl = readline.createInterface({ input: process.stdin });
  process.stdout.write('@ready\n');
  for await (const line of rl) {
    if (!line.trim()) continue;
    let c: WorkerCommand;
    try {
      c = JSON.parse(line) as WorkerCommand;
    } catch {
      reply({ error: 'not JSON' });
      continue;
    }
    try {
      if (c.cmd === 'ramp') reply(await gen.rampUp(c.cns.map(id), c.concurrency));
      else if (c.cmd === 'tunnel-up') reply({ ms: await gen.tunnelUpTimes(id(c.cn), c.count) });
      else if (c.cmd === 'ping-start') {
        if (gen.sessions.get(c.cn)?.state !== 'up') await gen.session(id(c.cn)).connect();
        gen.startPinging(c.cn, c.dst, c.intervalMs);
        reply({ address: gen.sessions.get(c.cn)!.address });
      } else if (c.cmd === 'ping-stop') reply(await gen.stopPinging(c.cn, c.graceMs));
      else if (c.cmd === 'stats') reply(gen.stats());
      else if (c.cmd === 'close') {
        await gen.close();
        reply({ closed: true });
        break;
      } else reply({ error: `unknown command ${JSON.stringify((c as { cmd?: unknown }).cmd)}` });
    } catch (err) {
      reply({ error: (err as Error).message });
    }
  }
  rl.close();
  await gen.close();
}

/** The parent's end of a worker: send a command, await its result line. */
export class WorkerHandle {
  constructor(readonly child: ChildProcess) {}

  async ready(timeoutMs = 15_000): Promise<void> {
    await waitForLine(this.child, /^@ready$/, timeoutMs);
  }

  /** One command at a time per worker (results are matched by order). */
  async call<T = Record<string, unknown>>(c: WorkerCommand, timeoutMs = 120_000): Promise<T> {
    this.child.stdin!.write(JSON.stringify(c) + '\n');
    const line = await waitForLine(this.child, /^@result /, timeoutMs);
    const r = JSON.parse(line.slice(RESULT.length)) as T & { error?: string };
    if (r.error) throw new Error(`worker ${c.cmd}: ${r.error}`);
    return r;
  }
}
