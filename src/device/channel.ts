// A channel carries tunnel frames between two endpoints over UDP datagrams. Two kinds:
//   DtlsChannel      - every frame is one DTLS record (encrypted, authenticated, replay-checked)
//   PlaintextChannel - every frame is the UDP payload itself (lab-only: readable on the wire)
// Both are sans-IO: they turn datagrams into frames and frames into datagrams; the
// server and client event loops do the socket I/O and run the timers.
import { BatchView, PacketBatch } from '../batch';
import { ConnState, DtlsConnection } from '../dtls/dtls';

export interface Channel {
  readonly kind: 'dtls' | 'plaintext';
  readonly state: ConnState;
  readonly error: string | null;
  /** Datagrams the channel discarded after it was open (replays, forgeries, garbage). */
  readonly dropped: number;
  /**
   * One received datagram, buf[off, off+len) -> the frames it carried: entries first..count-1
   * of the view. (A DTLS channel appends them to the receive batch its owner gave it, and
   * the owner empties that batch once it has written the packets to the TUN.)
   */
  receive(buf: Buffer, off: number, len: number): FrameRange;
  /** Frames (offs/lens into buf) -> datagrams to send, written into `out` when it needs room. */
  seal(buf: Buffer, offs: Uint32Array, lens: Uint32Array, count: number, out: PacketBatch): BatchView;
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

  constructor(readonly conn: DtlsConnection, rx: PacketBatch) {
    this.rx = rx;
    this.range = { buf: rx.buf, offs: rx.offs, lens: rx.lens, count: 0, first: 0 };
  }
  get state(): ConnState { return this.conn.state; }
  get error(): string | null { return this.conn.error; }
  get dropped(): number { return this.conn.dropped; }

  receive(buf: Buffer, off: number, len: number): FrameRange {
    this.range.first = this.rx.count;
    this.conn.openAt(buf, off, len, this.rx, true);
    this.range.count = this.rx.count;
    return this.range;
  }
  seal(buf: Buffer, offs: Uint32Array, lens: Uint32Array, count: number, out: PacketBatch): BatchView {
    this.conn.seal(buf, offs, lens, count, out);
    return out;
  }
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
  private readonly view: BatchView = { buf: Buffer.alloc(0), offs: new Uint32Array(0), lens: new Uint32Array(0), count: 0 };

  get state(): ConnState { return this.closed ? 'closed' : 'open'; }

  receive(buf: Buffer, off: number, len: number): FrameRange {
    this.one.buf = buf;
    this.one.offs[0] = off;
    this.one.lens[0] = len;
    return this.one;
  }
  seal(buf: Buffer, offs: Uint32Array, lens: Uint32Array, count: number): BatchView {
    this.view.buf = buf;
    this.view.offs = offs;
    this.view.lens = lens;
    this.view.count = count;
    return this.view;
  }
  takeOutput(): Buffer[] | null { return null; }
  timeoutMs(): number { return -1; }
  onTimeout(): void {}
  shutdown(): void { this.closed = true; }
  destroy(): void { this.closed = true; }
}
