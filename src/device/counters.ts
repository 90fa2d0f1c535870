// Why packets were dropped, counted by reason. Bumped on the hot path, so a counter is
// one property increment on an object whose shape never changes (V8 keeps that fast);
// no Map lookups, no allocation.

export const DROP_REASONS = [
  'garbage', // not a frame, or fails the frame checks
  'bad_ip', // inner packet fails checkIp
  'not_ipv4', // a well-formed IPv6 packet where the tunnel carries IPv4 only (--no-ipv6, or a client without an IPv6 address)
  'ipv6_link_local', // the OS's own IPv6 link traffic (router/neighbour solicitations, MLD): never tunnelled, never logged per packet
  'spoofed_source', // client sent a packet whose source is not its tunnel address
  'no_route', // destination is no client's address (and not forwardable)
  'replayed_or_bad_record', // DTLS rejected the record (replay window, bad MAC, ...)
  'mismatch_plaintext', // a plaintext frame arrived at a DTLS server
  'mismatch_dtls', // a DTLS record arrived at a plaintext server
  'unauthorized', // peer has no authorized session
  'client_to_client_off', // client-to-client traffic while that is disabled
  'too_big', // packet larger than the tunnel MTU / buffer
  'move_refused', // a record from an unknown address that no session authenticated as fresh (replay, forgery, junk)
  'handshake_limit', // a handshake not started or a step dropped: too many in progress from its source, or in all
  'not_answered', // an unauthenticated sender not answered: the answer would be larger than what it sent, or over the rate
  'move_budget', // a record from an unknown address not tried: over the trial budget (--move-trials-per-sec)
  'bad_cookie', // a ClientHello whose cookie is not ours (forged, stale, another sender's) and not answered: over the answer rate
  'bad_ethernet', // --dev tap: a DATA frame that is no usable Ethernet frame (short, a group or zero source MAC)
  'spoofed_mac', // --dev tap: a frame from a source MAC the client does not hold (over --mac-limit, or another client's)
  'broadcast_limit', // --dev tap: a broadcast/multicast frame over the client's rate (--broadcast-per-sec)
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export class Counters {
  private readonly c: Record<DropReason, number>;

  constructor() {
    const c = {} as Record<DropReason, number>;
    for (const r of DROP_REASONS) c[r] = 0;
    this.c = c;
  }

  inc(reason: DropReason, n = 1): void {
    this.c[reason] += n;
  }

  get(reason: DropReason): number {
    return this.c[reason];
  }

  /** Sum over all reasons. */
  get total(): number {
    let sum = 0;
    for (const r of DROP_REASONS) sum += this.c[r];
    return sum;
  }

  /** A copy of every counter, including zeros (so reports always list every reason). */
  snapshot(): Record<string, number> {
    return { ...this.c };
  }
}
