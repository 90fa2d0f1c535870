// The VPN client: connect, verify the server, receive the config, bring up the TUN with
// its address, MTU and routes, then move packets. If the server goes away (restart,
// network loss) it reconnects by itself with a capped backoff and keeps its TUN and
// routes in place meanwhile, so traffic waits instead of leaking around the tunnel.
//
// This file is the event loop, a thin I/O shell around the session core (src/session/core.ts),
// which the server shares. The data path is two straight lines:
//
//   UDP batch -> core.decapsulate (open, unframe) -> TUN batch write
//   TUN batch -> core.encapsulate (frame, seal) -> UDP batch send
import { X509Certificate } from 'node:crypto';
import dns from 'node:dns/promises';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BatchRing, PacketBatch } from '../batch';
import { ClientConfig } from '../config';
import { UdpBatch, UdpSocket } from '../conn/udp';
import { Counters } from '../device/counters';
import { TunQueue } from '../device/tunqueue';
import { DtlsContext } from '../dtls/dtls';
import { logger } from '../log';
import { monotonicMs } from '../clock';
import { handoffStats, readTunAfterWrite, readUdpAfterSend, setHandoffYield } from '../os/latency';
import { linkEnv, runInitScript, spawnProgram } from '../os/scripts';
import { ensurePrivateDir } from '../os/statedir';
import { Channel, DtlsChannel, PlaintextChannel } from '../session/channel';
import { Close, dataFrame, SessionCore } from '../session/core';
import { PathChanges } from './pathchange';
import { checkPushed } from './pushed';
import { Tun } from '../tun/tun';
import { ConfigMsg } from '../wire/control';
import { Cidr, parseCidr } from '../wire/ip';
import { Cidr6, ipv6ToBytes, isLinkChatter6, packetTooBig6, parseCidr6 } from '../wire/ip6';
import { FRAME_OVERHEAD, closeReason, looksLikeDtls, looksLikeFrame } from '../wire/frame';
import { ETHER_HEADER_LEN } from '../wire/ether';

const log = logger('client');
const BATCH = 64;
const SLOT = 2048;
/** From the first datagram to the server's config at most. */
const CONFIG_WAIT_MS = 10_000;

type Outcome = { kind: 'retry'; why: string } | { kind: 'fatal'; why: string } | { kind: 'stopped' };

export class VpnClient {
  private ctx: DtlsContext | null = null;
  private sock: UdpSocket | null = null;
  private readonly udpRx = new UdpBatch(BATCH, SLOT);
  /** The current connection's protocol (null between connections). */
  private core: SessionCore | null = null;
  private tun: Tun | null = null;
  private applied: ConfigMsg | null = null;
  /** --dev tap: the largest frame carried (MTU + header), set before client-init.sh runs (its DHCP exchange crosses the tunnel). */
  private maxFrame = 0;
  /** Our tunnel IPv6 address (16 bytes) while the config gives one: IPv6 goes through the tunnel then. */
  private address6: Buffer | null = null;
  private serverIp = '';
  // Decrypted frames of one receive batch, and the TUN packets among them (written at its end).
  private readonly rx: PacketBatch;
  private readonly tunq: TunQueue;
  private readonly sealRing = new BatchRing(4, BATCH, SLOT);
  /** The packets of a TUN read with the frame header in front: entries into the TUN's buffer. */
  private tx: PacketBatch | null = null;
  /** Set by a batch that did more than move packets (the callbacks' return value). */
  private work = false;
  private stopped = false;
  private end: ((o: Outcome) => void) | null = null;
  private tick: NodeJS.Timeout | null = null;
  private hsTimer: NodeJS.Timeout | null = null;
  private mismatchLogged = false;
  /** Ends the backoff sleep early (stop()). */
  private wake: () => void = () => undefined;
  /** When the client may open a new socket for a changed path. */
  private readonly pathChanges = new PathChanges();
  /** Drops by reason over all connections (garbage, unauthenticated, replays and forgeries). */
  private readonly counters = new Counters();
  /** Counters a student can look at in the log when the client stops. */
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
    try {
      ensurePrivateDir(path.resolve(this.cfg.stateDir));
    } catch (err) {
      log.error((err as Error).message);
      return 1;
    }
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
    log.info(`connecting to ${this.serverWhere()}`, { mode: cfg.plaintext ? 'plaintext' : 'dtls', attempt, ...(cfg.udpGso ? { udpGso: 'on' } : {}) });

    const outcome = new Promise<Outcome>((resolve) => (this.end = resolve));
    this.listen(sock);
    const now = monotonicMs();
    const channel: Channel = this.ctx ? new DtlsChannel(this.ctx.connect(cfg.serverName), this.rx) : new PlaintextChannel();
    const claim = cfg.plaintext ? (cfg.plaintextCn ?? cfg.name ?? undefined) : undefined;
    const core = this.core = new SessionCore('client', channel, { keepaliveMs: 0, deadMs: CONFIG_WAIT_MS, upWithinMs: CONFIG_WAIT_MS }, this.counters, now, claim, cfg.dev);
    core.start(now);
    this.act(now);
    this.tick = setInterval(() => this.onTick(core), 1000);

    const o = await outcome;
    if (this.tick) clearInterval(this.tick);
    this.tick = null;
    if (this.hsTimer) clearTimeout(this.hsTimer);
    if (o.kind !== 'retry' && this.sock) {
      // Stopping, or giving up (a refused config): the server is told, if it can still hear us.
      core.close(o.kind === 'stopped' ? 'client stopping' : o.why, true, monotonicMs());
      for (const d of core.out.datagrams) this.sock.send(d, null);
    }
    core.channel.destroy();
    this.core = null;
    await new Promise((r) => setTimeout(r, o.kind === 'stopped' ? 50 : 0));
    this.sock?.close(); // (a new socket after a path change, or the first)
    this.sock = null;
    return o;
  }

  private listen(sock: UdpSocket): void {
    sock.onDatagrams(this.udpRx, (rx, now) => this.onDatagrams(rx, now), (errno) => {
      // ECONNREFUSED: an ICMP port unreachable came back, nothing listens on the server's port.
      const why = errno === 111 ? 'the server port is closed (ICMP port unreachable)' : `network error (errno ${errno})`;
      if (!this.core?.up) this.finish({ kind: 'retry', why });
    });
  }

  private onTick(core: SessionCore): void {
    const now = monotonicMs();
    core.tick(now);
    // Our address went away (a laptop changed networks): a new socket, before the core sends.
    if (core.up && this.sock && !localAddressPresent(this.sock.address().address)) this.newPath('our address is gone', now, true);
    this.act(now);
  }

  /**
   * Roaming, the client's half: the path to the server changed (our address went away, a send
   * failed, or a probe went unanswered). A new socket gets a new source address and port; the
   * DTLS session, the TUN and the routes stay; a keepalive at once tells the server where we
   * are now (it moves the session on that authenticated record). `gone`: the old socket's own
   * address is gone, so a new socket is tried at once; on a suspicion at most once a second
   * (pathchange.ts).
   */
  private newPath(why: string, now: number, gone: boolean): void {
    const core = this.core, old = this.sock;
    if (core === null || old === null || !core.up || !this.pathChanges.may(now, gone)) return;
    let sock: UdpSocket;
    try {
      sock = UdpSocket.connect(this.serverIp, this.cfg.server.port, { gso: this.cfg.udpGso });
    } catch (err) {
      if (this.pathChanges.tried(now, false)) log.warn(`path to the server changed (${why}), and no new one yet: ${(err as Error).message}`);
      return;
    }
    this.pathChanges.tried(now, true);
    // (Closed on the next turn: this may run inside the old socket's own callback.)
    setImmediate(() => old.close());
    this.sock = sock;
    this.listen(sock);
    const a = sock.address();
    log.info(`path to the server changed (${why}): now from ${a.address}:${a.port}`);
    core.keepalive(now);
    this.act(now);
  }


  /**
   * A send failed. A path change only if our address is gone: a full send buffer (EAGAIN
   * under load) fails a send too, and a new socket would not help. Checked at most every
   * 100 ms (the check lists the host's interfaces).
   */
  private sendFailed(now: number): void {
    if (this.sock === null || now - this.sendFailCheckedAt < 100) return;
    this.sendFailCheckedAt = now;
    if (!localAddressPresent(this.sock.address().address)) this.newPath('a send failed', now, true);
  }
  private sendFailCheckedAt = -Infinity;

  private finish(o: Outcome): void {
    const end = this.end;
    this.end = null;
    end?.(o);
  }

  // ---- UDP -> TUN -------------------------------------------------------------------------

  private onDatagrams(rx: UdpBatch, now: number): boolean {
    this.work = false;
    const core = this.core;
    // A connected socket only hears the server.
    for (let i = 0; core !== null && i < rx.count; i++) {
      if (this.mismatched(core.channel, rx, i)) continue;
      this.tunq.makeRoom(); // room for this datagram's frames
      const work = core.decapsulate(rx, i, now);
      const pk = core.packets;
      if (this.tun !== null) {
        const tap = this.cfg.dev === 'tap';
        for (let k = 0; k < pk.count; k++) {
          const off = pk.offs[k], len = pk.lens[k];
          if (tap ? !this.frameFits(len) : pk.buf[off] >> 4 === 6 && !this.fromTunnel6(core, pk.buf, off, len, now)) continue;
          this.tunq.add(this.tun, pk.buf, off, len);
        }
      }
      this.stats.rxPackets += pk.count;
      if (work) this.act(now);
    }
    this.tunq.flush();
    if (readTunAfterWrite(this.tun, this.tunq.takeWritten(), rx.count, now)) this.work = true;
    return this.work;
  }

  /**
   * --dev tap: whether an Ethernet frame (either way) fits the tunnel: its header and at most
   * the MTU behind it. What is inside is the server's side of the segment, and ours: the kernel
   * handles ARP, neighbour discovery and DHCP on the TAP as on any Ethernet link.
   */
  private frameFits(len: number): boolean {
    if (len >= ETHER_HEADER_LEN && len <= this.maxFrame) return true;
    this.counters.inc(len < ETHER_HEADER_LEN ? 'bad_ethernet' : 'too_big');
    return false;
  }

  /**
   * An IPv6 packet from the server: true when it may go into the TUN. One over our MTU is
   * dropped and its sender told (Packet Too Big, through the tunnel); without IPv6 in the
   * tunnel, none may.
   */
  private fromTunnel6(core: SessionCore, buf: Buffer, off: number, len: number, now: number): boolean {
    if (this.address6 === null || this.applied === null) { this.counters.inc('not_ipv4'); return false; }
    if (len <= this.applied.mtu) return true;
    this.counters.inc('too_big');
    this.sendTooBig6(core, buf, off, len, now);
    return false;
  }

  /** An ICMPv6 Packet Too Big for an IPv6 packet we drop, sent back through the tunnel. */
  private sendTooBig6(core: SessionCore, buf: Buffer, off: number, len: number, now: number): void {
    const ptb = packetTooBig6(buf, off, len, this.applied!.mtu, this.address6!);
    if (ptb === null || this.sock === null) return;
    const b = new PacketBatch(1, ptb.length + 1);
    ptb.copy(b.buf, 1);
    dataFrame(b, b.buf, 1, ptb.length);
    const view = core.encapsulate(b, 1, this.sealRing.next(), now);
    if (view !== null) this.sock.sendBatch(view, null);
  }

  /**
   * A datagram of the other mode (the peers were started differently): unauthenticated, so it
   * may end a handshake attempt with a clear reason, never a live session, and it is not
   * enough to give up for good (anyone who can send us a datagram could make us): a DTLS client
   * says why and tries again later. Plaintext mode (labs) stops.
   */
  private mismatched(ch: Channel, rx: UdpBatch, i: number): boolean {
    const buf = rx.buf, off = rx.offs[i], len = rx.lens[i];
    if (ch.kind === 'dtls' && looksLikeFrame(buf, off, len)) {
      this.work = true;
      if (ch.state === 'open') { this.counters.inc('mismatch_plaintext'); return true; }
      const said = closeReason(buf.subarray(off + 1, off + len));
      this.mismatch(`the server answered in plaintext ("${said}"): it runs --insecure-plaintext, and this client requires DTLS`, false);
      return true;
    }
    if (ch.kind === 'plaintext' && looksLikeDtls(buf, off, len)) {
      this.work = true;
      this.mismatch('the server answered with DTLS: it requires DTLS, and this client runs --insecure-plaintext', true);
      return true;
    }
    return false;
  }

  private mismatch(what: string, fatal: boolean): void {
    if (!this.mismatchLogged) log.error(`mode mismatch: ${what}`);
    this.mismatchLogged = true;
    this.finish({ kind: fatal ? 'fatal' : 'retry', why: `mode mismatch with ${this.serverIp}: ${what}` });
  }

  // ---- TUN -> UDP -------------------------------------------------------------------------

  private onTunBatch(b: PacketBatch, now: number): boolean {
    const core = this.core, tx = this.tx;
    if (core === null || tx === null || this.sock === null) return false; // reconnecting: packets wait in no queue
    tx.count = 0;
    const tap = this.cfg.dev === 'tap';
    for (let i = 0; i < b.count; i++) {
      const buf = b.buf, off = b.offs[i], len = b.lens[i];
      if (tap ? !this.frameFits(len) : buf[off] >> 4 === 6 && !this.toTunnel6(core, buf, off, len, now)) continue;
      dataFrame(tx, buf, off, len); // header into the headroom: no copy
    }
    if (tx.count === 0) return false;
    const view = core.encapsulate(tx, tx.count, this.sealRing.next(), now);
    if (view === null) return false;
    const sent = this.sock.sendBatch(view, null); // connected socket: no address per datagram
    if (sent === 0 && view.count > 0) this.sendFailed(now);
    this.stats.txPackets += b.count;
    return readUdpAfterSend(this.sock, b.count, now);
  }

  /**
   * An IPv6 packet from our TUN: true when it goes to the server. The OS's own link traffic
   * (router and neighbour solicitations, MLD) stays here, counted; without IPv6 in the tunnel
   * nothing does.
   */
  private toTunnel6(core: SessionCore, buf: Buffer, off: number, len: number, now: number): boolean {
    if (len < 40) { this.counters.inc('bad_ip'); return false; }
    // On a point-to-point link (the server's p2p topology) the link's own traffic crosses it:
    // the far end is a router's interface, not the server's shared TUN.
    if (isLinkChatter6(buf, off) && this.applied?.topology !== 'p2p') { this.counters.inc('ipv6_link_local'); return false; }
    if (this.address6 === null) { this.counters.inc('not_ipv4'); return false; }
    if (len > this.applied!.mtu) {
      // (Only when the TUN's MTU was raised behind our back: the kernel checks it first.) The
      // answer comes from the tunnel's other end, the next hop as the OS sees it.
      this.counters.inc('too_big');
      const ptb = packetTooBig6(buf, off, len, this.applied!.mtu, ipv6ToBytes(this.applied!.gateway6!));
      if (ptb !== null) this.tun?.write(ptb);
      return false;
    }
    return true;
  }

  // ---- the control path: acting on what the core asked for ---------------------------------

  /** Sends what the core queued, acts on its events, ends the connection if it ended. */
  private act(now: number): void {
    const core = this.core, sock = this.sock;
    if (core === null || sock === null) return;
    this.work = true;
    const out = core.out;
    let failed = 0;
    for (const d of out.datagrams) if (sock.send(d, null) === 0) failed++;
    if (failed > 0 && core.up) setImmediate(() => this.sendFailed(monotonicMs()));
    for (const ev of out.events) {
      if (ev.type === 'established' && core.channel instanceof DtlsChannel) {
        const info = core.channel.conn.info();
        log.info('DTLS handshake done', { version: info.version, cipher: info.cipher, server: core.channel.conn.peer()?.cn });
      } else if (ev.type === 'config') {
        void this.applyConfig(ev.msg).catch((err) => this.finish({ kind: 'fatal', why: `cannot apply the server's config: ${(err as Error).message}` }));
      } else if (ev.type === 'invalid' && ev.error.startsWith('config.')) {
        // Nothing of a bad config is applied; the same server would push it again.
        this.finish({ kind: 'fatal', why: `refused the server's config: ${ev.error}` });
      } else if (ev.type === 'invalid') {
        log.warn('bad control message from server', { error: ev.error });
      } else if (ev.type === 'path-suspect') {
        setImmediate(() => this.newPath('no answer to a probe', monotonicMs(), false));
      }
    }
    out.clear();
    if (out.close) this.finish(this.outcome(out.close, now));
    else this.armChannelTimer();
  }

  /** The connection ended: retry, or stop (refused, a certificate refused, a lab mode mismatch). */
  private outcome(c: Close, now: number): Outcome {
    const core = this.core!;
    switch (c.code) {
      case 'refused': return { kind: 'fatal', why: `refused by the server: ${c.reason}` };
      case 'handshake-failed': return { kind: 'fatal', why: `DTLS handshake with ${this.serverIp} failed: ${c.reason}` };
      case 'bye': return { kind: 'retry', why: `server said bye: ${c.reason}` };
      case 'dead': return { kind: 'retry', why: `no traffic from the server for ${Math.round((now - core.lastSeen) / 1000)}s` };
      case 'no-answer':
        return { kind: 'retry', why: core.channel.state === 'failed' ? `DTLS handshake failed: ${c.reason}` : `no answer from the server within ${CONFIG_WAIT_MS / 1000}s` };
      case 'peer-closed':
        if (core.channel.kind === 'plaintext' && c.reason.includes('DTLS')) {
          this.mismatch(`the server says: ${c.reason} (this client runs --insecure-plaintext)`, true);
          return { kind: 'fatal', why: `mode mismatch with ${this.serverIp}: the server says: ${c.reason}` };
        }
        return { kind: 'retry', why: `server closed the tunnel: ${c.reason}` };
      case 'local': return { kind: 'stopped' };
    }
  }

  /** While handshaking, the channel's own timer (DTLS retransmission) runs. */
  private armChannelTimer(): void {
    const core = this.core;
    if (this.hsTimer) clearTimeout(this.hsTimer);
    const ms = core ? core.channelTimerMs() : -1;
    this.hsTimer = ms >= 0 ? setTimeout(() => { this.hsTimer = null; core!.onChannelTimer(); this.act(monotonicMs()); }, Math.max(ms, 1)) : null;
  }

  /** Creates the TUN on the first config; on a reconnect with the same config keeps it as it is. */
  private async applyConfig(pushed: ConfigMsg): Promise<void> {
    // Both ends must frame the same thing: a server from before TAP mode pushes no `dev`.
    if ((pushed.dev ?? 'tun') !== this.cfg.dev) {
      this.finish({ kind: 'fatal', why: `refused the server's config: the server carries ${pushed.dev === 'tap' ? 'Ethernet frames (dev tap)' : 'IP packets (dev tun)'}, and this client runs --dev ${this.cfg.dev}` });
      return;
    }
    // Checked before anything is applied: a refused config leaves the host as it was.
    const checked = checkPushed(pushed, { serverIp: this.serverIp, lans: hostNetworks(this.cfg.tunName), lans6: hostNetworks6(this.cfg.tunName) },
      { routeNopull: this.cfg.routeNopull, pullFilters: this.cfg.pullFilters });
    if (!checked.ok) {
      this.finish({ kind: 'fatal', why: `refused the server's config: ${checked.reason}` });
      return;
    }
    if (checked.ignored.length) log.info('pushed items ignored', { items: checked.ignored.join(', ') });
    const c = checked.config;
    const same = this.applied !== null && sameSetup(this.applied, c);
    // Full tunnel, and IPv6 would go around it: blocked on the other interfaces unless allowed.
    const block6 = c.redirectGateway && !c.redirectGateway6 && !this.cfg.allowIpv6Leak;
    if (!same) {
      if (this.tun && this.applied) {
        await this.linkProgram('down');
        await this.routesDown();
      }
      if (!this.tun) {
        this.tun = Tun.open({ name: this.cfg.tunName, batchSize: BATCH, maxPacket: SLOT - 8, headroom: FRAME_OVERHEAD, gro: this.cfg.tunGro, tap: this.cfg.dev === 'tap' });
        this.tx = PacketBatch.over(this.tun.rx.buf, BATCH);
        this.tun.onPackets((b, now) => this.onTunBatch(b, now));
      }
      // (A TAP is an Ethernet link even with the p2p topology: no peer address, a next hop instead.)
      const p2p = c.topology === 'p2p' && this.cfg.dev !== 'tap';
      this.maxFrame = c.mtu + ETHER_HEADER_LEN;
      await runInitScript('client-init.sh', 'up', {
        TUN: this.tun.name,
        ADDR: c.dhcp ? 'dhcp' : `${c.address}/${c.prefix}`,
        PEER: p2p ? c.gateway : '',
        PEER6: p2p && c.address6 ? c.gateway6! : '',
        MTU: String(c.mtu),
        ROUTES: c.routes.join(' '),
        REDIRECT_GATEWAY: c.redirectGateway ? '1' : '0',
        SERVER_IP: this.serverIp,
        DNS: c.dns.join(' '),
        ADDR6: c.address6 ? `${c.address6}/${c.prefix6}` : '',
        ROUTES6: (c.routes6 ?? []).join(' '),
        REDIRECT_GATEWAY6: c.redirectGateway6 ? '1' : '0',
        DNS6: (c.dns6 ?? []).join(' '),
        BLOCK_IPV6_LEAK: block6 ? '1' : '0',
        // On an Ethernet link a route needs a next hop (otherwise the kernel ARPs for every
        // destination): the server's tunnel address.
        GATEWAY: this.cfg.dev === 'tap' ? c.gateway : '',
        GATEWAY6: this.cfg.dev === 'tap' && c.gateway6 ? c.gateway6 : '',
        STATE_DIR: this.stateDir(),
      });
      this.applied = c;
      this.address6 = c.address6 ? ipv6ToBytes(c.address6) : null;
      const r = await this.linkProgram('up');
      if (!r) return;
    }
    if (c.redirectGateway && !c.redirectGateway6) {
      log.info(this.cfg.allowIpv6Leak
        ? 'the server offers no IPv6 default route: IPv6 goes around the tunnel (--allow-ipv6-leak)'
        : 'the server offers no IPv6 default route: IPv6 on the other interfaces is blocked while the tunnel is up (--allow-ipv6-leak turns that off)');
    }
    const addr = c.dhcp ? `${interfaceAddress(this.tun!.name)} (by DHCP)` : `${c.address}/${c.prefix}`;
    log.info(`tunnel up: ${addr} on ${this.tun!.name}`, {
      server: this.serverWhere(), mtu: c.mtu, ...(this.cfg.dev === 'tap' ? { dev: 'tap' } : {}),
      routes: c.redirectGateway ? 'all (full tunnel)' : c.routes.join(',') || 'tunnel subnet only',
      mode: this.cfg.plaintext ? 'plaintext' : 'dtls',
      ...(c.topology === 'p2p' ? { topology: 'p2p', peer: c.gateway } : {}),
      ...(this.cfg.tunGro ? { gro: 'on' } : {}),
      ...(c.address6 ? { address6: `${c.address6}/${c.prefix6}` } : { ipv6: 'none' }),
    });
  }

  /** host:port of the server, an IPv6 address in brackets (its colons would run into the port's). */
  private serverWhere(): string {
    const port = this.cfg.server.port;
    return this.serverIp.includes(':') ? `[${this.serverIp}]:${port}` : `${this.serverIp}:${port}`;
  }

  /**
   * The program after "--" (PROG ARGS...) for the tunnel's TUN: TUN_EVENT=up once the TUN is
   * configured, down before it goes. A nonzero exit on up ends the client (fatal: it would
   * fail again). Returns false then.
   */
  private async linkProgram(event: 'up' | 'down'): Promise<boolean> {
    const prog = this.cfg.linkProgram, c = this.applied;
    if (prog.length === 0 || this.tun === null || c === null) return true;
    const env = linkEnv(event, this.tun.name, {
      cn: this.ownCn(), local: c.address, peer: c.gateway, local6: c.address6 ?? '', peer6: c.gateway6 ?? '',
      remote: `${this.serverIp.includes(':') ? `[${this.serverIp}]` : this.serverIp}:${this.cfg.server.port}`,
    });
    const r = await spawnProgram(prog, env, {
      timeoutMs: 30_000,
      output: (line, stream) => (stream === 'stderr' ? log.warn : log.info)(`link program ${event}: ${line}`),
    });
    if (r.ok) return true;
    log.warn(`link program failed on ${event}`, { program: prog[0], reason: r.why });
    if (event === 'up') this.finish({ kind: 'fatal', why: `the link program failed on up: ${r.why}` });
    return false;
  }

  /** Our CN: the certificate's, or the name claimed in plaintext mode. */
  private ownCn(): string {
    if (this.cfg.plaintext) return this.cfg.plaintextCn ?? '';
    try {
      const cn = /(?:^|\n)CN=([^\n]*)/.exec(new X509Certificate(fs.readFileSync(this.cfg.cert)).subject);
      return cn ? cn[1] : '';
    } catch {
      return this.cfg.name ?? '';
    }
  }

  private stateDir(): string {
    return path.resolve(this.cfg.stateDir, `client-${this.cfg.tunName}`);
  }

  private async routesDown(): Promise<void> {
    if (!this.tun) return;
    await runInitScript('client-init.sh', 'down', { TUN: this.tun.name, STATE_DIR: this.stateDir() }).catch((err) =>
      log.warn('restoring routes failed', { err }));
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
      if (this.applied) {
        await this.linkProgram('down');
        await this.routesDown();
      }
      this.tun.close();
      this.tun = null;
      this.applied = null;
      this.address6 = null;
    }
    this.stats.dropped = this.counters.total;
    log.info('stopped', {
      rxPackets: this.stats.rxPackets, txPackets: this.stats.txPackets, dropped: this.stats.dropped,
      ...(this.cfg.tunGro ? { groMerged: this.stats.groMerged } : {}),
      ...(this.cfg.handoffYield ? { handoffYields: handoffStats().yields } : {}),
    });
  }
}


/** The IPv4 address/prefix on interface `name` ('none' for none): what DHCP gave it. */
function interfaceAddress(name: string): string {
  const a = (os.networkInterfaces()[name] ?? []).find((x) => x.family === 'IPv4');
  return a?.cidr ?? 'none';
}

/** True while `address` (a socket's local address) is still one of this host's. */
function localAddressPresent(address: string): boolean {
  if (address === '' || address === '0.0.0.0' || address === '::') return true;
  const want = address.startsWith('::ffff:') ? address.slice(7) : address;
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.address === want) return true;
  }
  return false;
}

/** Whether two configs set up the TUN and routes the same way (a reconnect then changes nothing). */
function sameSetup(a: ConfigMsg, c: ConfigMsg): boolean {
  return a.address === c.address && a.prefix === c.prefix && a.gateway === c.gateway && a.topology === c.topology &&
    a.dhcp === c.dhcp && a.mtu === c.mtu && a.routes.join() === c.routes.join() &&
    a.redirectGateway === c.redirectGateway && a.address6 === c.address6 && a.prefix6 === c.prefix6 &&
    (a.routes6 ?? []).join() === (c.routes6 ?? []).join() && a.redirectGateway6 === c.redirectGateway6;
}

/** The IPv6 networks of this host's interfaces but the tunnel's own; link-local ones are every host's. */
function hostNetworks6(tunName: string): Cidr6[] {
  const out: Cidr6[] = [];
  for (const [name, list] of Object.entries(os.networkInterfaces())) {
    if (name === tunName) continue;
    for (const a of list ?? []) if (a.family === 'IPv6' && a.cidr && !/^fe[89ab]/i.test(a.address) && !a.internal) out.push(parseCidr6(a.cidr));
  }
  return out;
}

/** The IPv4 networks of this host's interfaces, but the tunnel's own (what pushed routes must not take away). */
function hostNetworks(tunName: string): Cidr[] {
  const out: Cidr[] = [];
  for (const [name, list] of Object.entries(os.networkInterfaces())) {
    if (name === tunName) continue;
    for (const a of list ?? []) if (a.family === 'IPv4' && a.cidr) out.push(parseCidr(a.cidr));
  }
  return out;
}
