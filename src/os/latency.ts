// The latency devices: three small shortcuts for interactive traffic, kept out of the data
// path's two straight lines. Each applies only to a small batch (at most
// HANDOFF_YIELD_MAX_BATCH packets: a ping, a keystroke, a TCP ACK), never to bulk traffic, and
// each was measured in `npm run bench` (bench/README.md, "Latency devices"):
//
//  1. Yield at the hand-off (native/poll.h, `--handoff-yield`): right after a send or TUN
//     write of a small batch, sched_yield(), so the process we woke on this CPU (the VPN at
//     the other end, the application behind the TUN) runs now instead of after our loop turn.
//     Bought about 0.03 ms per ping pinged in turn (0.456 against 0.489 ms), throughput the
//     same. Paused for 1 s after a yield that kept us away over 1 ms (a busy CPU).
//  2. Read the TUN after writing it (readTunAfterWrite): the kernel answers some packets
//     within the write (a ping to this host, a TCP ACK); read now, the answer leaves in this
//     turn. The server's wake-up went from 174-186 to 163-169 µs.
//  3. Read the UDP socket after a send (readUdpAfterSend): the peer often answered while we
//     yielded; its reply is opened in this turn. 0.013 to 0.040 ms off a ping pinged in turn
//     (4 runs of 4), throughput and CPU per MB the same.
//
// Between two machines 2 and 3 cost one empty read per small batch (about a microsecond).
import { addon } from '../native';
import type { Tun } from '../tun/tun';
import type { UdpSocket } from '../conn/udp';

/** Batches of at most this many packets are "interactive": the devices apply to them. */
export const HANDOFF_YIELD_MAX_BATCH = 4;
/** A yield that kept us off the CPU longer than this: another program is keeping it busy. */
export const HANDOFF_YIELD_MAX_AWAY_MS = 1;
/** Then no yields for this long. */
export const HANDOFF_YIELD_PAUSE_MS = 1000;

/** Turns device 1 on or off for this thread's event loop. */
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

/**
 * Device 2, at the end of a receive batch of `datagrams` datagrams whose packets the kernel
 * took (`written`): reads the TUN at once. Returns what the TUN's callback returned (true: it
 * did more than move packets; see BatchCallback in native.ts), false when there was no read.
 */
export function readTunAfterWrite(tun: Tun | null, written: number, datagrams: number, nowMs: number): boolean {
  if (written === 0 || tun === null || datagrams > HANDOFF_YIELD_MAX_BATCH) return false;
  return tun.readNow(nowMs) !== false;
}

/**
 * Device 3, at the end of a TUN batch of `packets` packets that was sent: reads the UDP socket
 * at once. Returns what the UDP callback returned, false when there was no read. (Not on a
 * UDP GRO socket: readNow says no.)
 */
export function readUdpAfterSend(sock: UdpSocket | null, packets: number, nowMs: number): boolean {
  if (sock === null || packets === 0 || packets > HANDOFF_YIELD_MAX_BATCH) return false;
  return sock.readNow(nowMs) !== false;
}
