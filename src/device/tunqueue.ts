// Packets bound for the TUN, gathered over a whole receive batch and written with one
// writeBatch call. Fewer native crossings, and with GRO (--tun-gro) the TUN can merge the
// segments of one TCP connection that arrived in different datagrams. With a TUN per session
// (--topology p2p) the queue holds one device's run of packets at a time: a packet for
// another device writes the run out first.
import { PacketBatch } from '../batch';
import { logger } from '../log';
import { Tun } from '../tun/tun';

const log = logger('tun');

/**
 * Decrypted frames one receive batch may gather in `frames`: when fewer than RX_ROOM entries
 * are left, the queue is written out and `frames` emptied before the next datagram.
 * RX_ROOM exceeds the records a 1500-byte datagram can hold.
 */
const RX_FRAMES = 128;
const RX_ROOM = 48;
/** Devices takeWrittenTo() remembers (as many as datagrams a "small batch" has, src/os/latency.ts). */
const WRITTEN_TO_MAX = 4;

export class TunQueue {
  /** The queued packets: entries into one buffer (the frames batch, or a plaintext receive batch). */
  private cur: PacketBatch | null = null;
  /** One such view per buffer seen (a handful: each keeps its native handle). */
  private readonly views: PacketBatch[] = [];

  /** The device the queued packets go to. */
  private tun: Tun | null = null;
  /** Packets the kernel took since the last takeWritten(), and the first few devices that took them. */
  private written = 0;
  private readonly writtenTo: Tun[] = [];

  /** Set while the TUN should merge: the first flush that finds merging refused says so, once. */
  private watchGro: boolean;

  /** Where DTLS channels open the records of a receive batch (queued packets point into it). */
  readonly frames: PacketBatch;
  readonly capacity = RX_FRAMES;

  constructor(slotSize: number, gro = false) {
    this.frames = new PacketBatch(RX_FRAMES, slotSize);
    this.watchGro = gro;
  }

  /** Queues the packet buf[off, off+len) for `tun`; buf must stay untouched until the next flush(). */
  add(tun: Tun, buf: Buffer, off: number, len: number): void {
    let q = this.cur;
    // (Writes out early, but keeps `frames`: the current datagram's frames are still in use.)
    if (q !== null && (q.buf !== buf || q.count === this.capacity || this.tun !== tun)) {
      this.write();
      q = null;
    }
    if (q === null) {
      q = this.cur = this.viewOf(buf);
      this.tun = tun;
    }
    q.offs[q.count] = off;
    q.lens[q.count++] = len;
  }

  private viewOf(buf: Buffer): PacketBatch {
    for (const v of this.views) if (v.buf === buf) return v;
    if (this.views.length >= 4) this.views.shift(); // (callers use two or three buffers)
    const v = PacketBatch.over(buf, RX_FRAMES);
    this.views.push(v);
    return v;
  }

  /** Before each datagram: writes out and empties when `frames` may not hold its records. */
  makeRoom(): void {
    if (this.frames.count > RX_FRAMES - RX_ROOM) this.flush();
  }

  /** Writes what is queued and empties `frames`; returns how many packets the kernel took. */
  flush(): number {
    this.frames.count = 0;
    return this.write();
  }

  /** Packets the kernel took since the last call (for the TUN read after a write, src/os/latency.ts). */
  takeWritten(): number {
    const n = this.written;
    this.written = 0;
    return n;
  }

  /**
   * The devices that took packets since the last call (at most WRITTEN_TO_MAX: the read after
   * a write is for small batches only). Valid until the next write; empties the list.
   */
  takeWrittenTo(into: Tun[]): Tun[] {
    into.length = 0;
    for (const t of this.writtenTo) into.push(t);
    this.writtenTo.length = 0;
    return into;
  }

  /** A device closes: what is queued for it is dropped (its fd is gone). */
  forget(tun: Tun): void {
    if (this.tun === tun && this.cur !== null) this.cur.count = 0;
    const i = this.writtenTo.indexOf(tun);
    if (i >= 0) this.writtenTo.splice(i, 1);
  }

  private write(): number {
    const q = this.cur, tun = this.tun;
    if (q === null) return 0;
    this.cur = null;
    const n = tun !== null && tun.isOpen && q.count > 0 ? tun.writeBatch(q) : 0;
    this.written += n;
    if (n > 0 && this.writtenTo.length < WRITTEN_TO_MAX && !this.writtenTo.includes(tun!)) this.writtenTo.push(tun!);
    q.count = 0;
    if (this.watchGro && tun && !tun.gro) {
      this.watchGro = false;
      log.warn(`the kernel refused a merged write into ${tun.name}: writing one packet per write from now on (as with --no-tun-gro)`);
    }
    return n;
  }
}
