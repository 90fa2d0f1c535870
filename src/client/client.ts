// The VPN client: connect, verify the server, receive the config, bring up the TUN with
// its address, MTU and routes, then move packets. If the server goes away (restart,
// network loss) it reconnects by itself with a capped backoff and keeps its TUN and
// routes in place meanwhile, so traffic waits instead of leaking around the tunnel.
import dns from 'node:dns/promises';
import net from 'node:net';
import path from 'node:path';
import { BatchRing, PacketBatch } from '../batch';
import { ClientConfig } from '../config';
import { UdpBatch, UdpSocket } from '../conn/udp';
import { Channel, DtlsChannel, PlaintextChannel } from '../device/channel';
import { TunQueue } from '../device/tunqueue';
import { DtlsContext } from '../dtls/dtls';
import { logger } from '../log';
import { monotonicMs } from '../clock';
import { handoffStats, setHandoffYield } from '../os/handoff';
import { runInitScript } from '../os/scripts';
import { Tun } from '../tun/tun';
import { ConfigMsg, decodeControl, encodeControl } from '../wire/control';
import { FRAME_OVERHEAD, FrameType, closeReason, encodeFrame, frameType, looksLikeDtls, looksLikeFrame } from '../wire/frame';

const log = logger('client');
const BATCH = 64;
const SLOT = 2048;
const CONFIG_WAIT_MS = 10_000;

type Outcome = { kind: 'retry'; why: string } | { kind: 'fatal'; why: string } | { kind: 'stopped' };

export class VpnClient {
  private ctx: DtlsContext | null = null;
  private sock: UdpSocket | null = null;
  private readonly udpRx = new UdpBatch(BATCH, SLOT);
  private channel: Channel | null = null;
  private tun: Tun | null = null;
  private applied: ConfigMsg | null = null;
  private serverIp = '';
  // Decrypted frames of one receive batch, and the TUN packets among them (written at its end).
  private readonly rx: PacketBatch;
  private readonly tunq: TunQueue;
  private readonly sealRing = new BatchRing(4, BATCH, SLOT);
  /** The packets of a TUN read with the frame header in front: entries into the TUN's buffer. */
  private tx: PacketBatch | null = null;
  private readonly small = new PacketBatch(1, SLOT);
  /** Times in monotonic ms (clock.ts). */
  private lastSeen = 0;
  private lastSent = 0;
  /** Monotonic ms of the current batch, set by each event callback: no clock read per packet. */
  private now = monotonicMs();
  private keepaliveMs = 10_000;
  private deadMs = 60_000;
  private stopped = false;
  private end: ((o: Outcome) => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private mismatchLogged = false;
  /**
   * Counters a student can look at in the log when the client stops. dropped: datagrams
   * discarded (garbage, unauthenticated, replays and forgeries), over all connections.
   */
  readonly stats = { rxPackets: 0, txPackets: 0, dropped: 0, groMerged: 0 };

  constructor(readonly cfg: ClientConfig) {
    this.tunq = new TunQueue(SLOT, cfg.tunGro);
    this.rx = this.tunq.frames;
    if (cfg.plaintext) {
      log.warn('INSECURE PLAINTEXT MODE: tunnel traffic is NOT encrypted or authenticated; for labs only');
    } else {
      this.ctx = DtlsContext.fromFiles({
        role: 'client', caFile: cfg.ca, certFile: cfg.cert, keyFile: cfg.key, keylogFile: cfg.keylog, mtu: 1472,
      });
    }
  }

  /** Runs until stop(); resolves with the exit code. */
  async run(): Promise<number> {
    setHandoffYield(this.cfg.handoffYield);
    let delay = this.cfg.reconnectMinSec;
    let attempt = 0;
    while (!this.stopped) {
      attempt++;
      const startedAt = monotonicMs();
      const o = await this.connectOnce(attempt);
      if (o.kind === 'stopped' || this.stopped) break;
      if (o.kind === 'fatal') {
        log.error(o.why);
        await this.teardown();
        return 1;
      }
      // A connection that lasted a while resets the backoff: this is a new problem.
      if (monotonicMs() - startedAt > 30_000) delay = this.cfg.reconnectMinSec;
      log.warn(`${o.why}; reconnecting in ${delay}s (attempt ${attempt + 1})`);
      await this.sleep(delay * 1000);
      delay = Math.min(delay * 2, this.cfg.reconnectMaxSec);
    }
    await this.teardown();
    return 0;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => { clearTimeout(t); resolve(); };
    });
  }
  private wake: () => void = () => undefined;

  private async connectOnce(attempt: number): Promise<Outcome> {
    const cfg = this.cfg;
    try {
      this.serverIp = net.isIP(cfg.server.host) ? cfg.server.host : (await dns.lookup(cfg.server.host)).address;
    } catch (err) {
      return { kind: 'retry', why: `cannot resolve ${cfg.server.host}: ${(err as Error).message}` };
    }
    let sock: UdpSocket;
    try {
      sock = UdpSocket.connect(this.serverIp, cfg.server.port, { gso: cfg.udpGso });
    } catch (err) {
      return { kind: 'retry', why: `cannot reach ${this.serverIp}: ${(err as Error).message}` };
    }
    this.sock = sock;
    log.info(`connecting to ${this.serverIp}:${cfg.server.port}`, { mode: cfg.plaintext ? 'plaintext' : 'dtls', attempt, ...(cfg.udpGso ? { udpGso: 'on' } : {}) });

    const outcome = new Promise<Outcome>((resolve) => (this.end = resolve));
    this.now = monotonicMs();
    sock.onDatagrams(this.udpRx, (rx, now) => {
      this.now = now;
      this.slow = false;
      // A connected socket only hears the server.
      for (let i = 0; i < rx.count; i++) this.onDatagram(rx, i);
      if (this.tunq.endBatch(this.tun, rx.count, now) !== false) this.slow = true; // the receive batch is done
      return this.slow; // false: only packets (BatchCallback in native.ts)
    }, (errno) => {
      // ECONNREFUSED: an ICMP port unreachable came back, nothing listens on the server's port.
      const why = errno === 111 ? 'the server port is closed (ICMP port unreachable)' : `network error (errno ${errno})`;
      if (this.channel?.state !== 'open') this.finish({ kind: 'retry', why });
    });

    if (this.ctx) {
      const conn = this.ctx.connect(cfg.serverName);
      this.channel = new DtlsChannel(conn, this.rx);
      conn.handshake();
      this.flushControl();
    } else {
      this.channel = new PlaintextChannel();
      this.sendHello();
    }
    this.lastSeen = this.now = monotonicMs();
    const configTimer = setTimeout(() => {
      if (!this.applied || this.channel?.state !== 'open') this.finish({ kind: 'retry', why: `no answer from the server within ${CONFIG_WAIT_MS / 1000}s` });
    }, CONFIG_WAIT_MS);
    this.timer = setInterval(() => this.onTick(), 1000);

    const o = await outcome;
    clearTimeout(configTimer);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.channel) {
      if (this.channel.state === 'open' && o.kind === 'stopped') {
        this.sendFrame(encodeFrame(FrameType.CONTROL, encodeControl({ type: 'bye', v: 1, reason: 'client stopping' })));
        this.channel.shutdown();
        this.flushControl();
      }
      this.stats.dropped += this.channel.dropped; // (replays, forgeries: counted by the channel)
      this.channel.destroy();
      this.channel = null;
    }
    await new Promise((r) => setTimeout(r, o.kind === 'stopped' ? 50 : 0));
    sock.close();
    this.sock = null;
    return o;
  }

  private finish(o: Outcome): void {
    const end = this.end;
    this.end = null;
    end?.(o);
  }

  private sendHello(): void {
    const cn = this.cfg.plaintext ? (this.cfg.plaintextCn ?? this.cfg.name ?? undefined) : undefined;
    this.sendFrame(encodeFrame(FrameType.CONTROL, encodeControl({ type: 'hello', v: 1, ...(cn ? { cn } : {}) })));
  }

  // ---- receive -------------------------------------------------------------------------

  /** Set when a receive batch did more than deliver packets (see onDatagrams' callback). */
  private slow = false;

  private onDatagram(rx: UdpBatch, i: number): void {
    const ch = this.channel;
    if (!ch) return;
    const dbuf = rx.buf, doff = rx.offs[i], dlen = rx.lens[i];
    if (ch.kind === 'dtls' && looksLikeFrame(dbuf, doff, dlen)) {
      this.slow = true;
      // Unauthenticated: it may end a handshake attempt with a clear reason, never a live
      // session, and it is not enough to give up for good (anyone who can send us a datagram
      // could make us): the client says why and tries again later.
      if (ch.state === 'open') { this.stats.dropped++; return; }
      const said = closeReason(dbuf.subarray(doff + 1, doff + dlen));
      this.mismatch(`the server answered in plaintext ("${said}"): it runs --insecure-plaintext, and this client requires DTLS`, false);
      return;
    }
    if (ch.kind === 'plaintext' && looksLikeDtls(dbuf, doff, dlen)) {
      this.slow = true;
      this.mismatch('the server answered with DTLS: it requires DTLS, and this client runs --insecure-plaintext', true);
      return;
    }
    const wasOpen = ch.state === 'open';
    this.tunq.makeRoom(this.tun); // room for this datagram's frames
    const frames = ch.receive(rx, i);
    if (!wasOpen) {
      this.slow = true;
      this.flushControl();
      const st: string = ch.state;
      if (st === 'failed') {
        // A refused certificate will be refused again: stop with the reason.
        this.finish({ kind: 'fatal', why: `DTLS handshake with ${this.serverIp} failed: ${ch.error}` });
        return;
      }
      if (st === 'open' && ch.kind === 'dtls') {
        const info = (ch as DtlsChannel).conn.info();
        log.info('DTLS handshake done', { version: info.version, cipher: info.cipher, server: (ch as DtlsChannel).conn.peer()?.cn });
        this.sendHello();
      }
    }
    this.lastSeen = this.now;
    const buf = frames.buf;
    for (let k = frames.first; k < frames.count; k++) {
      const off = frames.offs[k], len = frames.lens[k];
      const type = frameType(buf, off, len);
      if (type === FrameType.DATA) {
        if (!this.tun) continue;
        this.tunq.add(this.tun, buf, off + 1, len - 1);
        this.stats.rxPackets++;
        continue;
      }
      this.slow = true; // anything but a packet: control messages, keepalives, close
      if (type === FrameType.CONTROL) {
        this.onControl(buf.subarray(off + 1, off + len));
      } else if (type === FrameType.KEEPALIVE) {
        this.sendFrame(encodeFrame(FrameType.KEEPALIVE_REPLY));
      } else if (type === FrameType.CLOSE) {
        const reason = closeReason(buf.subarray(off + 1, off + len)) || 'no reason given';
        if (ch.kind === 'plaintext' && reason.includes('DTLS')) this.mismatch(`the server says: ${reason} (this client runs --insecure-plaintext)`, true);
        else this.finish({ kind: 'retry', why: `server closed the tunnel: ${reason}` });
        return;
      } else if (type !== FrameType.KEEPALIVE_REPLY) {
        this.stats.dropped++;
      }
    }
    const after: string = ch.state;
    if (after === 'closed') {
      this.slow = true;
      this.finish({ kind: 'retry', why: 'the server closed the connection' });
    }
  }

  /** Plaintext mode (labs) stops at a mismatch; a DTLS client retries (see onDatagram). */
  private mismatch(what: string, fatal: boolean): void {
    if (!this.mismatchLogged) log.error(`mode mismatch: ${what}`);
    this.mismatchLogged = true;
    this.finish({ kind: fatal ? 'fatal' : 'retry', why: `mode mismatch with ${this.serverIp}: ${what}` });
  }

  private onControl(body: Buffer): void {
    const msg = decodeControl(body);
    if (msg.type === 'invalid') {
      log.warn('bad control message from server', { error: msg.error });
      return;
    }
    if (msg.type === 'config') {
      void this.applyConfig(msg).catch((err) => this.finish({ kind: 'fatal', why: `cannot apply the server's config: ${(err as Error).message}` }));
    } else if (msg.type === 'refuse') {
      this.finish({ kind: 'fatal', why: `refused by the server: ${msg.reason}` });
    } else if (msg.type === 'bye') {
      this.finish({ kind: 'retry', why: `server said bye: ${msg.reason}` });
    }
  }

  /** Creates the TUN on the first config; on a reconnect with the same config keeps it as it is. */
  private async applyConfig(c: ConfigMsg): Promise<void> {
    this.keepaliveMs = c.keepaliveSec * 1000;
    this.deadMs = c.timeoutSec * 1000;
    const same = this.applied && this.applied.address === c.address && this.applied.prefix === c.prefix && this.applied.mtu === c.mtu &&
      this.applied.routes.join() === c.routes.join() && this.applied.redirectGateway === c.redirectGateway;
    if (!same) {
      if (this.tun && this.applied) await this.routesDown();
      if (!this.tun) {
        this.tun = Tun.open({ name: this.cfg.tunName, batchSize: BATCH, maxPacket: SLOT - 8, headroom: FRAME_OVERHEAD, gro: this.cfg.tunGro });
        this.tx = PacketBatch.over(this.tun.rx.buf, BATCH);
        this.tun.onPackets((b, now) => this.onTunBatch(b, now));
      }
      await runInitScript('client-init.sh', 'up', {
        TUN: this.tun.name,
        ADDR: `${c.address}/${c.prefix}`,
        MTU: String(c.mtu),
        ROUTES: c.routes.join(' '),
        REDIRECT_GATEWAY: c.redirectGateway ? '1' : '0',
        SERVER_IP: this.serverIp,
        DNS: c.dns.join(' '),
        STATE_DIR: this.stateDir(),
      });
      this.applied = c;
    }
    log.info(`tunnel up: ${c.address}/${c.prefix} on ${this.tun!.name}`, {
      server: `${this.serverIp}:${this.cfg.server.port}`, mtu: c.mtu,
      routes: c.redirectGateway ? 'all (full tunnel)' : c.routes.join(',') || 'tunnel subnet only',
      mode: this.cfg.plaintext ? 'plaintext' : 'dtls',
      ...(this.cfg.tunGro ? { gro: 'on' } : {}),
    });
  }

  private stateDir(): string {
    return path.resolve(this.cfg.stateDir, `client-${this.cfg.tunName}`);
  }

  private async routesDown(): Promise<void> {
    if (!this.tun) return;
    await runInitScript('client-init.sh', 'down', { TUN: this.tun.name, STATE_DIR: this.stateDir() }).catch((err) =>
      log.warn('restoring routes failed', { err }));
  }

  // ---- send ----------------------------------------------------------------------------

  /** Returns false when it only forwarded packets (BatchCallback in native.ts). */
  private onTunBatch(b: PacketBatch, now: number): boolean {
    this.now = now;
    const ch = this.channel;
    const tx = this.tx;
    if (!ch || ch.state !== 'open' || !this.sock || !tx) return false; // reconnecting: packets wait in no queue
    for (let i = 0; i < b.count; i++) {
      b.buf[b.offs[i] - 1] = FrameType.DATA; // header into the headroom: no copy
      tx.offs[i] = b.offs[i] - 1;
      tx.lens[i] = b.lens[i] + 1;
    }
    const view = ch.seal(tx, b.count, this.sealRing.next());
    this.send(view);
    this.stats.txPackets += b.count;
    return this.sock.endBatch(b.count, now) !== false; // a reply that came while the send yielded, taken now
  }

  private send(view: PacketBatch): void {
    if (!this.sock) return;
    this.sock.sendBatch(view, null); // connected socket: no address per datagram
    this.lastSent = this.now;
  }

  private sendFrame(frame: Buffer): void {
    const ch = this.channel;
    if (!ch || ch.state !== 'open') return;
    this.small.clear();
    if (!this.small.push(frame)) throw new Error(`control frame of ${frame.length} bytes exceeds ${SLOT}`);
    this.send(ch.seal(this.small, 1, this.sealRing.next()));
    this.flushControl();
  }

  private flushControl(): void {
    const ch = this.channel;
    if (!ch || !this.sock) return;
    const out = ch.takeOutput();
    if (out) for (const d of out) this.sock.send(d, null);
    if (ch.state === 'handshaking') {
      const ms = ch.timeoutMs();
      if (this.hsTimer) clearTimeout(this.hsTimer);
      this.hsTimer = ms >= 0 ? setTimeout(() => {
        this.hsTimer = null;
        ch.onTimeout();
        this.flushControl();
        if (ch.state === 'failed') this.finish({ kind: 'retry', why: `DTLS handshake failed: ${ch.error}` });
      }, Math.max(ms, 1)) : null;
    }
  }
  private hsTimer: NodeJS.Timeout | null = null;

  private onTick(): void {
    const now = this.now = monotonicMs();
    if (!this.channel || this.channel.state !== 'open' || !this.applied) return;
    if (now - this.lastSeen > this.deadMs) {
      this.finish({ kind: 'retry', why: `no traffic from the server for ${Math.round((now - this.lastSeen) / 1000)}s` });
      return;
    }
    if (this.keepaliveMs > 0 && now - this.lastSent >= this.keepaliveMs) this.sendFrame(encodeFrame(FrameType.KEEPALIVE));
  }

  /** SIGINT/SIGTERM: say bye, restore routes, remove the TUN. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    log.info('stopping');
    this.finish({ kind: 'stopped' });
    this.wake();
  }

  private async teardown(): Promise<void> {
    if (this.hsTimer) clearTimeout(this.hsTimer);
    if (this.tun) {
      if (this.cfg.tunGro) this.stats.groMerged = this.tun.coalesced;
      if (this.applied) await this.routesDown();
      this.tun.close();
      this.tun = null;
      this.applied = null;
    }
    log.info('stopped', {
      rxPackets: this.stats.rxPackets, txPackets: this.stats.txPackets, dropped: this.stats.dropped,
      ...(this.cfg.tunGro ? { groMerged: this.stats.groMerged } : {}),
      ...(this.cfg.handoffYield ? { handoffYields: handoffStats().yields } : {}),
    });
  }
}

