// Layer-2 policy for the frames one client sends into a TAP tunnel (--dev tap), the switch
// port's "port security": a client's frames are carried only
//   - when they are whole Ethernet frames no larger than the tunnel carries,
//   - from the source MACs the client was first seen with, up to a limit (--mac-limit), and
//     from none another client already holds (no stealing a neighbour's traffic),
//   - and, for broadcast and multicast (which the kernel's bridge floods to every client),
//     at a limited rate (--broadcast-per-sec), so one client's broadcast storm cannot fill
//     the others' tunnels.
// Pure: no I/O, one guard per session. Nothing is allocated per frame; learning a MAC (at most
// `macLimit` times per session) is the only growth.
import { checkEther, etherSrc, isGroupDst } from '../wire/ether';
import { TokenBucket } from './ratelimit';

export interface L2Limits {
  /** Source MACs per client at most. */
  macLimit: number;
  /** The largest frame carried: the tunnel MTU plus the 14-byte header. */
  maxFrame: number;
  /** Broadcast/multicast frames per second per client; bursts of twice as many. */
  groupPerSec: number;
}

/**
 * What to do with a frame: carry it ('ok'; 'learned' when its source MAC was new and is the
 * client's now, see `learnedMac`), or drop it, by a reason the caller counts.
 */
export type L2Verdict = 'ok' | 'learned' | 'bad_ethernet' | 'too_big' | 'spoofed_mac' | 'broadcast_limit';

export class L2Guard {
  /** The client's source MACs, in the order they were first seen. */
  readonly macs: number[] = [];
  /** The MAC the last 'learned' verdict added. */
  learnedMac = 0;
  private readonly group: TokenBucket;

  /**
   * @param takenByOther whether another client holds `mac` already (the caller's MAC table);
   *   such a MAC is never learned.
   */
  constructor(readonly limits: L2Limits, now: number, private readonly takenByOther: (mac: number) => boolean = () => false) {
    this.group = new TokenBucket(limits.groupPerSec, 2 * limits.groupPerSec, now);
  }

  /** The verdict on the frame at buf[off, off+len) sent by this client at `now` (monotonic ms). */
  check(buf: Buffer, off: number, len: number, now: number): L2Verdict {
    const bad = checkEther(buf, off, len, this.limits.maxFrame);
    if (bad !== null) return bad === 'too_big' ? 'too_big' : 'bad_ethernet';
    const src = etherSrc(buf, off);
    let verdict: L2Verdict = 'ok';
    if (!this.knows(src)) {
      if (this.macs.length >= this.limits.macLimit || this.takenByOther(src)) return 'spoofed_mac';
      verdict = 'learned';
    }
    if (isGroupDst(buf, off) && !this.group.take(now)) return 'broadcast_limit';
    if (verdict === 'learned') {
      // (Only now: a frame the rate limit drops teaches nothing.)
      this.macs.push(src);
      this.learnedMac = src;
    }
    return verdict;
  }

  knows(mac: number): boolean {
    const m = this.macs;
    for (let i = 0; i < m.length; i++) if (m[i] === mac) return true;
    return false;
  }
}

/**
 * The server's table of which client holds which MAC (for every topology: a MAC is one
 * client's), and, with one shared TAP, where a frame from it goes.
 */
export class MacTable<S> {
  private readonly owner = new Map<number, S>();

  get(mac: number): S | undefined {
    return this.owner.get(mac);
  }

  /** True when a client other than `s` holds `mac`. */
  heldByOther(mac: number, s: S): boolean {
    const o = this.owner.get(mac);
    return o !== undefined && o !== s;
  }

  add(mac: number, s: S): void {
    this.owner.set(mac, s);
  }

  /** Forgets the MACs of a client that left. */
  removeAll(macs: readonly number[], s: S): void {
    for (const m of macs) if (this.owner.get(m) === s) this.owner.delete(m);
  }

  get size(): number {
    return this.owner.size;
  }
}
