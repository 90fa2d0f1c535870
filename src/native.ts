// Loads the native addon (native/*.cc) and describes it in TypeScript.
// Everything here is mechanism; policy (who may connect, what to route) lives in TypeScript.
import path from 'node:path';

export interface NativeTun {
  readonly name: string;
  readonly fd: number;
  start(buf: Buffer, offs: Uint32Array, lens: Uint32Array, maxPacket: number, headroom: number, onPackets: (count: number) => void): void;
  /** Bytes written, or -errno (e.g. -11 EAGAIN when the kernel queue is full: packet dropped). */
  write(buf: Buffer, off?: number, len?: number): number;
  writeBatch(buf: Buffer, offs: Uint32Array, lens: Uint32Array, count: number): number;
  /** Whether writeBatch merges TCP segments (false if not asked for, or refused by the kernel). */
  readonly gro: boolean;
  /** With GRO: TCP segments merged into the write of an earlier segment, since open. */
  readonly coalesced: number;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeUdp {
  bind(host: string, port: number): number;
  connect(host: string, port: number): void;
  start(buf: Buffer, offs: Uint32Array, lens: Uint32Array, addrs: Buffer, ports: Uint32Array, slotSize: number, onDatagrams: (count: number) => void): void;
  /** Datagrams the kernel took (the rest were dropped: socket buffer full). */
  sendBatch(buf: Buffer, offs: Uint32Array, lens: Uint32Array, count: number, addr16: Buffer | null, port: number): number;
  /** UDP segmentation offload: "on", "off", or "refused by the route". */
  readonly gso: string;
  close(): void;
  ref(): void;
  unref(): void;
  localAddress(): { address: string; port: number };
}

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
  /** Returns the record count in out; outFirst/outUsed append after records already there. */
  open(inBuf: Buffer, inOffs: Uint32Array, inLens: Uint32Array, inCount: number,
       outBuf: Buffer, outOffs: Uint32Array, outLens: Uint32Array, outFirst?: number, outUsed?: number): number;
  seal(inBuf: Buffer, inOffs: Uint32Array, inLens: Uint32Array, inCount: number,
       outBuf: Buffer, outOffs: Uint32Array, outLens: Uint32Array): number;
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
  listen(datagram: Buffer, peerKey: string): NativeDtlsConnection | Buffer[] | null;
  connect(serverName: string): NativeDtlsConnection;
  takeKeylog(): string[];
}

interface Addon {
  Tun: new (name: string, gro?: boolean) => NativeTun;
  Udp: new (family: 4 | 6, bufferBytes: number, gso: boolean) => NativeUdp;
  DtlsContext: new (opts: NativeDtlsContextOptions) => NativeDtlsContext;
  DtlsConnection: new () => NativeDtlsConnection;
  opensslVersion: string;
}

function load(): Addon {
  const file = path.join(__dirname, '..', '..', 'build', 'Release', 'minivpn.node');
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(file) as Addon;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot load the native addon ${file}: ${e.message} (build it with: npm ci, or npm run build)`);
  }
}

export const addon: Addon = load();
