// The clock the VPN's timeouts run on: the event loop's monotonic clock, in milliseconds
// (libuv's uv_now, the same clock Node's timers use).
//
// Why not Date.now(): it is the wall clock, and the wall clock steps (NTP, a VM resumed, an
// admin's `date -s`). Stepped back an hour, every "now - lastSeen" is negative and a dead
// client keeps its session and address for that hour; stepped forward, every live client
// looks dead at once. Monotonic time only moves forward, at the pace of real time.
//
// The data path does not even call this: each TUN and UDP batch arrives with the loop's time
// as an argument (native/poll.h), so stamping a packet's session costs no clock read.
import { addon } from './native';

/** Monotonic milliseconds (arbitrary origin): for durations and timeouts, not for display. */
export function monotonicMs(): number {
  return addon.loopNow();
}
