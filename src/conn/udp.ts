// The one UDP socket a VPN endpoint uses, read and written in batches (native/udp.cc:
// recvmmsg/sendmmsg), so the cost per datagram is a few array writes, not a system call,
// an event, a Buffer and an address object.
//
// A peer is identified by a 16-byte address (IPv6, or IPv4-mapped ::ffff:a.b.c.d) and a
// port. peerKey() turns that into a Map key: a number for IPv4 peers (no allocation),
// a string for IPv6 peers.
import net from 'node:net';
import { addon, batchHandle, NativeUdp, PeerHandle, UdpHandle } from '../native';
import { PacketBatch, shared } from '../batch';

const BUFFER_BYTES = 4 * 1024 * 1024;

export interface Peer {
  addr: Buffer; // 16 bytes, owned by the peer
  port: number;
  key: number | string;
  /** "192.0.2.11:40000" or "[2001:db8::1]:40000", for logs and status */
  text: string;
  host: string;
  /** The address in native form, made on first send (peerHandle()). */
  handle: PeerHandle | null;
}

/** The peer's native address handle, made on first use. */
export function peerHandle(p: Peer): PeerHandle {
  return p.handle ?? (p.handle = addon.udpPeer(p.addr, p.port));
}

/** The bytes 00 00 ff ff as a native-endian 32-bit word: the third word of an IPv4-mapped address. */
const V4_MAPPED_WORD = new Uint32Array(Uint8Array.of(0, 0, 0xff, 0xff).buffer)[0];

/** The batch a read fills: datagram i is rx.packet(i), from address slot i / ports[i]. */
export class UdpBatch extends PacketBatch {
  readonly addrs: Buffer;
  /** The same 16-byte addresses as four 32-bit words each, for the lookup per datagram. */
  private readonly words: Uint32Array;
  readonly ports: Uint32Array;
  constructor(capacity: number, slotSize: number) {
    super(capacity, slotSize);
    this.addrs = shared.bytes(16 * capacity);
    this.words = new Uint32Array(this.addrs.buffer, this.addrs.byteOffset, 4 * capacity);
    this.ports = shared.u32(capacity);
  }

  isV4Mapped(i: number): boolean {
    const w = this.words, o = 4 * i;
    return w[o] === 0 && w[o + 1] === 0 && w[o + 2] === V4_MAPPED_WORD;
  }

  /**
   * A Map key for the sender of datagram i: for IPv4, the address word (in this machine's byte
   * order: only ever compared with keys made here) and the port in one number.
   */
  peerKey(i: number): number | string {
    if (this.isV4Mapped(i)) return this.words[4 * i + 3] * 65536 + this.ports[i];
    return `${this.addrs.toString('hex', 16 * i, 16 * i + 16)}:${this.ports[i]}`;
  }

  /** A Peer object for the sender of datagram i (allocates: new peers only). */
  peer(i: number): Peer {
    const addr = Buffer.from(this.addrs.subarray(16 * i, 16 * i + 16));
    const port = this.ports[i];
    let host: string;
    if (this.isV4Mapped(i)) host = `${addr[12]}.${addr[13]}.${addr[14]}.${addr[15]}`;
    else host = formatV6(addr);
    return { addr, port, key: this.peerKey(i), host, text: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`, handle: null };
  }
}

function formatV6(a: Buffer): string {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(a.readUInt16BE(i).toString(16));
  // Let Node's URL parser compress the zeros for us.
  return new URL(`http://[${parts.join(':')}]/`).hostname.slice(1, -1);
}

/** The 16-byte form of an IP address string. */
export function addr16(host: string): Buffer {
  const b = Buffer.alloc(16);
  if (net.isIPv4(host)) {
    b[10] = b[11] = 0xff;
    host.split('.').forEach((x, k) => (b[12 + k] = Number(x)));
    return b;
  }
  const full = new URL(`http://[${host}]/`).hostname.slice(1, -1);
  const [head, tail = ''] = full.includes('::') ? full.split('::') : [full, ''];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  groups.forEach((g, k) => b.writeUInt16BE(parseInt(g, 16), 2 * k));
  return b;
}

export interface UdpOptions {
  /**
   * UDP segmentation offload (default off): sendBatch hands the kernel each run of same-size
   * datagrams to one peer as one send, so the stack (routing, firewall, the device queue) is
   * crossed once per run; the kernel cuts it into datagrams at the device, or at the
   * receiving socket on the same machine. The socket also reads with UDP_GRO: a run arrives
   * whole and the native reader cuts it into the batch. On the wire they are the same datagrams, but a
   * capture taken on this host (or on a veth in the lab) sees the run as one large packet:
   * off by default, so that what tcpdump shows in the labs is one datagram per packet.
   */
  gso?: boolean;
  /**
   * The socket's receive and send buffers (default 4 MiB; the kernel doubles it). A server
   * takes more: on a busy machine it is off the CPU for tens of milliseconds at a time, and
   * under a flood of 100k datagrams a second a 4 MiB buffer then overflows, dropping its
   * clients' datagrams with the flood's.
   */
  bufferBytes?: number;
}

export class UdpSocket {
  private readonly s: NativeUdp;
  private readonly h: UdpHandle;
  private closed = false;

  private constructor(readonly family: 4 | 6, opts: UdpOptions) {
    this.s = new addon.Udp(family, opts.bufferBytes ?? BUFFER_BYTES, opts.gso ?? false);
    this.h = this.s.handle();
  }

  /** Binds; host '::' listens on IPv6 and IPv4 (dual stack). */
  static bind(host: string, port: number, opts: UdpOptions = {}): UdpSocket {
    const u = new UdpSocket(net.isIPv6(host) ? 6 : 4, opts);
    try {
      u.s.bind(host, port);
    } catch (err) {
      u.close();
      throw new Error(`cannot listen on UDP ${host}:${port}: ${(err as Error).message}`);
    }
    return u;
  }

  /** A client socket connected to one server: the kernel drops datagrams from anyone else. */
  static connect(host: string, port: number, opts: UdpOptions = {}): UdpSocket {
    const u = new UdpSocket(net.isIPv6(host) ? 6 : 4, opts);
    try {
      u.s.connect(host, port);
    } catch (err) {
      u.close(); // (now, not when the collector gets to it: a roaming client retries often)
      throw err;
    }
    return u;
  }

  /** "on", "off", or "refused by the route" (a device that cannot segment: sends went on without). */
  get gso(): string { return this.s.gso; }

  address(): { address: string; port: number } {
    return this.s.localAddress();
  }

  /**
   * Starts reading: cb runs once per batch of datagrams (rx.count of them), with the event
   * loop's monotonic time in ms (see clock.ts); it returns false when it only forwarded
   * packets (see BatchCallback in native.ts). onError gets socket errors such as
   * ECONNREFUSED (the server's port is closed) as an errno number.
   */
  onDatagrams(rx: UdpBatch, cb: (rx: UdpBatch, nowMs: number) => boolean | void, onError: (errno: number) => void = () => undefined): void {
    this.deliver = (n, nowMs) => {
      if (n < 0) {
        onError(-n);
        return true;
      }
      rx.count = n;
      this.inBatch = true;
      try {
        return cb(rx, nowMs);
      } finally {
        this.inBatch = false;
      }
    };
    this.s.start(rx.buf, rx.offs, rx.lens, rx.addrs, rx.ports, rx.slotSize, this.deliver);
  }
  /** onDatagrams' callback behind the batch bookkeeping (null before it). */
  private deliver: ((n: number, nowMs: number) => boolean | void) | null = null;
  /** Set while the callback runs: its batch is in use, readNow must not refill it. */
  private inBatch = false;

  /**
   * Reads what the socket holds right now and hands it to the onDatagrams callback at once,
   * without waiting for the event loop. For a caller that just sent and yielded: a peer on
   * this CPU may have answered meanwhile, and its reply is then taken in this event-loop turn,
   * not after Node's way back to the loop. Returns what the callback returned (false when
   * nothing was there, or when called from inside the callback). Not with UDP GRO (`gso`).
   */
  readNow(nowMs: number): boolean | void {
    if (this.deliver === null || this.inBatch || this.closed) return false;
    const n = addon.udpRead(this.h);
    return n !== 0 ? this.deliver(n, nowMs) : false;
  }

  /** Sends every datagram of the batch to one peer (null: the connected peer); returns how many the kernel took. */
  sendBatch(batch: PacketBatch, peer: Peer | null): number {
    if (this.closed || batch.count === 0) return 0;
    return addon.udpSend(this.h, batchHandle(batch), batch.count, peer ? peerHandle(peer) : null);
  }

  private one: PacketBatch | null = null;
  /** Sends one datagram (control path: copied into a batch of one); returns 1 if the kernel took it. */
  send(buf: Buffer, peer: Peer | null): number {
    if (this.closed) return 0;
    const one = this.one ?? (this.one = new PacketBatch(1, 65536));
    one.clear();
    if (!one.push(buf)) throw new RangeError(`a datagram of ${buf.length} bytes does not fit in UDP`);
    return this.sendBatch(one, peer);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.s.close();
  }
}
