// Admission: everything between a datagram from an unknown address and a client with a
// tunnel address. The stateless cookie exchange (DtlsContext.listen: a spoofed ClientHello
// costs one HelloVerifyRequest and no state), the handshake queue (a handshake step costs
// milliseconds of public-key crypto, so they run a few per event-loop turn and established
// sessions' traffic never waits behind a crowd of connecting clients), the limits, mode
// mismatches, and the decision who may stay: a valid CN, listed in the authorized directory,
// with a free address.
import { PacketBatch } from '../batch';
import { Peer, UdpSocket } from '../conn/udp';
import { DtlsContext } from '../dtls/dtls';
import { AuthorizedClients } from '../device/authz';
import { Counters } from '../device/counters';
import { PoolExhaustedError } from '../device/pool';
import { logger } from '../log';
import { monotonicMs } from '../clock';
import { Channel, DtlsChannel, PlaintextChannel } from '../session/channel';
import { isValidCn } from '../wire/control';
import { appRecordEpoch, encodeClose, FrameType, frameType, looksLikeDtls, looksLikeFrame, recordSeq } from '../wire/frame';
import { Session, SessionTable } from './sessions';

const log = logger('server');
const SLOT = 2048;
/** Handshakes in progress at most (beyond the connected clients). */
const MAX_HANDSHAKING = 2048;
/** Handshake datagrams processed per event-loop turn (each may cost a few ms of crypto). */
const HANDSHAKES_PER_TURN = 2;
/** Handshake datagrams waiting at most; beyond that they are dropped (DTLS retransmits). */
const HANDSHAKE_QUEUE = 4096;

/** Sessions a record from an unknown address is tried on at most (nearest sequence number first). */
const MOVE_CANDIDATES = 8;
/**
 * How far ahead of a session's highest authenticated record number a moved client's record
 * may be: the records it sent while its old path was dead were lost on the way.
 */
const MOVE_WINDOW = 1 << 20;

/** What admission needs from the server's event loop. */
export interface AdmissionHost {
  readonly sock: UdpSocket;
  /** Where DTLS channels open the records of a receive batch. */
  readonly receiveBatch: PacketBatch;
  /** A session for a new peer, in the table. */
  newSession(ch: Channel, peer: Peer): Session;
  /** The server's path for one datagram of a known session. */
  receive(s: Session, datagrams: PacketBatch, i: number, now: number): void;
  /** Acts on what a session's core asked for (sends, events, its end). */
  act(s: Session, now: number): void;
  /** The end of a turn's datagrams (the TUN queue is written). */
  endTurn(datagrams: number, now: number): void;
}

/** Why a client may not stay: `reason` goes to the client, `log` to our log. */
export interface Refusal { reason: string; log: string; dir?: string; invalidCn?: boolean }
/** A client's tunnel address. */
export interface Lease { address: number; addressStr: string }

export class Admission {
  private readonly queue: { msg: Buffer; peer: Peer }[] = [];
  private scheduled = false;
  private readonly mismatchLogged = new Map<string, number>();
  /** Roaming: the candidates of one datagram (reused), and the trial budget (a token bucket). */
  private readonly candidates: Session[] = [];
  private tokens: number;
  private tokensAt = 0;
  /** Trial decryptions so far (status), and sessions moved. */
  trials = 0;
  moves = 0;
  /** A queued datagram as packet 0 of a batch, which is what channels take. */
  private readonly oneIn = new PacketBatch(1, SLOT);

  constructor(
    private readonly host: AdmissionHost,
    private readonly sessions: SessionTable,
    private readonly counters: Counters,
    private readonly dtls: DtlsContext | null,
    private readonly authz: AuthorizedClients | null,
    /** Trials (and datagrams examined) per second at most; 0 turns roaming off (--no-float). */
    private readonly trialsPerSec: number,
  ) {
    this.tokens = trialsPerSec;
  }

  /**
   * The move rule (roaming, docs/PROTOCOL.md §5): datagram i of `rx` came from an address no
   * session owns. If it is a DTLS application-data record, the sessions it could belong to
   * (same epoch, record number a little ahead of the highest they authenticated, nearest
   * first, at most MOVE_CANDIDATES) try to open it. Returns the session whose record it was:
   * authenticated and fresh, so already processed (its packets are in core.packets, and its
   * control work in core.out); the caller moves the session to the sender. Null otherwise,
   * counted. Bounded: each datagram examined and each trial takes a token of the budget.
   */
  tryMove(rx: PacketBatch, i: number, now: number): Session | null {
    if (this.trialsPerSec === 0) return null;
    const buf = rx.buf, off = rx.offs[i], len = rx.lens[i];
    const epoch = appRecordEpoch(buf, off, len);
    if (epoch < 1) return null; // not a record of an open session: admission's queue
    if (!this.takeToken(now)) { this.counters.inc('move_budget'); return null; }
    const seq = recordSeq(buf, off);
    const cand = this.candidates;
    cand.length = 0;
    for (const [, s] of this.sessions.router.entries()) {
      const c = s.core;
      if (c.rxEpoch !== epoch || seq <= c.rxSeq || seq - c.rxSeq > MOVE_WINDOW) continue;
      let k = cand.length;
      while (k > 0 && cand[k - 1].core.rxSeq < c.rxSeq) k--; // nearest (highest rxSeq below seq) first
      if (k < MOVE_CANDIDATES) cand.splice(k, 0, s);
      if (cand.length > MOVE_CANDIDATES) cand.length = MOVE_CANDIDATES;
    }
    for (const s of cand) {
      if (!this.takeToken(now)) { this.counters.inc('move_budget'); return null; }
      this.trials++;
      if (s.core.tryDecapsulate(rx, i, now) !== null) return s;
    }
    this.counters.inc('move_refused');
    return null;
  }

  private takeToken(now: number): boolean {
    if (now !== this.tokensAt) {
      this.tokens = Math.min(this.trialsPerSec, this.tokens + ((now - this.tokensAt) * this.trialsPerSec) / 1000);
      this.tokensAt = now;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** Datagram i of `rx`, from a new peer or a session still handshaking: waits its turn. */
  enqueue(rx: PacketBatch, i: number, peer: Peer): void {
    if (this.queue.length >= HANDSHAKE_QUEUE) {
      this.counters.inc('garbage'); // a flood: the peer's DTLS retransmits later
      return;
    }
    this.queue.push({ msg: Buffer.from(rx.packet(i)), peer });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  private run(): void {
    const now = monotonicMs();
    this.scheduled = false;
    let n = 0;
    for (; n < HANDSHAKES_PER_TURN && this.queue.length; n++) {
      const { msg, peer } = this.queue.shift()!;
      const s = this.sessions.fromRemote(peer.key);
      if (s) this.host.receive(s, this.one(msg), 0, now);
      else if (this.dtls) this.newDtlsPeer(this.dtls, msg, peer, now);
      else this.newPlaintextPeer(msg, peer, now);
    }
    this.host.endTurn(n, now);
    if (this.queue.length && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
  }

  private one(msg: Buffer): PacketBatch {
    const b = this.oneIn;
    b.clear();
    if (!b.push(msg)) b.count = 0; // larger than any datagram we read: nothing to open
    return b;
  }

  private newDtlsPeer(dtls: DtlsContext, msg: Buffer, peer: Peer, now: number): void {
    if (looksLikeFrame(msg)) {
      this.counters.inc('mismatch_plaintext');
      this.logMismatch(peer.text, 'a plaintext tunnel packet arrived, but this server requires DTLS (is the client running --insecure-plaintext?)');
      // Tell a plaintext client why (unauthenticated, smaller than what it sent: no amplification).
      if (frameType(msg) === FrameType.CONTROL) this.host.sock.send(encodeClose('server requires DTLS'), peer);
      return;
    }
    if (this.sessions.size >= MAX_HANDSHAKING + this.sessions.router.size) {
      this.counters.inc('garbage');
      return;
    }
    const r = dtls.listen(msg, peer.text);
    if (r === null) {
      this.counters.inc('garbage');
      return;
    }
    if ('reply' in r) {
      for (const d of r.reply) this.host.sock.send(d, peer);
      return;
    }
    // The cookie was good: from here on the peer has state, a session in the table.
    const s = this.host.newSession(new DtlsChannel(r.conn, this.host.receiveBatch), peer);
    log.debug('handshake started', { remote: peer.text });
    this.host.act(s, now); // (the ClientHello was consumed by listen(); the reply flight is ready)
  }

  private newPlaintextPeer(msg: Buffer, peer: Peer, now: number): void {
    if (looksLikeDtls(msg)) {
      this.counters.inc('mismatch_dtls');
      // Tell a DTLS client why (a small unauthenticated frame, smaller than its ClientHello).
      this.host.sock.send(encodeClose('this server runs --insecure-plaintext'), peer);
      this.logMismatch(peer.text, 'a DTLS packet arrived, but this server runs --insecure-plaintext (start the client with --insecure-plaintext, or the server without it)');
      return;
    }
    if (frameType(msg) !== FrameType.CONTROL) {
      this.counters.inc('garbage');
      return;
    }
    const s = this.host.newSession(new PlaintextChannel(), peer);
    this.host.receive(s, this.one(msg), 0, now);
    if (!s.cn && !s.gone) {
      s.core.close('no valid hello', false, now);
      this.host.act(s, now);
    }
  }

  private logMismatch(key: string, what: string): void {
    const last = this.mismatchLogged.get(key) ?? 0;
    const now = monotonicMs();
    if (this.mismatchLogged.has(key) && now - last < 10_000) return; // one line per peer per 10 s, not per packet
    this.mismatchLogged.set(key, now);
    if (this.mismatchLogged.size > 1000) this.mismatchLogged.clear();
    log.warn(`mode mismatch from ${key}: ${what}`);
  }

  /**
   * Who may stay: the CN (from the certificate, or claimed in the lab's plaintext hello) must
   * be a valid client name and listed in the authorized directory. Null when it may.
   */
  check(s: Session): Refusal | null {
    // The CA vouches for the certificate, not for its CN being usable as a name here (it
    // names a file in the authorized directory and appears in logs and messages).
    if (!isValidCn(s.cn)) {
      this.counters.inc('unauthorized');
      return { reason: 'the certificate CN is not a valid client name (letters, digits, ".", "_", "-"; at most 64)', log: 'refused client: its certificate CN is not a valid client name', invalidCn: true };
    }
    if (this.authz && !this.authz.has(s.cn)) {
      this.counters.inc('unauthorized');
      return { reason: `client "${s.cn}" is not authorized on this server`, log: 'refused client: CN is not in the authorized directory', dir: this.authz.dir };
    }
    return null;
  }

  /** The client's address (sticky per CN), or why there is none. */
  lease(s: Session): Lease | Refusal {
    try {
      return this.sessions.pool.acquire(s.cn);
    } catch (err) {
      if (!(err instanceof PoolExhaustedError)) throw err;
      return { reason: err.message, log: 'refused client: address pool exhausted' };
    }
  }
}
