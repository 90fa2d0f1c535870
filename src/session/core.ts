// The protocol of one tunnel, shared by client and server, with no I/O (sans-IO, after
// boringtun's encapsulate/decapsulate): it takes events (a datagram from the peer, packets
// from the TUN, the clock) and says what to do (datagrams to send, packets to write into the
// TUN, the session's end and why). The event loops in src/server and src/client own the
// socket, the TUN and the timers; everything they must agree on lives here, once:
//
//   - the channel: the DTLS handshake, then records (or plaintext frames in the lab mode);
//   - framing: DATA packets out to the caller, KEEPALIVE answered, CLOSE ends the session;
//   - the control exchange: client `hello` -> server `config` or `refuse`; `bye` either way;
//   - timers: the handshake (and config) must finish in time, keepalives when idle, and a
//     peer that has been silent too long is dead — in every state;
//   - counters: bytes and packets each way, drops by reason.
//
// The hot path (decapsulate/encapsulate on an open channel carrying DATA) allocates nothing:
// packets are (offset, length) pairs into the receive batch (`packets`). Control work (rare)
// may allocate: its results go into `out` for the shell to act on.
import { BatchView, PacketBatch } from '../batch';
import { Counters } from '../device/counters';
import { ConfigMsg, decodeControl, Dev, devMismatch, encodeControl, HelloMsg } from '../wire/control';
import { appRecordEpoch, closeReason, DTLS_RECORD_HEADER_LEN, encodeFrame, frameType, FrameType, recordSeq, u16 } from '../wire/frame';
import { Channel, FrameRange } from './channel';

/** Why a session ended. The shells turn these into their own words. */
export type CloseCode =
  | 'refused' // server: we refused the client; client: the server refused us (do not retry)
  | 'bye' // the peer said bye (a control message, with its reason)
  | 'peer-closed' // a CLOSE frame, or the peer's close_notify
  | 'dead' // nothing heard from the peer for longer than the dead-peer timeout
  | 'handshake-failed' // the DTLS handshake failed on what the peer sent (a certificate refused, an alert)
  | 'no-answer' // not up in time, or DTLS gave up retransmitting: worth another try later
  | 'local'; // this side closed it (shutdown, replaced, no longer authorized)

export interface Close {
  code: CloseCode;
  /** The peer's reason (bye, CLOSE), the channel's error, or ours. */
  reason: string;
}

/** Control-path events for the shell's policy, in the order they happened. */
export type SessionEvent =
  /** The DTLS handshake is done: the peer's certificate is known (server: authorize now). */
  | { type: 'established' }
  /** Server: the client said hello (in the lab's plaintext mode it names itself here). */
  | { type: 'hello'; msg: HelloMsg }
  /** Client: the server's config (the session is up). */
  | { type: 'config'; msg: ConfigMsg }
  /** Client: the path to the server seems dead (a probe went unanswered): open a new socket, then keepalive(). */
  | { type: 'path-suspect' }
  /** A control message that failed validation (the error names the field). */
  | { type: 'invalid'; error: string };

/** What the shell must do after a call into the core. Read it, act, then clear it. */
export class Output {
  /** Datagrams for the peer, in order: handshake flights, sealed control frames, alerts. */
  readonly datagrams: Buffer[] = [];
  readonly events: SessionEvent[] = [];
  /** Set once, when the session ends; the peer was already told where `datagrams` say so. */
  close: Close | null = null;

  get empty(): boolean {
    return this.datagrams.length === 0 && this.events.length === 0 && this.close === null;
  }
  clear(): void {
    this.datagrams.length = 0;
    this.events.length = 0;
  }
}

export interface Timing {
  /** Send a KEEPALIVE when nothing was sent for this long (0: never). */
  keepaliveMs: number;
  /** Nothing heard for this long after the session is up: the peer is dead. */
  deadMs: number;
  /** Handshake and control exchange must be done within this (from creation). */
  upWithinMs: number;
}

/** Client: silence this long after sending: probe with a keepalive; as long again: a new socket. */
export const PATH_PROBE_MS = 2000;

/** Frames one datagram can carry at most (a 2 KB datagram of 1-byte frames is far fewer records). */
const MAX_FRAMES = 128;

export class SessionCore {
  readonly out = new Output();
  /**
   * The DATA packets of the last decapsulate: IP packets (frame header stripped) as entries into
   * the receive batch's buffer, valid until the caller writes them out.
   */
  readonly packets: BatchView = { buf: Buffer.alloc(0), offs: new Uint32Array(MAX_FRAMES), lens: new Uint32Array(MAX_FRAMES), count: 0 };
  /** The session is up: server, the client was accepted; client, the config arrived. */
  up = false;
  /** Times in monotonic ms (clock.ts). */
  readonly createdAt: number;
  lastSeen: number;
  lastSent: number;
  rxBytes = 0;
  rxPackets = 0;
  txBytes = 0;
  txPackets = 0;
  /** The record epoch and highest sequence number this session authenticated (DTLS; -1 before): the move rule's candidates. */
  rxEpoch = -1;
  rxSeq = -1;
  /** Records the channel dropped (replays, forgeries), trials of the move rule not counted. */
  droppedRecords = 0;
  /** Server: the config to send on each hello once accepted (null before, or if refused). */
  private config: ConfigMsg | null = null;
  /** Server: the client's hello (null before it came). */
  private hello: HelloMsg | null = null;
  /** Client dead-path detection: 0 nothing pending, 1 a probe was sent (at probeAt), 2 a new socket was asked for. */
  private probe = 0;
  private probeAt = 0;
  private droppedSeen = 0;
  /** For control frames: sealed one at a time (control path). */
  private readonly one = new PacketBatch(1, 2048);
  private readonly sealed = new PacketBatch(1, 2048);

  constructor(
    readonly role: 'client' | 'server',
    readonly channel: Channel,
    public timing: Timing,
    /** Drops by reason: the server's shared counters, or the client's own. */
    readonly counters: Counters,
    now: number,
    /** Client, plaintext mode: the name it claims in its hello. */
    private readonly claimCn?: string,
    /** Client: the device it runs, said in its hello (absent for tun: a hello as before TAP mode). */
    private readonly dev?: Dev,
  ) {
    this.createdAt = this.lastSeen = this.lastSent = now;
    this.takeChannelOutput(); // (a server's connection from the cookie exchange has its first flight ready)
  }

  get closed(): boolean {
    return this.out.close !== null;
  }

  /** Client: the first flight (DTLS ClientHello), or the hello right away in plaintext mode. */
  start(now: number): void {
    this.channel.begin();
    if (this.channel.state === 'open') this.sendHello(now);
    else this.takeChannelOutput();
  }

  // ---- peer -> us ------------------------------------------------------------------------

  /**
   * Datagram i of `datagrams`, from the peer. Its DATA packets are in `packets` afterwards.
   * Returns true when `out` has something for the shell (control work: rare).
   */
  decapsulate(datagrams: PacketBatch, i: number, now: number): boolean {
    this.packets.count = 0;
    if (this.closed) return false;
    const wasOpen = this.channel.state === 'open';
    const frames = this.channel.receive(datagrams, i);
    const dropped = this.channel.dropped - this.droppedSeen;
    if (dropped !== 0) {
      this.counters.inc('replayed_or_bad_record', dropped);
      this.droppedRecords += dropped;
      this.droppedSeen += dropped;
    }
    return this.unframe(frames, datagrams, i, wasOpen, now);
  }

  /**
   * The move rule's trial (roaming, docs/PROTOCOL.md §5): datagram i came from an address no
   * session owns; is it this session's? Only a record that authenticates and is fresh (not a
   * replay) says yes: then it is processed as decapsulate() would, and the caller moves the
   * session to the new address. A failed trial changes nothing here: OpenSSL discards a record
   * that fails authentication, or is a replay, without marking its replay window, and the
   * failure is not counted against this session.
   */
  tryDecapsulate(datagrams: PacketBatch, i: number, now: number): boolean | null {
    this.packets.count = 0;
    if (!this.up || this.closed || this.channel.kind !== 'dtls' || this.channel.state !== 'open') return null;
    const frames = this.channel.receive(datagrams, i);
    this.droppedSeen = this.channel.dropped; // (a failed trial is no drop of this session's)
    if (frames.count === frames.first) return null;
    return this.unframe(frames, datagrams, i, true, now);
  }

  private unframe(frames: FrameRange, datagrams: PacketBatch, i: number, wasOpen: boolean, now: number): boolean {
    // (The rare cases are methods of their own, which keeps this one small enough for V8 to
    // inline into the loop that calls it: the handshake's last datagram, frames other than DATA.)
    if (!wasOpen && this.opened(now)) return true;
    let work = !wasOpen;
    if (frames.count === frames.first) {
      return this.channelEnded() || work || !this.out.empty;
    }
    this.lastSeen = now;
    this.probe = 0;
    this.rxBytes += datagrams.lens[i];
    // (Only a server moves sessions: a client keeps no record numbers.)
    if (this.role === 'server' && this.channel.kind === 'dtls') this.noteRecord(datagrams.buf, datagrams.offs[i], datagrams.lens[i]);
    const pk = this.packets;
    const buf = frames.buf;
    pk.buf = buf;
    for (let k = frames.first; k < frames.count; k++) {
      const off = frames.offs[k], len = frames.lens[k];
      const type = frameType(buf, off, len);
      if (type === FrameType.DATA) {
        if (!this.up) { this.counters.inc('unauthorized'); continue; }
        pk.offs[pk.count] = off + 1;
        pk.lens[pk.count++] = len - 1;
        continue;
      }
      work = true;
      if (this.onFrame(type, buf, off, len, now)) { pk.count = 0; return true; }
    }
    this.rxPackets += pk.count;
    return this.channelEnded() || work;
  }

  /** The channel was not open before this datagram: its output, and maybe its end or its opening. True when it ended. */
  private opened(now: number): boolean {
    this.takeChannelOutput();
    if (this.channelEnded()) return true;
    if (this.channel.state === 'open') this.onOpen(now); // (the receive may have finished the handshake)
    return false;
  }

  /** A frame other than DATA (control path); true when it ended the session. */
  private onFrame(type: number, buf: Buffer, off: number, len: number, now: number): boolean {
    if (type === FrameType.CONTROL) this.onControl(buf.subarray(off + 1, off + len), now);
    else if (type === FrameType.KEEPALIVE) this.sendFrame(encodeFrame(FrameType.KEEPALIVE_REPLY), now);
    else if (type === FrameType.CLOSE) this.end('peer-closed', closeReason(buf.subarray(off + 1, off + len)) || 'no reason given');
    else if (type !== FrameType.KEEPALIVE_REPLY) this.counters.inc('garbage');
    return this.closed;
  }

  /** Remembers where the peer's record numbers are, for the move rule's candidate choice. */
  private noteRecord(buf: Buffer, off: number, len: number): void {
    const epoch = appRecordEpoch(buf, off, len);
    // A datagram of one record only: of several, which one authenticated is unknown, and a
    // forged record in front of a genuine one would set the numbers (found by test/fuzz.test.ts).
    if (epoch < 0 || DTLS_RECORD_HEADER_LEN + u16(buf, off + 11) !== len) return;
    const seq = recordSeq(buf, off);
    if (epoch !== this.rxEpoch) { this.rxEpoch = epoch; this.rxSeq = seq; } else if (seq > this.rxSeq) this.rxSeq = seq;
  }

  private onOpen(now: number): void {
    this.out.events.push({ type: 'established' });
    if (this.role === 'client') this.sendHello(now);
  }

  private onControl(body: Buffer, now: number): void {
    const msg = decodeControl(body);
    if (msg.type === 'invalid') {
      this.out.events.push({ type: 'invalid', error: msg.error });
    } else if (msg.type === 'bye') {
      this.end('bye', msg.reason);
    } else if (this.role === 'server' && msg.type === 'hello') {
      this.hello = msg;
      this.out.events.push({ type: 'hello', msg });
      if (this.config) this.sendConfig(now);
    } else if (this.role === 'client' && msg.type === 'config') {
      this.up = true;
      this.timing = { ...this.timing, keepaliveMs: msg.keepaliveSec * 1000, deadMs: msg.timeoutSec * 1000 };
      this.out.events.push({ type: 'config', msg });
    } else if (this.role === 'client' && msg.type === 'refuse') {
      this.end('refused', msg.reason);
    }
    // (Anything else is a message for the other role: ignored, as unknown fields are.)
  }

  /** close_notify, or a channel that failed while opening a datagram. */
  private channelEnded(): boolean {
    if (this.closed) return true;
    const st = this.channel.state;
    // (A channel that fails after it was up is a lost connection, worth a reconnect; before, a
    // refused certificate or an alert, which would fail again.)
    if (st === 'failed') this.end(this.up ? 'peer-closed' : 'handshake-failed', this.channel.error ?? 'unknown error');
    else if (st === 'closed') this.end('peer-closed', 'the peer closed the connection');
    return this.closed;
  }

  // ---- the shell's policy decisions (server) ---------------------------------------------

  /** Server: the client may stay, with this config (sent now if it said hello already). */
  accept(config: ConfigMsg, now: number): void {
    this.up = true;
    this.config = config;
    if (this.hello) this.sendConfig(now);
  }

  /** The config, to a client whose hello asked for the same device; the others are refused. */
  private sendConfig(now: number): void {
    const why = devMismatch(this.hello!, this.config!);
    if (why !== null) this.refuse(why, now);
    else this.sendFrame(encodeFrame(FrameType.CONTROL, encodeControl(this.config!)), now);
  }

  /** Server: tell the client why it may not stay, and end the session. */
  refuse(reason: string, now: number): void {
    this.sendFrame(encodeFrame(FrameType.CONTROL, encodeControl({ type: 'refuse', v: 1, reason })), now);
    this.closeChannel();
    this.end('refused', reason);
  }

  /** Ends the session from this side; with `notify`, the peer is told (bye, then close_notify). */
  close(reason: string, notify: boolean, now: number): void {
    if (this.closed) return;
    if (notify && this.channel.state === 'open') {
      this.sendFrame(encodeFrame(FrameType.CONTROL, encodeControl({ type: 'bye', v: 1, reason })), now);
      this.closeChannel();
    }
    this.end('local', reason);
  }

  // ---- us -> peer ------------------------------------------------------------------------

  /**
   * Seals the first `count` frames of `frames` (DATA frames made with dataFrame()) into `into`;
   * returns the datagrams to send (`into`, or `frames` itself in plaintext mode). Nothing
   * before the session is up.
   */
  encapsulate(frames: PacketBatch, count: number, into: PacketBatch, now: number): PacketBatch | null {
    if (!this.up || this.closed || this.channel.state !== 'open') return null;
    const view = this.channel.seal(frames, count, into);
    const lens = view.lens;
    for (let i = 0; i < view.count; i++) this.txBytes += lens[i];
    this.txPackets += count;
    this.lastSent = now;
    return view;
  }

  // ---- time --------------------------------------------------------------------------------

  /** Once a second or so: the deadlines and the keepalive. */
  tick(now: number): void {
    if (this.closed) return;
    const t = this.timing;
    if (!this.up) {
      if (now - this.createdAt > t.upWithinMs) this.end('no-answer', `not up within ${Math.round(t.upWithinMs / 1000)}s`);
      return;
    }
    if (now - this.lastSeen > t.deadMs) {
      this.end('dead', `no traffic for ${Math.round((now - this.lastSeen) / 1000)}s`);
      return;
    }
    if (this.role === 'client') this.checkPath(now);
    if (t.keepaliveMs > 0 && now - this.lastSent >= t.keepaliveMs) this.keepalive(now);
  }

  /**
   * Dead-path detection (client): we sent, and nothing came back for PATH_PROBE_MS. First a
   * keepalive on the same path (a live server answers at once); unanswered, the shell is asked
   * for a new socket (a new source address and port: a NAT that lost its mapping, a changed
   * route), once, until the server is heard again. The session and the TUN stay; the server
   * follows the new endpoint with its next authenticated record (the move rule).
   */
  private checkPath(now: number): void {
    if (this.lastSent <= this.lastSeen || now - this.lastSeen < PATH_PROBE_MS) return;
    if (this.probe === 0) {
      this.probe = 1;
      this.probeAt = now;
      this.keepalive(now);
    } else if (this.probe === 1 && now - this.probeAt >= PATH_PROBE_MS) {
      this.probe = 2;
      this.out.events.push({ type: 'path-suspect' });
    }
  }

  /** Sends a KEEPALIVE now (also the client's first record from a new socket: the server learns where it is). */
  keepalive(now: number): void {
    this.sendFrame(encodeFrame(FrameType.KEEPALIVE), now);
  }

  /** ms until the channel's own timer (DTLS retransmission) is due; -1 for none. */
  channelTimerMs(): number {
    return this.closed || this.channel.state !== 'handshaking' ? -1 : this.channel.timeoutMs();
  }

  /** The channel's timer fired: retransmit, or give up on the handshake. */
  onChannelTimer(): void {
    if (this.closed) return;
    this.channel.onTimeout();
    this.takeChannelOutput();
    if (this.channel.state === 'failed') this.end('no-answer', this.channel.error ?? 'no answer');
  }

  // ---- helpers -------------------------------------------------------------------------------

  private sendHello(now: number): void {
    this.sendFrame(encodeFrame(FrameType.CONTROL, encodeControl({ type: 'hello', v: 1, ...(this.claimCn ? { cn: this.claimCn } : {}), ...(this.dev === 'tap' ? { dev: 'tap' } : {}) })), now);
  }

  /** A control-path frame, sealed now and queued in `out` (copied: the seal batch is reused). */
  private sendFrame(frame: Buffer, now: number): void {
    if (this.channel.state !== 'open') return;
    const one = this.one;
    one.clear();
    if (!one.push(frame)) throw new Error(`control frame of ${frame.length} bytes exceeds ${one.slotSize}`);
    const view = this.channel.seal(one, 1, this.sealed);
    for (let i = 0; i < view.count; i++) {
      this.out.datagrams.push(Buffer.from(view.packet(i)));
      this.txBytes += view.lens[i];
    }
    this.lastSent = now;
    this.takeChannelOutput();
  }

  private closeChannel(): void {
    this.channel.shutdown();
    this.takeChannelOutput();
  }

  /** Takes what the channel wants sent into `out` (after the shell drove the channel itself: begin()). */
  poll(): void {
    this.takeChannelOutput();
  }

  private takeChannelOutput(): void {
    const d = this.channel.takeOutput();
    if (d) for (const x of d) this.out.datagrams.push(x);
  }

  private end(code: CloseCode, reason: string): void {
    if (this.out.close === null) this.out.close = { code, reason };
  }
}

/** Appends a TUN packet (at buf[off], one free byte in front) to `tx` as a DATA frame: no copy. */
export function dataFrame(tx: BatchView, buf: Buffer, off: number, len: number): void {
  buf[off - 1] = FrameType.DATA;
  tx.offs[tx.count] = off - 1;
  tx.lens[tx.count++] = len + 1;
}
