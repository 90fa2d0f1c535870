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
  /**
   * A read batch shared with other TUNs of this event loop (TunReadShare): one TUN per
   * session needs no batch of its own, since the loop reads one device at a time.
   */
  share?: TunReadShare;
}

/**
 * The read batch of several TUNs. The event loop runs one device's callback at a time, so
 * they can fill the same buffer; `busy` is set while any of them is in its callback (readNow
 * must not refill the batch under it). batchSize, maxPacket and headroom are the batch's.
 */
export class TunReadShare {
  readonly rx: PacketBatch;
  busy = false;
  constructor(readonly batchSize: number, readonly maxPacket: number, readonly headroom: number) {
    this.rx = new PacketBatch(batchSize, (headroom + maxPacket + 7) & ~7);
  }
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
  /** rx, and whether a callback is using it (then readNow must not refill it); maybe shared. */
  private readonly share: TunReadShare;

  private constructor(dev: NativeTun, opts: Required<Omit<TunOptions, 'share'>>, share: TunReadShare | undefined) {
    this.dev = dev;
    this.h = dev.handle();
    dev.bindStatus(this.status);
    this.name = dev.name;
    this.share = share ?? new TunReadShare(opts.batchSize, opts.maxPacket, opts.headroom);
    this.maxPacket = this.share.maxPacket;
    this.headroom = this.share.headroom;
    this.rx = this.share.rx;
  }

  /** Opens (creates) the interface. Throws with err.code EPERM/EACCES/ENOENT/EBUSY/EINVAL and a hint. */
  static open(opts: TunOptions = {}): Tun {
    const o: Required<Omit<TunOptions, 'share'>> = {
      name: opts.name ?? '',
      batchSize: opts.batchSize ?? 64,
      maxPacket: opts.maxPacket ?? 65535,
      headroom: opts.headroom ?? 0,
      gro: opts.gro ?? false,
      tap: opts.tap ?? false,
    };
    return new Tun(new addon.Tun(o.name, o.gro, o.tap), o, opts.share);
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
    if (this.onBatch === null || this.share.busy || this.closed) return false;
    const n = addon.tunRead(this.h);
    return n > 0 ? this.deliver(n, nowMs) : false;
  }

  private deliver(count: number, nowMs: number): boolean | void {
    const share = this.share;
    const outer = share.busy; // (a shared batch: another device's callback may be below us)
    this.rx.count = count;
    share.busy = true;
    try {
      return this.onBatch!(this.rx, nowMs);
    } finally {
      share.busy = outer;
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

  /** False once closed. */
  get isOpen(): boolean { return !this.closed; }

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
