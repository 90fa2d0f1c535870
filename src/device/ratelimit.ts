// Rate limits for what unauthenticated senders can make the server do: answer them, try their
// records, write log lines. Times are monotonic ms (clock.ts). Nothing here allocates per
// sender: a flood from random (spoofed) addresses must not grow memory.
import type { Logger } from '../log';

/** A token bucket: `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  private at: number;

  constructor(readonly rate: number, readonly burst = rate, now = 0) {
    this.tokens = burst;
    this.at = now;
  }

  /** Takes `n` tokens if there are that many. */
  take(now: number, n = 1): boolean {
    if (now > this.at) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.rate) / 1000);
      this.at = now;
    }
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Whether take(now, n) would succeed (takes nothing). */
  ready(now: number, n = 1): boolean {
    return Math.min(this.burst, this.tokens + (Math.max(0, now - this.at) * this.rate) / 1000) >= n;
  }
}

/**
 * Token buckets per sender, in a fixed table: a sender's address hashes to one of `slots`
 * buckets. Two senders may share a bucket (then they share its rate); none is ever added.
 */
export class HashedBuckets {
  private readonly tokens: Float64Array;
  private readonly at: Float64Array;

  constructor(readonly rate: number, readonly burst: number, readonly slots = 4096) {
    this.tokens = new Float64Array(slots).fill(burst);
    this.at = new Float64Array(slots);
  }

  /** Takes `n` tokens from the bucket of `key` (see sourceHash) if it has them. */
  take(key: number, now: number, n = 1): boolean {
    const i = key % this.slots;
    if (now > this.at[i]) {
      this.tokens[i] = Math.min(this.burst, this.tokens[i] + ((now - this.at[i]) * this.rate) / 1000);
      this.at[i] = now;
    }
    if (this.tokens[i] < n) return false;
    this.tokens[i] -= n;
    return true;
  }

  /** Whether take(key, now, n) would succeed (takes nothing). */
  ready(key: number, now: number, n = 1): boolean {
    const i = key % this.slots;
    return Math.min(this.burst, this.tokens[i] + (Math.max(0, now - this.at[i]) * this.rate) / 1000) >= n;
  }
}

/**
 * A sender's source as a non-negative number: the IPv4 address (/32), or a hash of an IPv6
 * address's first 64 bits (/64: one host usually has a whole /64). The port is left out: one
 * host with many ports is one source. `addrs` holds 16-byte addresses (IPv4-mapped for IPv4).
 */
export function sourceHash(addrs: Buffer, i: number): number {
  const o = 16 * i;
  // (Byte reads: this runs for every datagram of a flood, and readUInt32BE checks bounds.)
  let zero = 0;
  for (let k = 0; k < 10; k++) zero |= addrs[o + k];
  if (zero === 0 && addrs[o + 10] === 0xff && addrs[o + 11] === 0xff) {
    return ((addrs[o + 12] << 24) | (addrs[o + 13] << 16) | (addrs[o + 14] << 8) | addrs[o + 15]) >>> 0;
  }
  // FNV-1a over the /64.
  let h = 0x811c9dc5;
  for (let k = 0; k < 8; k++) h = Math.imul(h ^ addrs[o + k], 0x01000193) >>> 0;
  return h;
}

/**
 * Log lines that a sender can cause, limited per reason: the first `perWindow` of a reason in
 * each window are written, the rest counted and summed up in one line
 * (`suppressed 812 "mode mismatch" lines in 10s`) when the window is over.
 */
export class LogLimiter {
  private readonly windows = new Map<string, { start: number; written: number; suppressed: number }>();

  constructor(private readonly log: Logger, private readonly perWindow = 5, private readonly windowMs = 10_000) {}

  /** `msg` may be a function: then the line is only made when it is written. */
  warn(reason: string, now: number, msg: string | (() => string), fields?: Record<string, unknown>): void {
    let w = this.windows.get(reason);
    if (w !== undefined && now - w.start >= this.windowMs) {
      this.summary(reason, w);
      w = undefined;
    }
    if (w === undefined) {
      w = { start: now, written: 0, suppressed: 0 };
      this.windows.set(reason, w); // (reasons are a fixed, small set of names)
    }
    if (w.written < this.perWindow) {
      w.written++;
      this.log.warn(typeof msg === 'string' ? msg : msg(), fields);
    } else {
      w.suppressed++;
    }
  }

  /** Writes the summaries of windows that are over (call it from a timer). */
  flush(now: number): void {
    for (const [reason, w] of this.windows) {
      if (now - w.start < this.windowMs) continue;
      this.summary(reason, w);
      this.windows.delete(reason);
    }
  }

  private summary(reason: string, w: { suppressed: number }): void {
    if (w.suppressed > 0) this.log.warn(`suppressed ${w.suppressed} "${reason}" lines in ${Math.round(this.windowMs / 1000)}s`);
  }
}
