// One client as the server sees it: its channel, identity, tunnel address and counters.
import { Channel } from './channel';
import { Peer } from '../conn/udp';
import { PacketBatch } from '../batch';
import { monotonicMs } from '../clock';

/** Packets per batch on the data path (TUN reads, UDP reads, what one seal call takes). */
export const BATCH = 64;

export class Session {
  cn = '';
  fingerprint: string | null = null;
  /** Tunnel address as uint32 (0 until authorized) and as text. */
  address = 0;
  addressStr = '';
  /** Times in monotonic ms (clock.ts). */
  readonly createdAt = monotonicMs();
  connectedAt = 0;
  lastSeen = this.createdAt;
  lastSent = this.createdAt;
  rxBytes = 0;
  rxPackets = 0;
  txBytes = 0;
  txPackets = 0;
  /** Packets from this client dropped by policy (spoofed source). */
  drops = 0;
  closed = false;
  timer: NodeJS.Timeout | null = null;
  /** "address:port" of the client's underlay end, for logs and status. */
  readonly key: string;

  /**
   * @param tx the frames of the current TUN batch bound for this client: entries into the
   *   TUN's read buffer (filled, sealed and reset per batch; see PacketBatch.over)
   */
  constructor(readonly channel: Channel, readonly peer: Peer, readonly tx: PacketBatch) {
    this.key = peer.text;
  }
}

export interface SessionStatus {
  cn: string;
  address: string;
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
}

/** `now` in monotonic ms (clock.ts), as the session's times. */
export function sessionStatus(s: Session, now: number): SessionStatus {
  return {
    cn: s.cn,
    address: s.addressStr,
    remote: s.key,
    mode: s.channel.kind,
    connectedSec: Math.round((now - s.connectedAt) / 1000),
    lastSeenSec: Math.round((now - s.lastSeen) / 1000),
    rxBytes: s.rxBytes,
    rxPackets: s.rxPackets,
    txBytes: s.txBytes,
    txPackets: s.txPackets,
    droppedRecords: s.channel.dropped,
    droppedSpoofed: s.drops,
  };
}
