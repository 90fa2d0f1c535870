// The VPN server: one UDP socket, one TUN device, a session per client.
//
// Data path, TUN -> client: the TUN reader hands us a batch of IP packets, each with one
// free byte in front; we write the DATA frame type there, group the packets by the client
// that owns the destination address, and seal each group in one call.
// Data path, client -> TUN: a datagram is opened into frames; DATA frames whose inner
// source address is the client's own go to the TUN (or straight to another client),
// everything else is dropped and counted. The TUN packets of a whole receive batch are
// written together at its end (TunQueue), so GRO can merge a TCP flow's segments.
import { BatchRing } from '../batch';
import { ServerConfig } from '../config';
import { Peer, UdpBatch, UdpSocket } from '../conn/udp';
import { DtlsContext } from '../dtls/dtls';
import { Channel, DtlsChannel, PlaintextChannel } from '../device/channel';
import { AuthorizedClients } from '../device/authz';
import { Counters } from '../device/counters';
import { TunQueue } from '../device/tunqueue';
import { AddressPool, PoolExhaustedError } from '../device/pool';
import { Router } from '../device/router';
import { Session, sessionStatus, SessionStatus, BATCH } from '../device/session';
import { logger } from '../log';
import { monotonicMs } from '../clock';
import { handoffStats, HandoffStats, setHandoffYield } from '../os/handoff';
import { dropPrivileges } from '../os/privileges';
import { runHook, runInitScript } from '../os/scripts';
import { Tun } from '../tun/tun';
import { PacketBatch } from '../batch';
import { decodeControl, encodeControl, isValidCn, ConfigMsg } from '../wire/control';
import { FRAME_OVERHEAD, FrameType, frameType, looksLikeDtls, looksLikeFrame, encodeFrame, encodeClose, closeReason } from '../wire/frame';
import { checkIp, ipv4Dst, ipv4Src, ipVersion, parseCidr, inCidr, Cidr } from '../wire/ip';
import { StatusServer } from './status';

const log = logger('server');
const SLOT = 2048;
const MAX_HANDSHAKING = 2048;
const HANDSHAKE_TIMEOUT_MS = 30_000;
/** Handshake datagrams processed per event-loop turn (each may cost a few ms of crypto). */
const HANDSHAKES_PER_TURN = 2;
/** Handshake datagrams waiting at most; beyond that they are dropped (DTLS retransmits). */
const HANDSHAKE_QUEUE = 4096;

export interface ServerStatus {
  mode: 'dtls' | 'plaintext';
  listen: string;
  tun: string;
  pool: string;
  serverAddress: string;
  uptimeSec: number;
  clients: SessionStatus[];
  drops: Record<string, number>;
  /** With --tun-gro: TCP segments merged into an earlier segment's TUN write. */
  groMerged?: number;
  /** With --handoff-yield: how often the server gave its CPU up after passing packets on. */
  handoff?: HandoffStats;
}

export class VpnServer {
  readonly counters = new Counters();
  private sock!: UdpSocket;
  private readonly udpRx = new UdpBatch(BATCH, SLOT);
  private tun!: Tun;
  private dtls: DtlsContext | null = null;
  private readonly pool: AddressPool;
  private readonly poolCidr: Cidr;
  private readonly authz: AuthorizedClients | null;
  private readonly router = new Router<Session>();
  private readonly byRemote = new Map<number | string, Session>();
  private readonly byCn = new Map<string, Session>();
  private readonly sealRing = new BatchRing(4, BATCH, SLOT);
  // Decrypted frames of one receive batch (all DTLS sessions append here), and the TUN
  // packets among them, written when the batch is done.
  private readonly rx: PacketBatch;
  private readonly tunq: TunQueue;
  private readonly pending: Session[] = [];
  private tick: NodeJS.Timeout | null = null;
  private status: StatusServer | null = null;
  private readonly started = monotonicMs();
  /** Monotonic ms (clock.ts) of the current batch, set by each event callback: no clock read per packet. */
  private now = monotonicMs();
  private stopping = false;
  /** server-init.sh up was started: stop() must run its "down". */
  private initRan = false;
  private mismatchLogged = new Map<string, number>();

  constructor(readonly cfg: ServerConfig) {
    this.tunq = new TunQueue(SLOT, cfg.tunGro);
    this.rx = this.tunq.frames;
    this.c2c = PacketBatch.over(this.rx.buf, 1);
    const cidr = `${cfg.pool.network}/${cfg.pool.prefix}`;
    this.pool = new AddressPool(cidr, { leasesFile: cfg.leasesFile });
    this.poolCidr = parseCidr(cidr);
    // Plaintext mode is for labs: no certificates, so no authorization by certificate either.
    this.authz = cfg.plaintext ? null : new AuthorizedClients(cfg.authorizedDir);
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    if (cfg.plaintext) {
      log.warn('INSECURE PLAINTEXT MODE: tunnel traffic is NOT encrypted or authenticated; for labs only');
    } else {
      this.dtls = DtlsContext.fromFiles({
        role: 'server', caFile: cfg.ca, certFile: cfg.cert, keyFile: cfg.key,
        keylogFile: cfg.keylog, mtu: cfg.underlayMtu - 28,
      });
    }
    this.tun = Tun.open({ name: cfg.tunName, batchSize: BATCH, maxPacket: SLOT - 8, headroom: FRAME_OVERHEAD, gro: cfg.tunGro });
    log.info('TUN device open', { dev: this.tun.name, mtu: cfg.mtu, ...(cfg.tunGro ? { gro: 'on' } : {}) });
    this.initRan = true; // (from here on, stop() removes what the script may have added)
    await runInitScript('server-init.sh', 'up', {
      TUN: this.tun.name,
      ADDR: `${this.pool.serverAddress}/${cfg.pool.prefix}`,
      MTU: String(cfg.mtu),
      POOL: this.pool.cidr,
      NAT_OUT: cfg.natOut ?? '',
      MSS_CLAMP: cfg.mssClamp ? '1' : '0',
    });
    this.sock = UdpSocket.bind(cfg.listen.host, cfg.listen.port, { gso: cfg.udpGso });
    // (Before "listening": whoever waits for that line sees this one too.)
    if (cfg.udpGso) log.info('UDP segmentation offload is on: a capture on this host shows a run of datagrams as one large packet');
    setHandoffYield(cfg.handoffYield);
    this.sock.onDatagrams(this.udpRx, (rx, now) => this.onDatagrams(rx, now));
    this.tun.onPackets((b, now) => this.onTunBatch(b, now));
    this.tick = setInterval(() => this.onTick(), 1000);
    this.status = new StatusServer(cfg.statusSocket, () => this.snapshot());
    await this.status.listen();
    if (cfg.user || cfg.group) dropPrivileges(cfg.user, cfg.group);
    const a = this.sock.address();
    const where = a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    log.info(`listening on udp ${where}`, {
      mode: cfg.plaintext ? 'plaintext' : 'dtls', tun: this.tun.name, pool: this.pool.cidr, server: this.pool.serverAddress,
    });
  }

  // ---- UDP side ------------------------------------------------------------------------

  /** Returns false when the batch only carried packets (BatchCallback in native.ts). */
  private onDatagrams(rx: UdpBatch, now: number): boolean {
    this.now = now;
    this.slow = false;
    for (let i = 0; i < rx.count; i++) {
      const s = this.byRemote.get(rx.peerKey(i));
      if (s && s.channel.state === 'open') {
        this.fromSession(s, rx, i);
        continue;
      }
      this.slow = true;
      // Handshakes and new peers: the slow path. A handshake step costs milliseconds of
      // public-key crypto, so they wait in a queue and run a few per event-loop turn;
      // established sessions' traffic never waits behind a crowd of connecting clients.
      if (this.hsQueue.length >= HANDSHAKE_QUEUE) {
        this.counters.inc('garbage'); // a flood: the peer's DTLS retransmits later
        continue;
      }
      this.hsQueue.push({ msg: Buffer.from(rx.packet(i)), peer: s ? s.peer : rx.peer(i) });
    }
    if (this.tunq.endBatch(this.tun, rx.count, now) !== false) this.slow = true; // the receive batch is done
    if (this.hsQueue.length && !this.hsScheduled) {
      this.hsScheduled = true;
      setImmediate(() => this.runHandshakes());
    }
    return this.slow;
  }
  /** Set when a batch did more than forward packets: control messages, handshakes, logs, hooks. */
  private slow = false;

  private runHandshakes(): void {
    this.now = monotonicMs();
    this.hsScheduled = false;
    let n = 0;
    for (; n < HANDSHAKES_PER_TURN && this.hsQueue.length; n++) {
      const { msg, peer } = this.hsQueue.shift()!;
      const s = this.byRemote.get(peer.key);
      if (s) this.fromSession(s, this.one(msg), 0);
      else if (this.cfg.plaintext) this.newPlaintextPeer(msg, peer);
      else this.newDtlsPeer(msg, peer);
    }
    this.tunq.endBatch(this.tun, n, this.now); // this turn's batch is done (as in onDatagrams)
    if (this.hsQueue.length && !this.hsScheduled) {
      this.hsScheduled = true;
      setImmediate(() => this.runHandshakes());
    }
  }
  private readonly hsQueue: { msg: Buffer; peer: Peer }[] = [];
  private hsScheduled = false;


  private newDtlsPeer(msg: Buffer, peer: Peer): void {
    const key = peer.text;
    if (looksLikeFrame(msg)) {
      this.counters.inc('mismatch_plaintext');
      this.logMismatch(key, 'a plaintext tunnel packet arrived, but this server requires DTLS (is the client running --insecure-plaintext?)');
      // Tell a plaintext client why (unauthenticated, smaller than what it sent: no amplification).
      if (frameType(msg) === FrameType.CONTROL) this.sock.send(encodeClose('server requires DTLS'), peer);
      return;
    }
    if (this.byRemote.size >= MAX_HANDSHAKING + this.router.size) {
      this.counters.inc('garbage');
      return;
    }
    const r = this.dtls!.listen(msg, key);
    if (r === null) {
      this.counters.inc('garbage');
      return;
    }
    if ('reply' in r) {
      for (const d of r.reply) this.sock.send(d, peer);
      return;
    }
    const s = this.newSession(new DtlsChannel(r.conn, this.rx), peer);
    this.byRemote.set(peer.key, s);
    log.debug('handshake started', { remote: key });
    this.flushControl(s);
  }

  private newPlaintextPeer(msg: Buffer, peer: Peer): void {
    if (looksLikeDtls(msg)) {
      this.counters.inc('mismatch_dtls');
      // Tell a DTLS client why (a small unauthenticated frame, smaller than its ClientHello).
      this.sock.send(encodeClose('this server runs --insecure-plaintext'), peer);
      this.logMismatch(peer.text, 'a DTLS packet arrived, but this server runs --insecure-plaintext (start the client with --insecure-plaintext, or the server without it)');
      return;
    }
    if (frameType(msg) !== FrameType.CONTROL) {
      this.counters.inc('garbage');
      return;
    }
    const s = this.newSession(new PlaintextChannel(), peer);
    this.byRemote.set(peer.key, s);
    this.fromSession(s, this.one(msg), 0);
    if (!s.cn) this.dropSession(s, 'no valid hello', false);
  }

  private logMismatch(key: string, what: string): void {
    const last = this.mismatchLogged.get(key) ?? 0;
    const now = monotonicMs();
    if (this.mismatchLogged.has(key) && now - last < 10_000) return; // one line per peer per 10 s, not per packet
    this.mismatchLogged.set(key, now);
    if (this.mismatchLogged.size > 1000) this.mismatchLogged.clear();
    log.warn(`mode mismatch from ${key}: ${what}`);
  }

  /** A session whose frames to the client are the packets of our TUN reads (plus a header). */
  private newSession(ch: Channel, peer: Peer): Session {
    return new Session(ch, peer, PacketBatch.over(this.tun.rx.buf, BATCH));
  }

  /** A slow-path datagram (queued handshake) as packet 0 of a batch, which is what channels take. */
  private one(msg: Buffer): PacketBatch {
    const b = this.oneIn;
    b.clear();
    if (!b.push(msg)) b.count = 0; // larger than any datagram we read: nothing to open
    return b;
  }
  private readonly oneIn = new PacketBatch(1, SLOT);

  /** Datagram i of `datagrams`, from the session's client. */
  private fromSession(s: Session, datagrams: PacketBatch, i: number): void {
    if (i >= datagrams.count) return;
    const ch = s.channel;
    const dlen = datagrams.lens[i];
    const wasOpen = ch.state === 'open';
    const droppedBefore = ch.dropped;
    this.tunq.makeRoom(this.tun); // room for this datagram's frames
    const frames = ch.receive(datagrams, i);
    if (ch.dropped !== droppedBefore) this.counters.inc('replayed_or_bad_record', ch.dropped - droppedBefore);
    if (!wasOpen) {
      this.slow = true;
      this.flushControl(s);
      const now: string = ch.state;
      if (now === 'failed') {
        log.warn('handshake failed', { remote: s.key, reason: ch.error });
        this.dropSession(s, 'handshake failed', false);
        return;
      }
      if (now === 'open') this.onHandshakeDone(s);
    }
    if (frames.count === frames.first) {
      const state: string = ch.state; // (re-read: receive() may have seen close_notify)
      if (state === 'closed') this.dropSession(s, 'client closed the connection', false);
      return;
    }
    s.lastSeen = this.now;
    s.rxBytes += dlen;
    const buf = frames.buf;
    for (let i = frames.first; i < frames.count; i++) {
      const off = frames.offs[i], len = frames.lens[i];
      const type = frameType(buf, off, len);
      if (type === FrameType.DATA) {
        if (!s.address) { this.counters.inc('unauthorized'); continue; }
        const ipOff = off + 1, ipLen = len - 1;
        if (checkIp(buf, ipOff, ipLen) !== null) { this.counters.inc('bad_ip'); continue; }
        if (ipVersion(buf, ipOff) !== 4) { this.counters.inc('not_ipv4'); continue; } // e.g. the client OS's IPv6 router solicitations
        // Anti-spoofing: a client may only send from the address we gave it.
        if (ipv4Src(buf, ipOff) !== s.address) { this.counters.inc('spoofed_source'); s.drops++; continue; }
        s.rxPackets++;
        const dst = ipv4Dst(buf, ipOff);
        if (inCidr(dst, this.poolCidr) && dst !== this.pool.serverAddressInt) {
          const peer = this.router.lookup(dst);
          if (!peer) { this.counters.inc('no_route'); continue; }
          if (!this.cfg.clientToClient) { this.counters.inc('client_to_client_off'); continue; }
          // Client to client: re-seal the frame (type byte included) for the other session.
          this.c2c.offs[0] = off;
          this.c2c.lens[0] = len;
          this.sendFrames(peer, this.c2c, 1);
          continue;
        }
        this.tunq.add(this.tun, buf, ipOff, ipLen);
      } else if (type === FrameType.CONTROL) {
        this.slow = true;
        this.onControl(s, buf.subarray(off + 1, off + len));
      } else if (type === FrameType.KEEPALIVE) {
        this.sendSmall(s, encodeFrame(FrameType.KEEPALIVE_REPLY));
      } else if (type === FrameType.KEEPALIVE_REPLY) {
        // lastSeen is already updated
      } else if (type === FrameType.CLOSE) {
        this.dropSession(s, `client closed: ${closeReason(buf.subarray(off + 1, off + len)) || 'no reason'}`, false);
        return;
      } else {
        this.counters.inc('garbage');
      }
    }
  }

  private onHandshakeDone(s: Session): void {
    const dtls = (s.channel as DtlsChannel).conn;
    const peer = dtls.peer();
    s.cn = peer?.cn ?? '';
    s.fingerprint = peer?.fingerprint256 ?? null;
    log.debug('handshake done', { remote: s.key, cn: s.cn, cipher: dtls.info().cipher });
    // The CA vouches for the certificate, not for its CN being usable as a name here (it
    // names a file in the authorized directory and appears in logs and messages).
    if (!isValidCn(s.cn)) {
      this.counters.inc('unauthorized');
      log.warn('refused client: its certificate CN is not a valid client name', { cn: s.cn, remote: s.key });
      s.cn = ''; // (not kept, not shown again)
      this.refuse(s, 'the certificate CN is not a valid client name (letters, digits, ".", "_", "-"; at most 64)');
      return;
    }
    this.authorize(s);
  }

  /** Authorization and address assignment, shared by both modes; sends config or refuse. */
  private authorize(s: Session): void {
    if (this.authz && !this.authz.has(s.cn)) {
      this.counters.inc('unauthorized');
      log.warn('refused client: CN is not in the authorized directory', { cn: s.cn, remote: s.key, dir: this.authz.dir });
      this.refuse(s, `client "${s.cn}" is not authorized on this server`);
      return;
    }
    const old = this.byCn.get(s.cn);
    if (old && old !== s) this.dropSession(old, `replaced by a new connection from ${s.key}`, true);
    let lease;
    try {
      lease = this.pool.acquire(s.cn);
    } catch (err) {
      if (!(err instanceof PoolExhaustedError)) throw err;
      log.warn('refused client: address pool exhausted', { cn: s.cn, remote: s.key });
      this.refuse(s, err.message);
      return;
    }
    s.address = lease.address;
    s.addressStr = lease.addressStr;
    s.connectedAt = this.now;
    this.router.add(s.address, s);
    this.byCn.set(s.cn, s);
    log.info('client connected', { cn: s.cn, address: s.addressStr, remote: s.key, mode: s.channel.kind });
    void runHook(this.cfg.onConnect, 'connect', { tun: this.tun.name, cn: s.cn, address: s.addressStr, remote: s.key });
  }

  private sendConfig(s: Session): void {
    const cfg = this.cfg;
    const msg: ConfigMsg = {
      type: 'config', v: 1, address: s.addressStr, prefix: cfg.pool.prefix, gateway: this.pool.serverAddress,
      mtu: cfg.mtu, routes: cfg.routes, redirectGateway: cfg.redirectGateway, dns: cfg.dns,
      keepaliveSec: cfg.keepaliveSec, timeoutSec: cfg.timeoutSec,
    };
    this.sendSmall(s, encodeFrame(FrameType.CONTROL, encodeControl(msg)));
  }

  private refuse(s: Session, reason: string): void {
    this.sendSmall(s, encodeFrame(FrameType.CONTROL, encodeControl({ type: 'refuse', v: 1, reason })));
    this.dropSession(s, `refused: ${reason}`, true);
  }

  private onControl(s: Session, body: Buffer): void {
    const msg = decodeControl(body);
    if (msg.type === 'invalid') {
      log.warn('bad control message', { remote: s.key, error: msg.error });
      return;
    }
    if (msg.type === 'hello') {
      if (s.channel.kind === 'plaintext' && !s.cn) {
        if (!msg.cn) { log.warn('plaintext hello without a cn', { remote: s.key }); return; }
        s.cn = msg.cn; // lab mode: the identity is only claimed, nothing proves it
        this.authorize(s);
      }
      if (s.address) this.sendConfig(s);
    } else if (msg.type === 'bye') {
      this.dropSession(s, `client said bye: ${msg.reason}`, false);
    }
  }

  // ---- TUN side ------------------------------------------------------------------------

  /** Returns false when it only forwarded packets (BatchCallback in native.ts). */
  private onTunBatch(b: PacketBatch, now: number): boolean {
    this.now = now;
    const buf = b.buf;
    const pending = this.pending;
    for (let i = 0; i < b.count; i++) {
      const off = b.offs[i], len = b.lens[i];
      if (ipVersion(buf, off) !== 4) { this.counters.inc('not_ipv4'); continue; } // the kernel's own IPv6 on the TUN
      if (len < 20) { this.counters.inc('bad_ip'); continue; }
      const s = this.router.lookup(ipv4Dst(buf, off));
      if (!s) { this.counters.inc('no_route'); continue; }
      buf[off - 1] = FrameType.DATA; // the frame header goes into the headroom: no copy
      const tx = s.tx;
      if (tx.count === 0) pending.push(s);
      tx.offs[tx.count] = off - 1;
      tx.lens[tx.count++] = len + 1;
    }
    const sent = pending.length;
    for (let j = 0; j < sent; j++) {
      const s = pending[j];
      this.sendFrames(s, s.tx, s.tx.count);
      s.txPackets += s.tx.count;
      s.tx.count = 0;
    }
    pending.length = 0;
    // A reply that came while the sends yielded, taken now (inside onDatagrams: nothing to do).
    return sent > 0 && this.sock.endBatch(b.count, now) !== false;
  }

  /** Seals the first `count` frames of `frames` for one session and sends the datagrams. */
  private sendFrames(s: Session, frames: PacketBatch, count: number): void {
    if (s.channel.state !== 'open') return;
    const view = s.channel.seal(frames, count, this.sealRing.next());
    for (let i = 0; i < view.count; i++) s.txBytes += view.lens[i];
    this.sock.sendBatch(view, s.peer);
    s.lastSent = this.now;
    this.flushControl(s);
  }

  /** A frame of the receive batch, sent on to another client (entry 0 names it). */
  private readonly c2c: PacketBatch;
  private readonly small = new PacketBatch(1, SLOT);
  /** Control-path send of one frame (a copy is fine here). */
  private sendSmall(s: Session, frame: Buffer): void {
    this.small.clear();
    if (!this.small.push(frame)) throw new Error(`control frame of ${frame.length} bytes exceeds ${SLOT}`);
    this.sendFrames(s, this.small, 1);
  }

  /** Sends what the protocol queued (handshake, alerts) and re-arms its timer. */
  private flushControl(s: Session): void {
    const out = s.channel.takeOutput();
    if (out) for (const d of out) this.sock.send(d, s.peer);
    if (s.channel.state === 'handshaking') {
      const ms = s.channel.timeoutMs();
      if (s.timer) clearTimeout(s.timer);
      s.timer = ms >= 0 ? setTimeout(() => { s.timer = null; s.channel.onTimeout(); this.flushControl(s); this.checkFailed(s); }, Math.max(ms, 1)) : null;
    } else if (s.timer) {
      clearTimeout(s.timer);
      s.timer = null;
    }
  }

  private checkFailed(s: Session): void {
    if (s.channel.state === 'failed') {
      log.warn('handshake failed', { remote: s.key, reason: s.channel.error });
      this.dropSession(s, 'handshake failed', false);
    }
  }

  // ---- Session lifecycle ---------------------------------------------------------------

  /** Ends a session; `notify` sends bye + close_notify first. The address stays reserved for the CN. */
  dropSession(s: Session, reason: string, notify: boolean): void {
    if (s.closed) return;
    s.closed = true;
    this.slow = true; // logs, and may run a hook
    if (notify && s.channel.state === 'open') {
      this.sendSmall(s, encodeFrame(FrameType.CONTROL, encodeControl({ type: 'bye', v: 1, reason })));
      s.channel.shutdown();
      this.flushControl(s);
    }
    if (s.timer) clearTimeout(s.timer);
    s.channel.destroy();
    if (this.byRemote.get(s.peer.key) === s) this.byRemote.delete(s.peer.key);
    if (s.address) {
      this.router.remove(s.address, s);
      if (this.byCn.get(s.cn) === s) this.byCn.delete(s.cn);
      this.pool.release(s.cn);
      log.info('client disconnected', { cn: s.cn, address: s.addressStr, remote: s.key, reason });
      void runHook(this.cfg.onDisconnect, 'disconnect', { tun: this.tun.name, cn: s.cn, address: s.addressStr, remote: s.key });
    } else {
      log.debug('session ended before it was established', { remote: s.key, reason });
    }
  }

  /** Keepalives, dead-peer detection, stuck handshakes: once a second. */
  private onTick(): void {
    const now = this.now = monotonicMs();
    const keepMs = this.cfg.keepaliveSec * 1000, deadMs = this.cfg.timeoutSec * 1000;
    for (const s of this.byRemote.values()) {
      if (!s.address) {
        if (now - s.createdAt > HANDSHAKE_TIMEOUT_MS) this.dropSession(s, 'handshake did not finish', false);
        continue;
      }
      if (now - s.lastSeen > deadMs) this.dropSession(s, `no traffic for ${this.cfg.timeoutSec}s (dead peer)`, false);
      else if (keepMs > 0 && now - s.lastSent >= keepMs) this.sendSmall(s, encodeFrame(FrameType.KEEPALIVE));
    }
  }

  /** SIGHUP: re-read the authorized directory and disconnect clients no longer listed. */
  reloadAuthorized(): void {
    if (!this.authz) return;
    const { added, removed } = this.authz.scan();
    log.info('authorized clients reloaded', { added: added.join(',') || '-', removed: removed.join(',') || '-', total: this.authz.list.length });
    for (const cn of removed) {
      const s = this.byCn.get(cn);
      if (s) this.dropSession(s, 'no longer authorized', true);
    }
  }

  snapshot(): ServerStatus {
    const a = this.sock.address();
    return {
      mode: this.cfg.plaintext ? 'plaintext' : 'dtls',
      listen: a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
      tun: this.tun.name,
      pool: this.pool.cidr,
      serverAddress: this.pool.serverAddress,
      uptimeSec: Math.round((monotonicMs() - this.started) / 1000),
      clients: [...this.byCn.values()].map((s) => sessionStatus(s, monotonicMs())),
      drops: this.counters.snapshot(),
      ...(this.cfg.tunGro ? { groMerged: this.tun.coalesced } : {}),
      ...(this.cfg.handoffYield ? { handoff: handoffStats() } : {}),
    };
  }

  /** SIGTERM/SIGINT: tell every client, remove the TUN and our firewall rules. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    log.info('shutting down', { clients: this.byCn.size });
    for (const s of [...this.byRemote.values()]) this.dropSession(s, 'server shutting down', true);
    if (this.tick) clearInterval(this.tick);
    await this.status?.close();
    // Give queued datagrams a moment to leave before the socket closes.
    if (this.sock) await new Promise((r) => setTimeout(r, 50));
    // (After a failed start, some of these were never made.)
    this.sock?.close();
    const name = this.tun?.name ?? this.cfg.tunName;
    this.tun?.close();
    if (!this.initRan) { log.info('stopped'); return; }
    try {
      await runInitScript('server-init.sh', 'down', { TUN: name, POOL: this.pool.cidr, NAT_OUT: this.cfg.natOut ?? '' });
    } catch (err) {
      // Expected after --user: an unprivileged process cannot change the firewall.
      log.warn(`firewall rules tagged minivpn:${name} were not removed: ${(err as Error).message}; as root run: TUN=${name} scripts/server-init.sh down`);
    }
    log.info('stopped');
  }
}

