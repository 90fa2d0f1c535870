// Admission: everything between a datagram from an unknown address and a client with a
// tunnel address. In the order a datagram meets them:
//
//  1. The stateless cookie exchange, inline, at line rate: a ClientHello without a valid cookie
//     gets a HelloVerifyRequest (DtlsContext.listen) and leaves no state behind, so a flood of
//     spoofed ClientHellos costs an HMAC each and never waits in, or fills, a queue.
//  2. Limits before state: handshakes in progress per source (/32, /64), in all.
//  3. The handshake queue: a handshake step costs milliseconds of public-key crypto, so steps
//     of cookie-verified peers run a few per event-loop turn, round robin across sources (one
//     busy host cannot starve the others), and established sessions never wait behind them.
//  4. Answers to senders not yet authenticated are never larger than what they sent, and are
//     rate-limited per source and in all (no amplifier); their log lines are limited per reason.
//  5. Who may stay: a valid CN, listed in the authorized directory, with a free address.
//
// The move rule (roaming) is here too: a record from an unknown address may be a known
// client's that moved.
import { PacketBatch } from '../batch';
import { Peer, UdpBatch, UdpSocket } from '../conn/udp';
import { CookieCheck, DtlsContext } from '../dtls/dtls';
import { AuthorizedClients } from '../device/authz';
import { Counters } from '../device/counters';
import { Pool6ExhaustedError, PoolExhaustedError } from '../device/pool';
import { logger } from '../log';
import { monotonicMs } from '../clock';
import { Channel, DtlsChannel, PlaintextChannel } from '../session/channel';
import { isValidCn } from '../wire/control';
import { appRecordEpoch, DTLS_HANDSHAKE, encodeClose, FrameType, frameType, looksLikeDtls, looksLikeFrame, recordSeq } from '../wire/frame';
import { HashedBuckets, LogLimiter, sourceHash, TokenBucket } from '../device/ratelimit';
import { Session, SessionTable } from './sessions';

const log = logger('server');
const SLOT = 2048;
/** Handshakes in progress at most, in all. */
const MAX_HANDSHAKING = 2048;
/** Handshake steps run per event-loop turn (each may cost a few ms of crypto). */
const HANDSHAKES_PER_TURN = 2;
/** Handshake datagrams waiting per source at most; beyond that they are dropped (DTLS retransmits). */
const QUEUE_PER_SOURCE = 16;
/**
 * Answers to unauthenticated senders: per source (a burst of twice that), and in all, per
 * second. A client needs one answer per handshake (its HelloVerifyRequest), so a few a second
 * serve a NAT full of them. Each answer costs a DTLSv1_listen and a send (under a spoofed
 * flood, they were a third of the server's time at 20 a source): the rate bounds that cost.
 */
const ANSWERS_PER_SOURCE = 5;
const ANSWERS_IN_ALL = 5_000;

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

/** A record from a new address that a session opened (tryMove): the session, moved from `from` (null: its record ended it, no move). */
export interface Moved { session: Session; from: string | null }

/** Why a client may not stay: `reason` goes to the client, `log` to our log. */
export interface Refusal { reason: string; log: string; dir?: string; invalidCn?: boolean }
/** A client's tunnel address. */
export interface Lease { address: number; addressStr: string; address6: number; address6Str: string }

interface Step {
  /** A handshake datagram, or null for the first step of a session made by listen(). */
  msg: Buffer | null;
  session: Session;
}

export class Admission {
  /** The handshake queue: steps per source, served round robin (sources in `rota` order). */
  private readonly queues = new Map<number, Step[]>();
  private readonly rota: number[] = [];
  private scheduled = false;
  /** Handshakes in progress per source (sessions not yet up); a source's entry goes with its last. */
  private readonly handshaking = new Map<number, number>();
  private readonly answersPerSource = new HashedBuckets(ANSWERS_PER_SOURCE, 2 * ANSWERS_PER_SOURCE);
  private readonly answersInAll = new TokenBucket(ANSWERS_IN_ALL);
  /** Log lines that senders can cause, limited per reason. */
  readonly logs = new LogLimiter(log);
  /** Roaming: the candidates of one datagram (reused), and the trial budget. */
  private readonly candidates: Session[] = [];
  private readonly trialBudget: TokenBucket;
  /** Trial decryptions so far (status), and sessions moved. */
  trials = 0;
  moves = 0;
  /** Bytes from and to senders not (yet) authenticated: the answers never exceed what came. */
  readonly unauthenticated = { rxBytes: 0, txBytes: 0 };
  /** A queued datagram as packet 0 of a batch, which is what channels take. */
  private readonly oneIn = new PacketBatch(1, SLOT);
  /** The cookie input of the datagram at hand (cookieKey). */
  private readonly keyBuf = Buffer.alloc(18);
  private readonly serverRequiresDtls = encodeClose('server requires DTLS');

  constructor(
    private readonly host: AdmissionHost,
    private readonly sessions: SessionTable,
    private readonly counters: Counters,
    private readonly dtls: DtlsContext | null,
    private readonly authz: AuthorizedClients | null,
    /** Trials (and datagrams examined) per second at most; 0 turns roaming off (--no-float). */
    private readonly trialsPerSec: number,
    /** Handshakes in progress per source at most. */
    private readonly perSource: number,
  ) {
    this.trialBudget = new TokenBucket(trialsPerSec);
  }

  /**
   * The move rule (roaming, docs/PROTOCOL.md §5): datagram i of `rx` came from an address no
   * session owns. If it is a DTLS application-data record, the sessions it could belong to
   * (same epoch, record number a little ahead of the highest they authenticated, nearest
   * first, at most MOVE_CANDIDATES) try to open it. Returns the session whose record it was:
   * authenticated and fresh, so already processed (its packets are in core.packets, and its
   * control work in core.out, not sent yet), and already moved to the sender (`from`: where
   * it was). Null otherwise, counted. Bounded: each datagram examined and each trial takes a
   * token of the budget.
   */
  tryMove(rx: PacketBatch & { peer(i: number): Peer }, i: number, now: number): Moved | null {
    if (this.trialsPerSec === 0) return null;
    const buf = rx.buf, off = rx.offs[i], len = rx.lens[i];
    const epoch = appRecordEpoch(buf, off, len);
    if (epoch < 1) return null; // not a record of an open session: admission's queue
    if (!this.trialBudget.take(now)) { this.counters.inc('move_budget'); return null; }
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
      if (!this.trialBudget.take(now)) { this.counters.inc('move_budget'); return null; }
      this.trials++;
      if (s.core.tryDecapsulate(rx, i, now) === null) continue;
      // The client is at the sender's address now, and the session follows it before anything
      // is sent: the answer to this very record (the keepalive a client sends from its new
      // socket) must go there. Sent to the address the client left, it is lost, and a client
      // that moves again within a second hears nothing back until its dead-peer check fires.
      // A record that ended the session (CLOSE, bye) moves nothing.
      if (s.core.closed) return { session: s, from: null };
      const from = s.key;
      this.sessions.move(s, rx.peer(i));
      this.moves++;
      return { session: s, from };
    }
    this.counters.inc('move_refused');
    return null;
  }

  /**
   * Datagram i of `rx`, from a sender without an open session: a new peer, or a session still
   * handshaking (`s`). The stateless part runs now; state-making steps wait in the queue.
   */
  admit(rx: UdpBatch, i: number, s: Session | undefined, now: number): void {
    const buf = rx.buf, off = rx.offs[i], len = rx.lens[i];
    const src = sourceHash(rx.addrs, i);
    if (s !== undefined) { // a handshake in progress: its next step
      this.enqueue(src, { msg: Buffer.from(rx.packet(i)), session: s }, now);
      return;
    }
    this.unauthenticated.rxBytes += len;
    if (this.dtls === null) { this.newPlaintextPeer(Buffer.from(rx.packet(i)), rx.peer(i), src, now); return; }
    // From here on nothing is allocated for a datagram that earns no answer: a flood from
    // random sources must cost reads of its bytes, not objects.
    if (looksLikeFrame(buf, off, len)) { this.plaintextAtDtls(rx, i, src, now); return; }
    if (!looksLikeDtls(buf, off, len) || buf[off] !== DTLS_HANDSHAKE) { this.counters.inc('garbage'); return; }
    const busy = this.handshaking.get(src) ?? 0;
    if (busy >= this.perSource || this.sessions.size - this.sessions.router.size >= MAX_HANDSHAKING) {
      this.counters.inc('handshake_limit');
      return;
    }
    // Our own cookie check first (native, one HMAC): only a ClientHello with a good cookie
    // reaches OpenSSL's parse; one without, or with a bad one (RFC 6347 4.2.1: treated as
    // none), can only earn a HelloVerifyRequest, which is made only if it will be sent.
    // (Most of a flood carries no cookie: told apart here, without a call into native code.)
    const key = this.cookieKey(rx, i);
    const cookie = helloCookieLength(buf, off, len) === 0 ? CookieCheck.NONE : this.dtls.checkCookie(buf, off, len, key);
    if (cookie === CookieCheck.NOT_A_HELLO) { this.counters.inc('garbage'); return; } // (DTLSv1_listen drops it too)
    if (cookie !== CookieCheck.GOOD && !(this.answersPerSource.ready(src, now) && this.answersInAll.ready(now))) {
      this.counters.inc(cookie === CookieCheck.BAD ? 'bad_cookie' : 'not_answered');
      return;
    }
    const r = this.dtls.listen(rx.packet(i), key, false);
    if (r === null) { this.counters.inc('garbage'); return; }
    const peer = rx.peer(i);
    if ('reply' in r) { this.answer(r.reply, len, peer, src, now); return; }
    // The cookie was good: the peer owns its address, and has state from here on: a session,
    // whose first step (the server's flight, with a signature) waits its turn.
    const session = this.host.newSession(new DtlsChannel(r.conn, this.host.receiveBatch), peer);
    session.source = src;
    this.handshaking.set(src, busy + 1);
    log.debug('handshake started', { remote: peer.text });
    this.enqueue(src, { msg: null, session }, now);
  }

  /**
   * The input of datagram i's cookie: its sender's address (16 bytes) and port, in one buffer
   * reused for every datagram. The same bytes go to listen(), which makes the cookies.
   */
  private cookieKey(rx: UdpBatch, i: number): Buffer {
    const k = this.keyBuf, a = rx.addrs, o = 16 * i;
    for (let j = 0; j < 16; j++) k[j] = a[o + j]; // (Buffer.copy costs more than this for 16 bytes)
    const port = rx.ports[i];
    k[16] = port >>> 8;
    k[17] = port & 0xff;
    return k;
  }

  /** A plaintext frame at a DTLS server: counted, logged (limited), a CONTROL frame told why. */
  private plaintextAtDtls(rx: UdpBatch, i: number, src: number, now: number): void {
    this.counters.inc('mismatch_plaintext');
    const text = () => `mode mismatch from ${rx.peer(i).text}: a plaintext tunnel packet arrived, but this server requires DTLS (is the client running --insecure-plaintext?)`;
    this.logs.warn('mode mismatch', now, text);
    // Tell a plaintext client why (if the answer may go: no object made for one that may not).
    if (frameType(rx.buf, rx.offs[i], rx.lens[i]) !== FrameType.CONTROL) return;
    if (this.answersPerSource.ready(src, now) && this.answersInAll.ready(now)) this.answer([this.serverRequiresDtls], rx.lens[i], rx.peer(i), src, now);
    else this.counters.inc('not_answered');
  }

  /** A session left the handshake (up, or ended): its source may start another. */
  handshakeOver(s: Session): void {
    if (s.source < 0) return;
    const n = (this.handshaking.get(s.source) ?? 1) - 1;
    if (n <= 0) this.handshaking.delete(s.source);
    else this.handshaking.set(s.source, n);
    s.source = -1;
  }

  /** Sends answers to a sender not yet authenticated: never more bytes than it sent, rate-limited. */
  private answer(replies: Buffer[], received: number, peer: Peer, src: number, now: number): void {
    let bytes = 0;
    for (const d of replies) bytes += d.length;
    if (bytes > received || !this.answersPerSource.take(src, now) || !this.answersInAll.take(now)) {
      this.counters.inc('not_answered');
      return;
    }
    this.unauthenticated.txBytes += bytes;
    for (const d of replies) this.host.sock.send(d, peer);
  }

  private enqueue(src: number, step: Step, now: number): void {
    let q = this.queues.get(src);
    if (q === undefined) {
      q = [];
      this.queues.set(src, q);
      this.rota.push(src);
    }
    if (q.length >= QUEUE_PER_SOURCE) {
      this.counters.inc('handshake_limit'); // the peer's DTLS retransmits later
      return;
    }
    q.push(step);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.run());
    }
    void now;
  }

  /** A few handshake steps, one source after another (round robin). */
  private run(): void {
    const now = monotonicMs();
    this.scheduled = false;
    let n = 0;
    while (n < HANDSHAKES_PER_TURN && this.rota.length > 0) {
      const src = this.rota.shift()!;
      const q = this.queues.get(src)!;
      const step = q.shift()!;
      if (q.length > 0) this.rota.push(src);
      else this.queues.delete(src);
      if (step.session.gone) continue;
      n++;
      if (step.msg === null) {
        step.session.core.channel.begin(); // the server's first flight (ServerHello ... ServerKeyExchange)
        step.session.core.poll();
        this.host.act(step.session, now);
      } else {
        this.host.receive(step.session, this.one(step.msg), 0, now);
      }
    }
    this.host.endTurn(n, now);
    if (this.rota.length > 0 && !this.scheduled) {
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

  private newPlaintextPeer(msg: Buffer, peer: Peer, src: number, now: number): void {
    if (looksLikeDtls(msg)) {
      this.counters.inc('mismatch_dtls');
      // Tell a DTLS client why.
      this.answer([encodeClose('this server runs --insecure-plaintext')], msg.length, peer, src, now);
      this.logs.warn('mode mismatch', now, `mode mismatch from ${peer.text}: a DTLS packet arrived, but this server runs --insecure-plaintext (start the client with --insecure-plaintext, or the server without it)`);
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
      if (err instanceof Pool6ExhaustedError) return { reason: err.message, log: 'refused client: IPv6 address pool exhausted' };
      if (!(err instanceof PoolExhaustedError)) throw err;
      return { reason: err.message, log: 'refused client: address pool exhausted' };
    }
  }
}

/**
 * The cookie length of the DTLS ClientHello record at buf[off, off+len) (record header 13
 * bytes, handshake header 12, client_version 2, random 32, session_id 1 + n, then the cookie's
 * length byte), or -1 when it is not the start of a ClientHello. A first look only: the
 * native checkCookie reads the record in full.
 */
export function helloCookieLength(buf: Buffer, off: number, len: number): number {
  if (len < 61 || buf[off + 13] !== 1 || buf[off + 19] !== 0 || buf[off + 20] !== 0 || buf[off + 21] !== 0) return -1; // (type 1, fragment offset 0)
  const at = 60 + buf[off + 59];
  return at < len ? buf[off + at] : -1;
}
