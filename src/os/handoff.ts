// Yielding the CPU at a hand-off: the scheduling half of the data path's latency.
//
// When the VPN sends a datagram or writes a packet into the TUN, the kernel wakes whoever
// waits for it (the VPN at the other end, an application reading a socket) with a "sync"
// wake-up, and often on this CPU: it then waits until we go to sleep. Our way to sleep is
// long next to a C program's (out of JavaScript, Node's check phase, libuv's polls), and for
// a ping that wait is part of the round trip. So in a callback that read only a few packets,
// the native send or TUN write that passed packets on yields the CPU right away
// (native/poll.h), before the rest of the callback. Not in a fuller batch: bulk traffic,
// which a yield per batch would slow. And not while another program keeps the CPU busy: it
// would run instead of the process we woke, for a whole time slice, so a yield that kept us
// away longer than a millisecond pauses yielding for a second. The measurements are in
// bench/README.md, "Yielding after a hand-off". What the yield let run may have answered by
// the time we are back: so after a small batch, the TUN is read at once after its write
// (TunQueue.endBatch) and the UDP socket after its send (UdpSocket.endBatch).
import { addon } from '../native';

/** Batches of at most this many packets are "interactive": their hand-offs yield. */
export const HANDOFF_YIELD_MAX_BATCH = 4;
/** A yield that kept us off the CPU longer than this: another program is keeping it busy. */
export const HANDOFF_YIELD_MAX_AWAY_MS = 1;
/** Then no yields for this long. */
export const HANDOFF_YIELD_PAUSE_MS = 1000;

/** Turns yielding after a hand-off on or off for this thread's event loop. */
export function setHandoffYield(on: boolean, o: { maxAwayMs?: number; pauseMs?: number } = {}): void {
  addon.setHandoffYield(on ? HANDOFF_YIELD_MAX_BATCH : 0, o.maxAwayMs ?? HANDOFF_YIELD_MAX_AWAY_MS, o.pauseMs ?? HANDOFF_YIELD_PAUSE_MS);
}

export interface HandoffStats {
  /** yields after a hand-off so far */
  yields: number;
  /** of them, how many kept us away longer than HANDOFF_YIELD_MAX_AWAY_MS (a busy CPU) */
  slow: number;
  /** ms until yielding resumes after the last slow one (0: yielding) */
  pausedMs: number;
}

/** This thread's yields after a hand-off (status, tests). */
export function handoffStats(): HandoffStats {
  const [yields, slow, pausedMs] = addon.handoffStats();
  return { yields, slow, pausedMs: Math.ceil(pausedMs) };
}
