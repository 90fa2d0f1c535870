// Yielding the CPU after a hand-off: the scheduling half of the data path's latency.
//
// When the VPN sends a datagram or writes a packet into the TUN, the kernel wakes whoever
// waits for it (the VPN at the other end, an application reading a socket) with a "sync"
// wake-up, and on a busy machine often on this CPU: it then waits until we go to sleep. Our
// way to sleep is long next to a C program's (out of JavaScript, Node's check phase, libuv's
// polls), and for a ping that wait is part of the round trip. So after a callback that passed
// a few packets on, the native reader yields the CPU once (native/poll.h); after a fuller
// batch (bulk traffic, which a yield per batch would slow) it does not.
// bench/README.md, "Yielding after a hand-off", has the measurements.
import { addon } from '../native';

/** Batches of at most this many packets are "interactive": a yield follows their hand-off. */
export const HANDOFF_YIELD_MAX_BATCH = 4;

/** Turns yielding after a hand-off on or off for this thread's event loop. */
export function setHandoffYield(on: boolean): void {
  addon.setHandoffYield(on ? HANDOFF_YIELD_MAX_BATCH : 0);
}

/** How often this thread yielded after a hand-off (status). */
export function handoffYields(): number {
  return addon.handoffYields();
}
