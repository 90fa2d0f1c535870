// A channel carries tunnel frames between two endpoints over UDP datagrams. Two kinds:
//   DtlsChannel      - every frame is one DTLS record (encrypted, authenticated, replay-checked)
//   PlaintextChannel - every frame is the UDP payload itself (lab-only: readable on the wire)
// Both are sans-IO: they turn datagrams into frames and frames into datagrams; the
// server and client event loops do the socket I/O and run the timers.
import { BatchView, PacketBatch } from '../batch';
import { ConnState, DtlsConnection } from '../dtls/dtls';
import { hasShortRecord } from '../wire/frame';

export interface Channel {
  readonly kind: 'dtls' | 'plaintext';
  readonly state: ConnState;
  readonly error: string | null;
  /** Datagrams the channel discarded after it was open (replays, forgeries, garbage). */
  readonly dropped: number;
  /**
   * One received datagram, packet i of `datagrams` -> the frames it carried: entries
   * first..count-1 of the view. (A DTLS channel appends them to the receive batch its owner
   * gave it, and the owner empties that batch once it has written the packets to the TUN.)
   */
  receive(datagrams: PacketBatch, i: number): FrameRange;
  /**
   * The first `count` frames of `frames` -> datagrams to send: `out` (DTLS) or, when a frame
   * is its own datagram (plaintext), `frames` itself with its count set to `count`.
   */
  seal(frames: PacketBatch, count: number, out: PacketBatch): PacketBatch;
  /** Client: starts the handshake (DTLS: the ClientHello is then in takeOutput()). */
  begin(): void;
  /** Datagrams the protocol itself wants sent (handshake flights, alerts). */
  takeOutput(): Buffer[] | null;
  /** ms until onTimeout() is due, -1 for none. */
  timeoutMs(): number;
  onTimeout(): void;
  /** Starts an orderly close (DTLS close_notify). */
  shutdown(): void;
  destroy(): void;
}

/** Frames first..count-1 of a batch view. */
export interface FrameRange extends BatchView {
  first: number;
}

export class DtlsChannel implements Channel {
  readonly kind = 'dtls';
  private readonly rx: PacketBatch;
  private readonly range: FrameRange;
  /** The cipher's record overhead once open (see minRecordBody); 0 before. */
  private overhead = 0;
  /** Datagrams dropped here, before OpenSSL: records too short for the cipher. */
  private shortDropped = 0;

  constructor(readonly conn: DtlsConnection, rx: PacketBatch) {
    this.rx = rx;
    this.range = { buf: rx.buf, offs: rx.offs, lens: rx.lens, count: 0, first: 0 };
  }
  get state(): ConnState { return this.conn.state; }
  get error(): string | null { return this.conn.error; }
  get dropped(): number { return this.conn.dropped + this.shortDropped; }

  receive(datagrams: PacketBatch, i: number): FrameRange {
    this.range.first = this.rx.count;
    // A forged record too short for the cipher would fail the connection in OpenSSL: drop it here.
    if (hasShortRecord(datagrams.buf, datagrams.offs[i], datagrams.lens[i], this.minRecordBody())) {
      if (this.conn.state === 'open') this.shortDropped++;
    } else {
      this.conn.openSlot(datagrams, i, this.rx, true);
    }
    this.range.count = this.rx.count;
    return this.range;
  }
  /**
   * The shortest body an encrypted record can have: the AEAD's explicit nonce and tag. Until the
   * connection is open, 24 (AES-GCM's, the largest; the handshake's encrypted records are longer).
   */
  private minRecordBody(): number {
    if (this.overhead === 0 && this.conn.state === 'open') this.overhead = /CHACHA20/.test(this.conn.info().cipher) ? 16 : 24;
    return this.overhead || 24;
  }
  seal(frames: PacketBatch, count: number, out: PacketBatch): PacketBatch {
    this.conn.seal(frames, count, out);
    return out;
  }
  begin(): void { this.conn.handshake(); }
  takeOutput(): Buffer[] | null { return this.conn.takeOutput(); }
  timeoutMs(): number { return this.conn.timeoutMs(); }
  onTimeout(): void { this.conn.onTimeout(); }
  shutdown(): void { this.conn.shutdown(); }
  destroy(): void { this.conn.destroy(); }
}

export class PlaintextChannel implements Channel {
  readonly kind = 'plaintext';
  readonly error: string | null = null;
  readonly dropped = 0;
  private closed = false;
  // Reused views: a plaintext datagram *is* the frame, and frames are sent as they are.
  private readonly one: FrameRange = { buf: Buffer.alloc(0), offs: new Uint32Array(1), lens: new Uint32Array(1), count: 1, first: 0 };

  get state(): ConnState { return this.closed ? 'closed' : 'open'; }

  receive(datagrams: PacketBatch, i: number): FrameRange {
    this.one.buf = datagrams.buf;
    this.one.offs[0] = datagrams.offs[i];
    this.one.lens[0] = datagrams.lens[i];
    return this.one;
  }
  seal(frames: PacketBatch, count: number): PacketBatch {
    frames.count = count;
    return frames;
  }
  begin(): void {}
  takeOutput(): Buffer[] | null { return null; }
  timeoutMs(): number { return -1; }
  onTimeout(): void {}
  shutdown(): void { this.closed = true; }
  destroy(): void { this.closed = true; }
}
