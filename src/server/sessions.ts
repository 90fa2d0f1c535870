// The server's sessions: one per client, found by the client's underlay address (each
// datagram), by its certificate CN (one session per CN), and by its tunnel address (the
// Router: each packet from the TUN). A session is the shared protocol core (src/session)
// plus what only the server knows of a client: its endpoint, identity and address.
import { PacketBatch } from '../batch';
import { Peer } from '../conn/udp';
import { AddressPool } from '../device/pool';
import { L2Guard } from '../device/l2guard';
import { Router } from '../device/router';
import { formatMac } from '../wire/ether';
import { SessionCore } from '../session/core';
import type { Link } from './links';

/** Packets per batch on the data path (TUN reads, UDP reads, what one seal call takes). */
export const BATCH = 64;

export class Session {
  cn = '';
  fingerprint: string | null = null;
  /** Tunnel address as uint32 (0 until authorized) and as text. */
  address = 0;
  addressStr = '';
  /** Tunnel IPv6 address: its key (the last 32-bit word, src/device/pool6.ts; 0 for none) and text. */
  address6 = 0;
  address6Str = '';
  connectedAt = 0;
  /** Packets from this client dropped by policy (spoofed source; with --dev tap every layer-2 drop). */
  drops = 0;
  /** Removed from the table (the core may have ended earlier). */
  gone = false;
  /** The channel's own timer (DTLS retransmission) while handshaking. */
  timer: NodeJS.Timeout | null = null;
  /** "address:port" of the client's underlay end, for logs and status. */
  key: string;
  /** Times the client moved to a new address or port (roaming). */
  moves = 0;
  /** While handshaking: its source (admission's per-source count), else -1. */
  source = -1;
  /** --dev tap: the layer-2 policy for this client's frames (its MACs, its broadcast rate). */
  l2: L2Guard | null = null;
  /** Its own device (the p2p topology), else null: the shared TUN. */
  link: Link | null = null;
  /** "client connected" was logged (and the connect hook run): its end is logged as a disconnect. */
  announced = false;

  /**
   * @param tx the frames of the current TUN batch bound for this client: entries into the
   *   TUN's read buffer (filled, sealed and reset per batch; see PacketBatch.over)
   */
  constructor(readonly core: SessionCore, public peer: Peer, readonly tx: PacketBatch) {
    this.key = peer.text;
  }
}

export class SessionTable {
  private readonly byRemote = new Map<number | string, Session>();
  private readonly byCn = new Map<string, Session>();
  /** Tunnel address -> session, for packets from the TUN. */
  readonly router = new Router<Session>();
  /** IPv6 tunnel address (its key: every client shares the pool's prefix) -> session. */
  readonly router6 = new Router<Session>();

  constructor(readonly pool: AddressPool) {}

  /** Sessions in any state, handshakes included. */
  get size(): number { return this.byRemote.size; }
  /** Sessions that were given an address. */
  get connected(): number { return this.byCn.size; }

  fromRemote(key: number | string): Session | undefined { return this.byRemote.get(key); }
  fromCn(cn: string): Session | undefined { return this.byCn.get(cn); }
  all(): Session[] { return [...this.byRemote.values()]; }
  clients(): Session[] { return [...this.byCn.values()]; }
  /** The connected sessions, without a copy (data path: do not change the table while iterating). */
  clientList(): IterableIterator<Session> { return this.byCn.values(); }

  /** A new peer (its handshake starts). */
  add(s: Session): void {
    this.byRemote.set(s.peer.key, s);
  }

  /** The client was authorized: its CN and address point at it now. */
  connect(s: Session, lease: { address: number; addressStr: string; address6: number; address6Str: string }, now: number): void {
    s.address = lease.address;
    s.addressStr = lease.addressStr;
    s.address6 = lease.address6;
    s.address6Str = lease.address6Str;
    s.connectedAt = now;
    this.router.add(lease.address, s);
    if (lease.address6) this.router6.add(lease.address6, s);
    this.byCn.set(s.cn, s);
  }

  /** Roaming: the client of `s` is at `peer` now; the old endpoint is forgotten. */
  move(s: Session, peer: Peer): void {
    if (this.byRemote.get(s.peer.key) === s) this.byRemote.delete(s.peer.key);
    s.peer = peer;
    s.key = peer.text;
    s.moves++;
    this.byRemote.set(peer.key, s);
  }

  /** Removes every way to find `s`; its address stays reserved for its CN (sticky leases). */
  remove(s: Session): void {
    s.gone = true;
    if (this.byRemote.get(s.peer.key) === s) this.byRemote.delete(s.peer.key);
    if (!s.address) return;
    this.router.remove(s.address, s);
    if (s.address6) this.router6.remove(s.address6, s);
    if (this.byCn.get(s.cn) === s) this.byCn.delete(s.cn);
    this.pool.release(s.cn);
  }
}

export interface SessionStatus {
  cn: string;
  address: string;
  /** The client's IPv6 tunnel address ('' for none). */
  address6: string;
  remote: string;
  mode: string;
  connectedSec: number;
  lastSeenSec: number;
  rxBytes: number;
  rxPackets: number;
  txBytes: number;
  txPackets: number;
  droppedRecords: number;
  droppedSpoofed: number;
  moves: number;
  /** --dev tap: the client's source MACs. */
  macs?: string[];
  /** The client's own TUN (p2p topology only). */
  tun?: string;
}

/** `now` in monotonic ms (clock.ts), as the session's times. */
export function sessionStatus(s: Session, now: number): SessionStatus {
  const c = s.core;
  return {
    cn: s.cn,
    address: s.addressStr,
    address6: s.address6Str,
    remote: s.key,
    mode: c.channel.kind,
    connectedSec: Math.round((now - s.connectedAt) / 1000),
    lastSeenSec: Math.round((now - c.lastSeen) / 1000),
    rxBytes: c.rxBytes,
    rxPackets: c.rxPackets,
    txBytes: c.txBytes,
    txPackets: c.txPackets,
    droppedRecords: c.droppedRecords,
    droppedSpoofed: s.drops,
    moves: s.moves,
    ...(s.l2 ? { macs: s.l2.macs.map(formatMac) } : {}),
    ...(s.link ? { tun: s.link.name } : {}),
  };
}
