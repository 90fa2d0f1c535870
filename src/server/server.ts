// The VPN server: one UDP socket, one TUN device, a session per client. This file is the
// event loop, a thin I/O shell: the protocol of each tunnel is the session core
// (src/session/core.ts), admission of new clients is admission.ts, the session table
// sessions.ts. The data path is two straight lines:
//
//   UDP batch -> session by sender -> core.decapsulate (open, unframe) -> route -> TUN batch write
//   TUN batch -> route (session by destination) -> core.encapsulate (frame, seal) -> UDP batch send
//
// With --topology p2p each session has a TUN of its own (links.ts), a point-to-point link the
// kernel routes: no routing here, the session's packets go to its own device and what its
// device reads goes to the session. The same loop reads all of them and the UDP socket.
//
// Each callback returns whether it did more than move packets (control work: then Node runs
// the jobs it queued; see BatchCallback in native.ts). The shortcuts for interactive traffic
// are in src/os/latency.ts, one call at the end of each line.
import { BatchRing, BatchView, PacketBatch } from '../batch';
import { ServerConfig } from '../config';
import { Peer, UdpBatch, UdpSocket } from '../conn/udp';
import { DtlsContext } from '../dtls/dtls';
import { AuthorizedClients } from '../device/authz';
import { Counters } from '../device/counters';
import { TunQueue } from '../device/tunqueue';
import { AddressPool } from '../device/pool';
import { L2Guard, L2Limits, MacTable } from '../device/l2guard';
import { logger } from '../log';
import { monotonicMs } from '../clock';
import { handoffStats, HandoffStats, readTunAfterWrite, readUdpAfterSend, setHandoffYield } from '../os/latency';
import { dropPrivileges } from '../os/privileges';
import { HookRunner, runInitScript } from '../os/scripts';
import { Channel, DtlsChannel } from '../session/channel';
import { Close, dataFrame, SessionCore } from '../session/core';
import { Tun, TunReadShare } from '../tun/tun';
import { ConfigMsg } from '../wire/control';
import { FRAME_OVERHEAD } from '../wire/frame';
import { checkIp, ipv4Dst, ipv4Src, ipVersion, parseCidr, inCidr, Cidr, IPV6_HEADER_LEN } from '../wire/ip';
import { isLinkChatter6, packetTooBig6 } from '../wire/ip6';
import { ETHER_HEADER_LEN, etherDst, isGroupDst } from '../wire/ether';
import { Pool6Range } from '../device/pool6';
import { Admission } from './admission';
import { Link, Links } from './links';
import { BATCH, Session, SessionTable, sessionStatus, SessionStatus } from './sessions';
import { StatusServer } from './status';

const log = logger('server');
const SLOT = 2048;
/** The cookie secret is replaced this often (a cookie stays valid for one more period). */
const COOKIE_ROTATE_MS = 5 * 60_000;
/**
 * The UDP socket's buffers: 16 MiB (the kernel doubles it), about 100 ms of a 100k/s flood of
 * ClientHellos. Measured under such a flood on a busy 2-core machine: with 4 MiB the socket
 * overflowed (11 % of an established client's pings lost), with 16 MiB it did not (none lost).
 */
const SOCKET_BUFFER = 16 * 1024 * 1024;
/** A handshake (cookie to config) must be done within this: a silent one holds a slot no longer. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** At shutdown, the links' programs get this long to finish their "down". */
const PROGRAM_WAIT_MS = 10_000;

export interface ServerStatus {
  mode: 'dtls' | 'plaintext';
  /** What the tunnel carries: IP packets (tun) or Ethernet frames (tap). */
  dev: 'tun' | 'tap';
  listen: string;
  /** The shared TUN; with the p2p topology the links' name template (each client's own TUN is in its row). */
  tun: string;
  topology: 'subnet' | 'p2p';
  pool: string;
  serverAddress: string;
  /** The IPv6 pool and the server's IPv6 address (absent with --no-ipv6). */
  pool6?: string;
  serverAddress6?: string;
  uptimeSec: number;
  clients: SessionStatus[];
  drops: Record<string, number>;
  /** With --tun-gro: TCP segments merged into an earlier segment's TUN write. */
  groMerged?: number;
  /** With --handoff-yield: how often the server gave its CPU up after passing packets on. */
  handoff?: HandoffStats;
  /** Roaming: clients moved to a new endpoint, and trial decryptions spent finding them (absent with --no-float). */
  roaming?: { moves: number; trials: number };
  /** Bytes from and to senders not yet authenticated (before the cookie): answers never exceed what came. */
  unauthenticated: { rxBytes: number; txBytes: number };
}

export class VpnServer {
  readonly counters = new Counters();
  sock!: UdpSocket;
  /** The shared TUN (subnet topology; null with p2p, before start and after stop). */
  private tun: Tun | null = null;
  /** The p2p topology's devices, one per session (null: subnet). */
  private readonly links: Links | null;
  /** The read batch of every TUN of this server (one is read at a time). */
  private readonly share = new TunReadShare(BATCH, SLOT - 8, FRAME_OVERHEAD);
  /** Scratch for the devices a receive batch wrote (the read after a write). */
  private readonly wroteTo: Tun[] = [];
  private dtls: DtlsContext | null = null;
  private readonly pool: AddressPool;
  private readonly poolCidr: Cidr;
  /** The IPv6 pool (null with --no-ipv6). */
  private readonly v6: Pool6Range | null;
  private readonly authz: AuthorizedClients | null;
  private readonly sessions: SessionTable;
  private admission!: Admission;
  private readonly udpRx = new UdpBatch(BATCH, SLOT);
  private readonly sealRing = new BatchRing(4, BATCH, SLOT);
  /** Decrypted frames of one receive batch (all DTLS sessions append here). */
  readonly receiveBatch: PacketBatch;
  /** The TUN packets among them, written when the batch is done. */
  private readonly tunq: TunQueue;
  /** Sessions with frames in the current TUN batch. */
  private readonly pending: Session[] = [];
  /** A frame of the receive batch, sent on to another client (entry 0 names it). */
  private readonly c2c: PacketBatch;
  private tick: NodeJS.Timeout | null = null;
  private status: StatusServer | null = null;
  private readonly started = monotonicMs();
  /** Set by a batch that did more than move packets (the callbacks' return value). */
  private work = false;
  private stopping = false;
  /** server-init.sh up was started: stop() must run its "down". */
  private initRan = false;
  private cookieRotatedAt = monotonicMs();
  /** The connect, disconnect and move hooks: rate-limited, coalesced per client. */
  private readonly hooks = new HookRunner();
  /** --dev tap: which client holds which MAC; the per-client limits. */
  private readonly macs = new MacTable<Session>();
  private readonly l2Limits: L2Limits;
  private readonly tap: boolean;

  constructor(readonly cfg: ServerConfig) {
    this.tunq = new TunQueue(SLOT, cfg.tunGro);
    this.receiveBatch = this.tunq.frames;
    this.c2c = PacketBatch.over(this.receiveBatch.buf, 1);
    const cidr = `${cfg.pool.network}/${cfg.pool.prefix}`;
    // (saveEveryMs: a reconnect loop must not cost an fsync each)
    this.pool = new AddressPool(cidr, { leasesFile: cfg.leasesFile, saveEveryMs: 500, pool6: cfg.ipv6 ? cfg.pool6 : null });
    this.poolCidr = parseCidr(cidr);
    this.v6 = this.pool.v6;
    this.sessions = new SessionTable(this.pool);
    // Plaintext mode is for labs: no certificates, so no authorization by certificate either.
    this.authz = cfg.plaintext ? null : new AuthorizedClients(cfg.authorizedDir);
    this.tap = cfg.dev === 'tap';
    this.l2Limits = { macLimit: cfg.macLimit, maxFrame: cfg.mtu + ETHER_HEADER_LEN, groupPerSec: cfg.broadcastPerSec };
    this.links = cfg.topology === 'p2p'
      ? new Links({
        template: cfg.tunName, share: this.share, gro: cfg.tunGro, mtu: cfg.mtu, program: cfg.linkProgram,
        local: this.pool.serverAddress, local6: this.v6?.serverAddress ?? '', tap: this.tap, bridge: cfg.bridge, clientToClient: cfg.clientToClient,
      })
      : null;
  }

  /** The device name hooks and logs give for a session: its own TUN, or the shared one. */
  private devName(s: Session): string {
    return s.link?.name ?? this.tun?.name ?? this.cfg.tunName;
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
    const kind = this.tap ? 'TAP' : 'TUN';
    if (this.links === null) {
      this.tun = Tun.open({ name: cfg.tunName, share: this.share, gro: cfg.tunGro, tap: this.tap });
      log.info(`${kind} device open`, { dev: this.tun.name, mtu: cfg.mtu, ...(cfg.tunGro ? { gro: 'on' } : {}) });
    } else {
      log.info(`topology p2p: a ${kind} per client`, {
        template: cfg.tunName, mtu: cfg.mtu, ...(cfg.bridge ? { bridge: cfg.bridge } : {}), ...(cfg.linkProgram.length ? { program: cfg.linkProgram.join(' ') } : {}),
      });
    }
    this.initRan = true; // (from here on, stop() removes what the script may have added)
    await runInitScript('server-init.sh', 'up', {
      TOPOLOGY: cfg.topology,
      TUN: this.tun?.name ?? this.links!.wildcard,
      ADDR: `${this.pool.serverAddress}/${cfg.pool.prefix}`,
      MTU: String(cfg.mtu),
      POOL: this.pool.cidr,
      NAT_OUT: cfg.natOut ?? '',
      MSS_CLAMP: cfg.mssClamp ? '1' : '0',
      CLIENT_TO_CLIENT: cfg.clientToClient ? '1' : '0',
      VPN_PID: String(process.pid),
      ADDR6: this.v6 ? `${this.v6.serverAddress}/${this.v6.prefix}` : '',
      POOL6: this.v6?.text ?? '',
      BRIDGE: cfg.bridge ?? '',
    });
    this.sock = UdpSocket.bind(cfg.listen.host, cfg.listen.port, { gso: cfg.udpGso, bufferBytes: SOCKET_BUFFER });
    this.admission = new Admission(this, this.sessions, this.counters, this.dtls, this.authz, cfg.float && !cfg.plaintext ? cfg.moveTrialsPerSec : 0, cfg.handshakesPerSource);
    // (Before "listening": whoever waits for that line sees this one too.)
    if (cfg.udpGso) log.info('UDP segmentation offload is on: a capture on this host shows a run of datagrams as one large packet');
    this.status = new StatusServer(cfg.statusSocket, () => this.snapshot());
    await this.status.listen();
    if (cfg.user || cfg.group) dropPrivileges(cfg.user, cfg.group);
    // Packets (and with them hooks) only from here on: never as root after --user, never before
    // the status socket is there.
    setHandoffYield(cfg.handoffYield);
    this.sock.onDatagrams(this.udpRx, (rx, now) => this.onDatagrams(rx, now));
    this.tun?.onPackets((b, now) => this.onTunBatch(b, now));
    this.tick = setInterval(() => this.onTick(), 1000);
    const a = this.sock.address();
    const where = a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    log.info(`listening on udp ${where}`, {
      mode: cfg.plaintext ? 'plaintext' : 'dtls', tun: this.tun?.name ?? cfg.tunName, ...(cfg.topology === 'p2p' ? { topology: 'p2p' } : {}), ...(this.tap ? { dev: 'tap' } : {}), pool: this.pool.cidr, server: this.pool.serverAddress,
      ...(this.v6 ? { pool6: this.v6.text, server6: this.v6.serverAddress } : { ipv6: 'off' }),
    });
  }

  // ---- UDP -> TUN -------------------------------------------------------------------------

  private onDatagrams(rx: UdpBatch, now: number): boolean {
    this.work = false;
    for (let i = 0; i < rx.count; i++) {
      const s = this.sessions.fromRemote(rx.peerKey(i));
      if (s !== undefined && s.core.channel.state === 'open') this.receive(s, rx, i, now);
      else if (s === undefined && this.roam(rx, i, now)) continue;
      else {
        // New peers and handshakes: admission (the cookie exchange now, handshake steps queued).
        this.work = true;
        this.admission.admit(rx, i, s, now);
      }
    }
    this.endTurn(rx.count, now);
    return this.work;
  }

  /** Datagram i of `datagrams`, from the client of `s`: its packets to the TUN (or another client). */
  receive(s: Session, datagrams: PacketBatch, i: number, now: number): void {
    if (i >= datagrams.count) return;
    this.tunq.makeRoom(); // room for this datagram's frames
    const core = s.core;
    const work = core.decapsulate(datagrams, i, now);
    const pk = core.packets;
    if (s.link !== null) this.toLink(s, s.link, pk, now);
    else for (let k = 0; k < pk.count; k++) this.route(s, pk.buf, pk.offs[k], pk.lens[k], now);
    if (work) this.act(s, now);
  }

  /**
   * Roaming: a record from an address no session owns may be a known client's from a new
   * address (admission's move rule). If it is, the session is at the new address already;
   * the record's packets go on as usual and its answers (a keepalive's) go there.
   */
  private roam(rx: UdpBatch, i: number, now: number): boolean {
    this.tunq.makeRoom(); // (a trial that succeeds opens the datagram's frames)
    const m = this.admission.tryMove(rx, i, now);
    if (m === null) return false;
    const s = m.session;
    const pk = s.core.packets;
    if (s.link !== null) this.toLink(s, s.link, pk, now);
    else for (let k = 0; k < pk.count; k++) this.route(s, pk.buf, pk.offs[k], pk.lens[k], now);
    this.act(s, now);
    if (m.from === null || s.gone) return true;
    if (s.link !== null) s.link.info.remote = s.key; // (the program's "down" is told the endpoint of now)
    log.info(`${s.cn} moved ${m.from} -> ${s.key}`, { cn: s.cn, address: s.addressStr });
    this.hooks.run(this.cfg.onMove, 'move', { tun: this.devName(s), cn: s.cn, address: s.addressStr, remote: s.key, oldRemote: m.from });
    return true;
  }

  /**
   * A client's packets to its own link (p2p): checked to be IP, nothing else. Its source is
   * the kernel's to judge (rp_filter), multicast and link-local pass: the link is the client's.
   * With --dev tap, frames through the client's layer-2 guard into its TAP (a bridge port).
   */
  private toLink(s: Session, link: Link, pk: BatchView, now: number): void {
    if (link.state !== 'up') return; // (not configured yet, or closed: nothing to write to)
    for (let k = 0; k < pk.count; k++) {
      const off = pk.offs[k], len = pk.lens[k];
      if (s.l2 !== null) { this.bridge(s, s.l2, link.dev, pk.buf, off, len, now); continue; }
      if (checkIp(pk.buf, off, len) !== null) { this.counters.inc('bad_ip'); continue; }
      this.tunq.add(link.dev, pk.buf, off, len);
    }
  }

  /** One IP packet from a client: checked, then to the TUN or, re-sealed, to another client. */
  private route(s: Session, buf: Buffer, off: number, len: number, now: number): void {
    if (s.l2 !== null) { this.bridge(s, s.l2, this.tun!, buf, off, len, now); return; }
    if (checkIp(buf, off, len) !== null) { this.counters.inc('bad_ip'); return; }
    if (ipVersion(buf, off) !== 4) { this.route6(s, buf, off, len, now); return; }
    // Anti-spoofing: a client may only send from the address we gave it.
    if (ipv4Src(buf, off) !== s.address) { this.counters.inc('spoofed_source'); s.drops++; return; }
    const dst = ipv4Dst(buf, off);
    if (inCidr(dst, this.poolCidr) && dst !== this.pool.serverAddressInt) {
      this.toClient(this.sessions.router.lookup(dst), off, len, now);
      return;
    }
    this.tunq.add(this.tun!, buf, off, len);
  }

  /**
   * --dev tap: one Ethernet frame from a client, through its layer-2 guard (size, source MAC,
   * broadcast rate), into the TAP `dev` (the shared one, or the client's own). Addresses inside
   * are not checked: on layer 2 the client is a station on the segment, as on a switch port
   * (docs/PROTOCOL.md §5).
   */
  private bridge(s: Session, g: L2Guard, dev: Tun, buf: Buffer, off: number, len: number, now: number): void {
    const v = g.check(buf, off, len, now);
    if (v === 'learned') {
      this.macs.add(g.learnedMac, s);
      this.work = true;
    } else if (v !== 'ok') {
      this.counters.inc(v);
      s.drops++;
      return;
    }
    this.tunq.add(dev, buf, off, len);
  }

  /** Client to client: the frame (type byte in front of the packet at `off`) re-sealed for the other session. */
  private toClient(peer: Session | undefined, off: number, len: number, now: number): void {
    if (!peer) { this.counters.inc('no_route'); return; }
    if (!this.cfg.clientToClient) { this.counters.inc('client_to_client_off'); return; }
    this.c2c.offs[0] = off - 1;
    this.c2c.lens[0] = len + 1;
    this.c2c.count = 1;
    this.send(peer, this.c2c, 1, now);
  }

  /** One IPv6 packet from a client (checkIp passed): as route(), with the IPv6 pool's keys. */
  private route6(s: Session, buf: Buffer, off: number, len: number, now: number): void {
    // The client OS's own link traffic (router and neighbour solicitations, MLD): counted only.
    if (isLinkChatter6(buf, off)) { this.counters.inc('ipv6_link_local'); return; }
    const v6 = this.v6;
    if (v6 === null || s.address6 === 0) { this.counters.inc('not_ipv4'); return; }
    // Anti-spoofing: the source is the client's own IPv6 address.
    if (!v6.isHostAddress(buf, off + 8) || buf.readUInt32BE(off + 20) !== s.address6) { this.counters.inc('spoofed_source'); s.drops++; return; }
    if (len > this.cfg.mtu) { this.tooBig6(s, buf, off, len, now); return; }
    if (v6.contains(buf, off + 24) && buf.readUInt32BE(off + 36) !== v6.serverKey) {
      this.toClient(v6.isHostAddress(buf, off + 24) ? this.sessions.router6.lookup(buf.readUInt32BE(off + 36)) : undefined, off, len, now);
      return;
    }
    this.tunq.add(this.tun!, buf, off, len);
  }

  /** An IPv6 packet over the tunnel MTU: dropped, and its sender (through the tunnel of `s`) told the MTU. */
  private tooBig6(s: Session, buf: Buffer, off: number, len: number, now: number): void {
    this.counters.inc('too_big');
    const ptb = packetTooBig6(buf, off, len, this.cfg.mtu, this.v6!.serverBytes);
    if (ptb === null) return;
    const b = new PacketBatch(1, ptb.length + 1);
    b.buf[0] = 0; // (the frame header's byte)
    ptb.copy(b.buf, 1);
    b.count = 0;
    dataFrame(b, b.buf, 1, ptb.length);
    this.send(s, b, 1, now);
  }

  /** The end of a receive batch: its TUN packets written in one call. */
  endTurn(datagrams: number, now: number): void {
    this.tunq.flush();
    const written = this.tunq.takeWritten();
    for (const tun of this.tunq.takeWrittenTo(this.wroteTo)) if (readTunAfterWrite(tun, written, datagrams, now)) this.work = true;
  }

  // ---- TUN -> UDP -------------------------------------------------------------------------

  /** A batch from a session's own link (p2p): all of it goes to that client. */
  private onLinkBatch(s: Session, b: PacketBatch, now: number): boolean {
    if (s.gone || b.count === 0) return false;
    const tx = s.tx;
    tx.count = 0;
    for (let i = 0; i < b.count; i++) dataFrame(tx, b.buf, b.offs[i], b.lens[i]); // (into the headroom: no copy)
    this.send(s, tx, tx.count, now);
    tx.count = 0;
    return readUdpAfterSend(this.sock, b.count, now);
  }

  private onTunBatch(b: PacketBatch, now: number): boolean {
    const pending = this.pending;
    if (this.tap) this.sortFrames(b);
    else this.sortPackets(b);
    const sent = pending.length;
    for (let j = 0; j < sent; j++) {
      const s = pending[j];
      this.send(s, s.tx, s.tx.count, now);
      s.tx.count = 0;
    }
    pending.length = 0;
    return sent > 0 && readUdpAfterSend(this.sock, b.count, now);
  }

  /** Each IP packet of the batch into the tx of the client that holds its destination address. */
  private sortPackets(b: PacketBatch): void {
    const buf = b.buf, pending = this.pending;
    for (let i = 0; i < b.count; i++) {
      const off = b.offs[i], len = b.lens[i];
      let s: Session | undefined;
      if (ipVersion(buf, off) === 4) {
        if (len < 20) { this.counters.inc('bad_ip'); continue; }
        s = this.sessions.router.lookup(ipv4Dst(buf, off));
      } else {
        const r = this.lookup6(buf, off, len);
        if (r === null) continue;
        s = r;
      }
      if (!s) { this.counters.inc('no_route'); continue; }
      if (s.tx.count === 0) pending.push(s);
      dataFrame(s.tx, buf, off, len); // the frame header goes into the headroom: no copy
    }
  }

  /**
   * --dev tap, one shared TAP: each frame of the batch into the tx of the client that holds its
   * destination MAC; a broadcast or multicast frame into every client's (the same bytes: each
   * entry points at them, nothing is copied).
   */
  private sortFrames(b: PacketBatch): void {
    const buf = b.buf, pending = this.pending;
    for (let i = 0; i < b.count; i++) {
      const off = b.offs[i], len = b.lens[i];
      if (len < ETHER_HEADER_LEN) { this.counters.inc('bad_ethernet'); continue; }
      if (isGroupDst(buf, off)) {
        for (const s of this.sessions.clientList()) {
          if (s.tx.count === 0) pending.push(s);
          dataFrame(s.tx, buf, off, len);
        }
        continue;
      }
      const s = this.macs.get(etherDst(buf, off));
      if (s === undefined) { this.counters.inc('no_route'); continue; }
      if (s.tx.count === 0) pending.push(s);
      dataFrame(s.tx, buf, off, len);
    }
  }

  /** The session an IPv6 packet from the TUN goes to; null when it was dropped (counted). */
  private lookup6(buf: Buffer, off: number, len: number): Session | undefined | null {
    const v6 = this.v6;
    if (len < IPV6_HEADER_LEN || ipVersion(buf, off) !== 6) { this.counters.inc('bad_ip'); return null; }
    // The kernel's own link traffic on the TUN (its router and neighbour solicitations, MLD).
    if (isLinkChatter6(buf, off)) { this.counters.inc('ipv6_link_local'); return null; }
    if (v6 === null) { this.counters.inc('not_ipv4'); return null; }
    if (len > this.cfg.mtu) {
      // (Only when the TUN's MTU was raised behind our back: the kernel checks it first.)
      this.counters.inc('too_big');
      const ptb = packetTooBig6(buf, off, len, this.cfg.mtu, v6.serverBytes);
      if (ptb !== null) this.tun?.write(ptb);
      return null;
    }
    return v6.isHostAddress(buf, off + 24) ? this.sessions.router6.lookup(buf.readUInt32BE(off + 36)) : undefined;
  }

  /** Seals the first `count` frames of `frames` for one session and sends the datagrams. */
  private send(s: Session, frames: PacketBatch, count: number, now: number): void {
    const view = s.core.encapsulate(frames, count, this.sealRing.next(), now);
    if (view !== null) this.sock.sendBatch(view, s.peer);
  }

  // ---- the control path: acting on what a session's core asked for -----------------------

  /** Sends what the core queued, applies policy to its events, ends the session if it ended. */
  act(s: Session, now: number): void {
    this.work = true;
    const out = s.core.out;
    while (out.datagrams.length || out.events.length) {
      for (const d of out.datagrams) this.sock.send(d, s.peer);
      const events = out.events.slice();
      out.clear();
      for (const ev of events) {
        if (ev.type === 'established') this.onEstablished(s, now);
        else if (ev.type === 'hello') this.onHello(s, ev.msg.cn, now);
        else if (ev.type === 'invalid') this.admission.logs.warn('bad control message', now, 'bad control message', { remote: s.key, error: ev.error });
      }
    }
    if (out.close) this.end(s, out.close);
    else this.armChannelTimer(s);
  }

  /** The DTLS handshake is done: the certificate names the client. */
  private onEstablished(s: Session, now: number): void {
    const dtls = (s.core.channel as DtlsChannel).conn;
    const peer = dtls.peer();
    s.cn = peer?.cn ?? '';
    s.fingerprint = peer?.fingerprint256 ?? null;
    log.debug('handshake done', { remote: s.key, cn: s.cn, cipher: dtls.info().cipher });
    this.admit(s, now);
  }

  private onHello(s: Session, cn: string | undefined, now: number): void {
    if (s.core.channel.kind !== 'plaintext' || s.cn) return;
    if (!cn) { log.warn('plaintext hello without a cn', { remote: s.key }); return; }
    s.cn = cn; // lab mode: the identity is only claimed, nothing proves it
    this.admit(s, now);
  }

  /** Authorization and address assignment, shared by both modes: the core sends config or refuse. */
  private admit(s: Session, now: number): void {
    let r = this.admission.check(s);
    if (r === null) {
      const old = this.sessions.fromCn(s.cn);
      if (old && old !== s) this.closeSession(old, `replaced by a new connection from ${s.key}`, true, now);
      const lease = this.admission.lease(s);
      if ('address' in lease) {
        this.admission.handshakeOver(s);
        this.sessions.connect(s, lease, now);
        if (this.tap) s.l2 = new L2Guard(this.l2Limits, now, (mac) => this.macs.heldByOther(mac, s));
        if (this.links !== null) this.openLink(s, this.links, now);
        else this.accepted(s, now);
        return;
      }
      r = lease;
    }
    this.admission.logs.warn(r.log, now, r.log, { cn: s.cn, remote: s.key, ...(r.dir ? { dir: r.dir } : {}) });
    if (r.invalidCn) s.cn = ''; // (not kept, not shown again)
    s.core.refuse(r.reason, now);
  }

  /** The client may use the tunnel now: its config goes out, the connect hook runs. */
  private accepted(s: Session, now: number): void {
    s.announced = true;
    s.core.accept(this.configFor(s), now);
    log.info('client connected', {
      cn: s.cn, address: s.addressStr, remote: s.key, mode: s.core.channel.kind, ...(s.address6 ? { address6: s.address6Str } : {}),
      ...(s.link ? { dev: s.link.name } : {}),
    });
    this.hooks.run(this.cfg.onConnect, 'connect', { tun: this.devName(s), cn: s.cn, address: s.addressStr, address6: s.address6Str, remote: s.key });
  }

  /**
   * p2p: the session's own TUN, opened now, configured by the link-up script; then the client
   * gets its config and the link's program runs. A device or script that fails ends the
   * session (the client tries again later); so does a program whose "up" exits nonzero.
   */
  private openLink(s: Session, links: Links, now: number): void {
    let link: Link;
    try {
      link = links.create({
        cn: s.cn, local: this.pool.serverAddress, peer: s.addressStr,
        local6: s.address6 ? this.v6!.serverAddress : '', peer6: s.address6Str, remote: s.key,
      }, (b, t) => this.onLinkBatch(s, b, t));
    } catch (err) {
      this.closeSession(s, `no TUN for this client: ${(err as Error).message}`, true, now);
      return;
    }
    s.link = link;
    log.debug('link open', { cn: s.cn, dev: link.name });
    links.configure(link).then(() => {
      if (s.gone || link.state === 'closed') return;
      void links.up(link).then((r) => {
        if (!r.ok && !s.gone && s.link === link) this.closeSession(s, `link program failed on up: ${r.why}`, true);
      });
      const t = monotonicMs();
      this.accepted(s, t);
      this.act(s, t);
    }, (err: Error) => {
      if (!s.gone) this.closeSession(s, `cannot configure ${link.name}: ${err.message}`, true);
    });
  }

  private configFor(s: Session): ConfigMsg {
    const cfg = this.cfg, v6 = this.v6;
    return {
      type: 'config', v: 1, address: s.addressStr, prefix: cfg.pool.prefix, gateway: this.pool.serverAddress,
      mtu: cfg.mtu, routes: cfg.routes, redirectGateway: cfg.redirectGateway, dns: cfg.dns,
      keepaliveSec: cfg.keepaliveSec, timeoutSec: cfg.timeoutSec,
      // Optional (docs/PROTOCOL.md §8): the client's end is a point-to-point link too.
      ...(this.links ? { topology: 'p2p' as const } : {}),
      // Optional fields (docs/PROTOCOL.md §8): a client from before IPv6 ignores them.
      ...(v6 && s.address6 ? {
        address6: s.address6Str, prefix6: v6.prefix, gateway6: v6.serverAddress,
        routes6: cfg.routes6, redirectGateway6: cfg.redirectGateway, dns6: cfg.dns6,
      } : {}),
      ...(this.tap ? { dev: 'tap' as const } : {}),
      ...(cfg.dhcp ? { dhcp: true } : {}),
    };
  }

  /** While handshaking, the channel's own timer (DTLS retransmission) runs. */
  private armChannelTimer(s: Session): void {
    const ms = s.core.channelTimerMs();
    if (s.timer) clearTimeout(s.timer);
    s.timer = ms >= 0 ? setTimeout(() => { s.timer = null; s.core.onChannelTimer(); this.act(s, monotonicMs()); }, Math.max(ms, 1)) : null;
  }

  /** A session the server itself ends; `notify` tells the client (bye, close_notify). */
  closeSession(s: Session, reason: string, notify: boolean, now = monotonicMs()): void {
    s.core.close(reason, notify, now);
    this.act(s, now);
  }

  /** The session ended (core.out.close): out of the table, logged, the hook run. */
  private end(s: Session, c: Close): void {
    if (s.gone) return;
    if (s.timer) clearTimeout(s.timer);
    s.core.channel.destroy();
    if (s.link !== null) {
      this.tunq.forget(s.link.dev); // (its fd goes now: nothing queued may be written to it)
      this.links!.close(s.link);
    }
    this.sessions.remove(s);
    if (s.l2) this.macs.removeAll(s.l2.macs, s);
    this.admission.handshakeOver(s);
    const reason = closeText(c, this.cfg.timeoutSec);
    if (c.code === 'handshake-failed') this.admission.logs.warn('handshake failed', monotonicMs(), 'handshake failed', { remote: s.key, reason: c.reason });
    if (s.announced) {
      log.info('client disconnected', { cn: s.cn, address: s.addressStr, remote: s.key, reason, ...(s.link ? { dev: s.link.name } : {}) });
      this.hooks.run(this.cfg.onDisconnect, 'disconnect', { tun: this.devName(s), cn: s.cn, address: s.addressStr, remote: s.key });
    } else if (s.address) {
      log.info('client gone before its link was up', { cn: s.cn, address: s.addressStr, remote: s.key, reason, ...(s.link ? { dev: s.link.name } : {}) });
    } else {
      log.debug('session ended before it was established', { remote: s.key, reason });
    }
  }

  /** Keepalives, dead peers, stuck handshakes: once a second. */
  private onTick(): void {
    const now = monotonicMs();
    this.admission.logs.flush(now);
    if (this.dtls && now - this.cookieRotatedAt >= COOKIE_ROTATE_MS) {
      this.dtls.rotateCookieSecret();
      this.cookieRotatedAt = now;
    }
    for (const s of this.sessions.all()) {
      s.core.tick(now);
      if (!s.core.out.empty) this.act(s, now);
    }
  }

  /** A new peer's session: the shared core with the server's timers. */
  newSession(ch: Channel, peer: Peer): Session {
    const cfg = this.cfg;
    const core = new SessionCore('server', ch, {
      keepaliveMs: cfg.keepaliveSec * 1000, deadMs: cfg.timeoutSec * 1000, upWithinMs: HANDSHAKE_TIMEOUT_MS,
    }, this.counters, monotonicMs());
    const s = new Session(core, peer, PacketBatch.over(this.share.rx.buf, BATCH));
    this.sessions.add(s);
    return s;
  }

  /** SIGHUP: re-read the authorized directory and disconnect clients no longer listed. */
  reloadAuthorized(): void {
    if (!this.authz) return;
    const { added, removed } = this.authz.scan();
    log.info('authorized clients reloaded', { added: added.join(',') || '-', removed: removed.join(',') || '-', total: this.authz.list.length });
    for (const cn of removed) {
      const s = this.sessions.fromCn(cn);
      if (s) this.closeSession(s, 'no longer authorized', true);
    }
  }

  snapshot(): ServerStatus {
    const a = this.sock.address();
    return {
      mode: this.cfg.plaintext ? 'plaintext' : 'dtls',
      dev: this.cfg.dev,
      listen: a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
      tun: this.tun?.name ?? this.cfg.tunName,
      topology: this.cfg.topology,
      pool: this.pool.cidr,
      serverAddress: this.pool.serverAddress,
      ...(this.v6 ? { pool6: this.v6.text, serverAddress6: this.v6.serverAddress } : {}),
      uptimeSec: Math.round((monotonicMs() - this.started) / 1000),
      clients: this.sessions.clients().map((s) => sessionStatus(s, monotonicMs())),
      drops: this.counters.snapshot(),
      unauthenticated: { ...this.admission.unauthenticated },
      ...(this.cfg.tunGro ? { groMerged: this.groMerged() } : {}),
      ...(this.cfg.handoffYield ? { handoff: handoffStats() } : {}),
      ...(this.cfg.float && !this.cfg.plaintext ? { roaming: { moves: this.admission.moves, trials: this.admission.trials } } : {}),
    };
  }

  /** TCP segments merged in TUN writes: the shared TUN's, or every open link's. */
  private groMerged(): number {
    if (this.tun) return this.tun.coalesced;
    let n = 0;
    for (const l of this.links?.open ?? []) n += l.dev.coalesced;
    return n;
  }

  /** SIGTERM/SIGINT: tell every client, remove the TUN and our firewall rules. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    log.info('shutting down', { clients: this.sessions.connected });
    for (const s of this.sessions.all()) this.closeSession(s, 'server shutting down', true);
    this.pool.flush();
    if (this.tick) clearInterval(this.tick);
    await this.status?.close();
    // Give queued datagrams a moment to leave before the socket closes.
    if (this.sock) await new Promise((r) => setTimeout(r, 50));
    // (After a failed start, some of these were never made.)
    this.sock?.close();
    const name = this.tun?.name ?? this.links?.wildcard ?? this.cfg.tunName;
    this.tun?.close();
    for (const l of this.links?.open ?? []) this.links!.close(l);
    // (The links' programs are told "down" before the process exits.)
    await this.links?.idle(PROGRAM_WAIT_MS);
    if (!this.initRan) { log.info('stopped'); return; }
    const topo = this.cfg.topology;
    try {
      await runInitScript('server-init.sh', 'down', { TOPOLOGY: topo, TUN: name, POOL: this.pool.cidr, NAT_OUT: this.cfg.natOut ?? '', POOL6: this.v6?.text ?? '', BRIDGE: this.cfg.bridge ?? '' });
    } catch (err) {
      // Expected after --user: an unprivileged process cannot change the firewall.
      log.warn(`firewall rules tagged minivpn:${name} were not removed: ${(err as Error).message}; as root run: TOPOLOGY=${topo} TUN=${name} scripts/server-init.sh down`);
    }
    log.info('stopped');
  }
}

/** How the server's log says why a session ended. */
function closeText(c: Close, timeoutSec: number): string {
  switch (c.code) {
    case 'refused': return `refused: ${c.reason}`;
    case 'bye': return `client said bye: ${c.reason}`;
    case 'peer-closed': return `client closed: ${c.reason}`;
    case 'dead': return `no traffic for ${timeoutSec}s (dead peer)`;
    case 'handshake-failed': return 'handshake failed';
    case 'no-answer': return `handshake did not finish (${c.reason})`;
    case 'local': return c.reason;
  }
}
