// Loads the native addon (native/*.cc) and describes it in TypeScript.
// Everything here is mechanism; policy (who may connect, what to route) lives in TypeScript.
import path from 'node:path';
import type { BatchHandle, PacketBatch } from './batch';

export type { BatchHandle } from './batch';

/**
 * What the native readers call per batch. Returning false says "I only forwarded packets":
 * nothing was queued for later (no promise, no process.nextTick, no log line), so the
 * native side skips running Node's queued jobs after it (native/poll.h, CallJs). Any other
 * return value (true, or nothing at all) runs them, as after any I/O callback.
 */
export type BatchCallback = (count: number, nowMs: number) => boolean | void;

export interface NativeTun {
  readonly name: string;
  readonly fd: number;
  /**
   * onPackets gets the batch's packet count and the loop's monotonic time in ms (clock.ts);
   * it returns false when it only forwarded packets (see BatchCallback).
   */
  start(buf: Buffer, offs: Uint32Array, lens: Uint32Array, maxPacket: number, headroom: number, onPackets: BatchCallback): void;
  /** Bytes written, or -errno (e.g. -11 EAGAIN when the kernel queue is full: packet dropped). */
  write(buf: Buffer, off?: number, len?: number): number;
  /** The handle tunWrite takes. */
  handle(): TunHandle;
  /**
   * Where the device keeps [gro, coalesced] after every tunWrite: whether it merges TCP
   * segments (0 if not asked for, or refused by the kernel), and with GRO how many segments
   * were merged into the write of an earlier one since open.
   */
  bindStatus(status: Float64Array): void;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeUdp {
  bind(host: string, port: number): number;
  connect(host: string, port: number): void;
  /** onDatagrams gets the datagram count (or -errno) and the loop's monotonic time in ms (clock.ts). */
  start(buf: Buffer, offs: Uint32Array, lens: Uint32Array, addrs: Buffer, ports: Uint32Array, slotSize: number, onDatagrams: BatchCallback): void;
  /** The handle udpSend takes. */
  handle(): UdpHandle;
  /** UDP segmentation offload: "on", "off", or "refused by the route". */
  readonly gso: string;
  close(): void;
  ref(): void;
  unref(): void;
  localAddress(): { address: string; port: number };
}

/**
 * Handles (native/handle.h): made once, then passed on every data-path call instead of an
 * object and its typed arrays. Opaque to JavaScript. (BatchHandle is declared in batch.ts.)
 */
export interface DtlsHandle { readonly __handle: 'dtls' }
export interface TunHandle { readonly __handle: 'tun' }
export interface UdpHandle { readonly __handle: 'udp' }
export interface PeerHandle { readonly __handle: 'peer' }

/** 0 handshaking, 1 open, 2 closed, 3 failed */
export type NativeState = 0 | 1 | 2 | 3;

export interface PeerIdentity {
  cn: string;
  subject: string;
  issuer: string;
  fingerprint256: string;
  validFrom: number;
  validTo: number;
  serial: string;
}

export interface NativeDtlsConnection {
  readonly error: string | null;
  handshake(): NativeState;
  takeOutput(): Buffer[] | null;
  timeout(): number;
  handleTimeout(): NativeState;
  shutdown(): void;
  peer(): PeerIdentity | null;
  info(): { version: string; cipher: string; dataMtu: number };
  setMtu(mtu: number): void;
  destroy(): void;
  /** Where the connection keeps [state, dropped, queued output datagrams] after every call. */
  bindStatus(status: Float64Array): void;
  /** The handle dtlsOpen and dtlsSeal take. */
  handle(): DtlsHandle;
}

export interface NativeDtlsContextOptions {
  server: boolean;
  ca: string;
  cert: string;
  key: string;
  verifyPeer?: boolean;
  ciphers?: string;
  cookieSecret?: Buffer;
  mtu?: number;
  keylog?: boolean;
  retransmitMs?: number;
}

export interface NativeDtlsContext {
  listen(datagram: Buffer, peerKey: string | Uint8Array): NativeDtlsConnection | Buffer[] | null;
  /** 1: a ClientHello with a good cookie, 0: without one, -1: with one not ours, -2: not a whole ClientHello. */
  checkCookie(buf: Uint8Array, offset: number, length: number, peerKey: Uint8Array): number;
  /** A new cookie secret; cookies of the previous one stay valid until the next rotation. */
  rotateCookieSecret(): void;
  connect(serverName: string): NativeDtlsConnection;
  takeKeylog(): string[];
}

interface Addon {
  Tun: new (name: string, gro?: boolean, tap?: boolean) => NativeTun;
  Udp: new (family: 4 | 6, bufferBytes: number, gso: boolean) => NativeUdp;
  DtlsContext: new (opts: NativeDtlsContextOptions) => NativeDtlsContext;
  DtlsConnection: new () => NativeDtlsConnection;
  opensslVersion: string;
  /** The event loop's monotonic clock in ms (uv_now). */
  loopNow(): number;
  /**
   * In a TUN or UDP callback whose batch had at most `maxBatch` packets, each tunWrite or
   * udpSend that passed packets on gives the CPU up (sched_yield) right away; 0 turns it off. A
   * yield that kept the thread away longer than `maxAwayMs` pauses yielding for `pauseMs`.
   * This thread only.
   */
  setHandoffYield(maxBatch: number, maxAwayMs?: number, pauseMs?: number): void;
  /** [yields, of them longer than maxAwayMs, ms until yielding resumes (0: not paused)], this thread. */
  handoffStats(): [number, number, number];
  batchRef(buf: Buffer, offs: Uint32Array, lens: Uint32Array): BatchHandle;
  /** Writes the first `count` packets of `batch` into the TUN; returns how many the kernel took. */
  tunWrite(tun: TunHandle, batch: BatchHandle, count: number): number;
  /** Reads what the TUN holds now into its start() batch, without calling back; returns the count (0 before start). */
  tunRead(tun: TunHandle): number;
  /** A peer's address (16 bytes: IPv6 or IPv4-mapped) and port, for udpSend. */
  udpPeer(addr16: Buffer, port: number): PeerHandle;
  /** Sends the first `count` packets of `batch` to `peer` (null: the connected one); returns how many the kernel took. */
  udpSend(udp: UdpHandle, batch: BatchHandle, count: number, peer: PeerHandle | null): number;
  /** Reads what the socket holds now into its start() batch, without calling back; returns the count (0: none, before start, or with UDP_GRO; -errno: an error). */
  udpRead(udp: UdpHandle): number;
  /** Opens datagrams index..index+count-1 of `inb` into `out`, after its first outFirst records; returns out's record count. */
  dtlsOpen(conn: DtlsHandle, inb: BatchHandle, index: number, count: number, out: BatchHandle, outFirst: number): number;
  /** Seals the first `count` packets of `inb` into `out`, one record each; returns how many. */
  dtlsSeal(conn: DtlsHandle, inb: BatchHandle, count: number, out: BatchHandle): number;
}

/**
 * build/Release/minivpn.node, or the build that $MINIVPN_ADDON names (e.g. the one built with
 * AddressSanitizer by scripts/test-asan.sh).
 */
function load(): Addon {
  const file = process.env.MINIVPN_ADDON || path.join(__dirname, '..', '..', 'build', 'Release', 'minivpn.node');
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(file) as Addon;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot load the native addon ${file}: ${e.message} (build it with: npm ci, or npm run build)`);
  }
}

export const addon: Addon = load();

/** The batch's handle, made on first use. */
export function batchHandle(b: PacketBatch): BatchHandle {
  return b.handle ?? (b.handle = addon.batchRef(b.buf, b.offs, b.lens));
}
