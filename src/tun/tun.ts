// A TUN device: the kernel hands us IP packets that were routed into the interface, and
// injects the packets we write as if they had arrived on it. Opened with `tap`, the same
// class is a TAP device: whole Ethernet frames instead (layer 2, ARP and MACs included).
import { addon, batchHandle, NativeTun, TunHandle } from '../native';
import { PacketBatch, shared } from '../batch';

export interface TunOptions {
  /** Interface name; '' lets the kernel choose (tun0, tun1, ...). */
  name?: string;
  /** Packets read per wakeup at most. */
  batchSize?: number;
  /** Largest packet we accept (the interface MTU must not exceed it). */
  maxPacket?: number;
  /** Free bytes left before each packet read, for a header written in place. */
  headroom?: number;
  /**
   * Receive offload: writeBatch merges consecutive segments of one TCP connection into one
   * large packet (IFF_VNET_HDR), so the kernel's TCP stack handles them once. A capture on
   * the interface then shows the merged packets, as with GRO on a network card.
   */
  gro?: boolean;
  /** A TAP device: reads and writes are Ethernet frames (src/wire/ether.ts), not IP packets. */
  tap?: boolean;
}

export class Tun {
  readonly name: string;
  /** The batch every read fills; valid only during the onPackets callback. */
  readonly rx: PacketBatch;
  private readonly dev: NativeTun;
  private readonly h: TunHandle;
  /** [gro, coalesced], kept up to date by the native device after each write (no native call to read). */
  private readonly status = shared.f64(2);
  private readonly maxPacket: number;
  private readonly headroom: number;
  private closed = false;
  private onBatch: ((batch: PacketBatch, nowMs: number) => boolean | void) | null = null;
  /** Set while onBatch runs: rx is in use, readNow must not refill it. */
  private inBatch = false;

  private constructor(dev: NativeTun, opts: Required<TunOptions>) {
    this.dev = dev;
    this.h = dev.handle();
    dev.bindStatus(this.status);
    this.name = dev.name;
    this.maxPacket = opts.maxPacket;
    this.headroom = opts.headroom;
    const slot = (opts.headroom + opts.maxPacket + 7) & ~7;
    this.rx = new PacketBatch(opts.batchSize, slot);
  }

  /** Opens (creates) the interface. Throws with err.code EPERM/EACCES/ENOENT/EBUSY/EINVAL and a hint. */
  static open(opts: TunOptions = {}): Tun {
    const o: Required<TunOptions> = {
      name: opts.name ?? '',
      batchSize: opts.batchSize ?? 64,
      maxPacket: opts.maxPacket ?? 65535,
      headroom: opts.headroom ?? 0,
      gro: opts.gro ?? false,
      tap: opts.tap ?? false,
    };
    return new Tun(new addon.Tun(o.name, o.gro, o.tap), o);
  }

  /**
   * Starts reading: cb runs once per batch with this.rx filled (count = this.rx.count), and
   * the event loop's monotonic time in ms (see clock.ts). cb returns false when it only
   * forwarded packets (see BatchCallback in native.ts).
   */
  onPackets(cb: (batch: PacketBatch, nowMs: number) => boolean | void): void {
    this.onBatch = cb;
    this.dev.start(this.rx.buf, this.rx.offs, this.rx.lens, this.maxPacket, this.headroom, (count: number, nowMs: number) =>
      this.deliver(count, nowMs));
  }

  /**
   * Reads what the kernel has queued on the device right now and hands it to the onPackets
   * callback at once, without waiting for the event loop. For a caller that just wrote
   * packets the kernel answers within the write itself (an echo request to this host, TCP
   * data it ACKs at once): the answer leaves in this event-loop turn, not the next. Returns
   * what the callback returned (false when nothing was queued, or when called from inside it).
   */
  readNow(nowMs: number): boolean | void {
    if (this.onBatch === null || this.inBatch || this.closed) return false;
    const n = addon.tunRead(this.h);
    return n > 0 ? this.deliver(n, nowMs) : false;
  }

  private deliver(count: number, nowMs: number): boolean | void {
    this.rx.count = count;
    this.inBatch = true;
    try {
      return this.onBatch!(this.rx, nowMs);
    } finally {
      this.inBatch = false;
    }
  }

  /** Writes one IP packet; false if the kernel dropped it (queue full) or it was refused. */
  write(buf: Buffer, off = 0, len = buf.length - off): boolean {
    return this.dev.write(buf, off, len) >= 0;
  }

  /** Writes the first `count` packets of the batch; returns how many the kernel took. */
  writeBatch(batch: PacketBatch, count = batch.count): number {
    return addon.tunWrite(this.h, batchHandle(batch), count);
  }

  /** Whether writeBatch merges TCP segments (asked for, and the kernel has not refused it). */
  get gro(): boolean { return this.status[0] === 1; }
  /** Segments merged into an earlier segment's write since open (0 without GRO). */
  get coalesced(): number { return this.status[1]; }

  /** Keeps (or stops keeping) the process alive while the device is open. */
  ref(): void { this.dev.ref(); }
  unref(): void { this.dev.unref(); }

  /** Closes the fd; the kernel removes the interface with it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dev.close();
  }
}
