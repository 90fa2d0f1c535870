// A batch of packets in one reusable buffer: packet i is buf[offs[i] .. offs[i] + lens[i]).
// The data path moves batches, not single packets, so the cost of crossing between
// JavaScript and native code (and of any per-call bookkeeping) is paid once per batch.

/**
 * The native handle of a batch (native/handle.h): opaque to JavaScript. Declared here, not in
 * src/native.ts with the other handles, so that types flow one way only (native.ts uses batch.ts).
 */
export interface BatchHandle { readonly __handle: 'batch' }

/**
 * Memory that native code keeps a pointer into (a batch's arrays, a reader's batch, a status
 * array) lives on a SharedArrayBuffer: unlike an ArrayBuffer, it cannot be detached (transferred
 * away, its memory freed) while native code still writes into it. native/args.h refuses
 * anything else.
 */
export const shared = {
  bytes: (n: number): Buffer => Buffer.from(new SharedArrayBuffer(n)),
  u32: (n: number): Uint32Array => new Uint32Array(new SharedArrayBuffer(4 * n)),
  f64: (n: number): Float64Array => new Float64Array(new SharedArrayBuffer(8 * n)),
};

/** What the data path passes around: packets as (offset, length) pairs into one buffer. */
export interface BatchView {
  buf: Buffer;
  offs: Uint32Array;
  lens: Uint32Array;
  count: number;
}

export class PacketBatch implements BatchView {
  readonly buf: Buffer;
  readonly offs: Uint32Array;
  readonly lens: Uint32Array;
  count = 0;
  /**
   * The batch's native handle (native/handle.h), made the first time native code is given
   * this batch (batchHandle() in src/native.ts): its arrays are converted once, not per call.
   */
  handle: BatchHandle | null = null;

  /**
   * `capacity` packets of up to `slotSize` bytes each; with `buf`, entries into that buffer
   * instead (for native calls, a buffer on a SharedArrayBuffer: see `shared`).
   */
  constructor(readonly capacity: number, readonly slotSize: number, buf?: Buffer) {
    this.buf = buf ?? shared.bytes(capacity * slotSize);
    this.offs = shared.u32(capacity);
    this.lens = shared.u32(capacity);
  }

  /**
   * A batch of its own offsets and lengths into another batch's buffer: a subset of its
   * packets, or packets grown in place (e.g. with the frame header in the headroom).
   */
  static over(buf: Buffer, capacity: number): PacketBatch {
    return new PacketBatch(capacity, 0, buf);
  }

  /** Copies one packet in (slow path and tests); returns false when the batch is full. */
  push(src: Buffer, off = 0, len = src.length - off): boolean {
    if (this.count >= this.capacity || len > this.slotSize) return false;
    const at = this.count * this.slotSize;
    src.copy(this.buf, at, off, off + len);
    this.offs[this.count] = at;
    this.lens[this.count] = len;
    this.count++;
    return true;
  }

  /** A view of packet i (no copy: valid until the batch is reused). */
  packet(i: number): Buffer {
    return this.buf.subarray(this.offs[i], this.offs[i] + this.lens[i]);
  }

  clear(): void {
    this.count = 0;
  }
}

/** Rotates between a few batches, so a batch is reused only after the next ones were. */
export class BatchRing {
  private readonly ring: PacketBatch[];
  private i = 0;
  constructor(size: number, capacity: number, slotSize: number) {
    this.ring = Array.from({ length: size }, () => new PacketBatch(capacity, slotSize));
  }
  next(): PacketBatch {
    this.i = (this.i + 1) % this.ring.length;
    const b = this.ring[this.i];
    b.count = 0;
    return b;
  }
}
