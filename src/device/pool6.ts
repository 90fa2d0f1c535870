// The geometry of the IPv6 tunnel pool: which addresses clients get and how the data path
// finds them.
//
// Every client address is the pool's prefix with a host number of at most 32 bits in the
// last word (fd6d:7670:6e00::2, ::3, ...), so the last 32-bit word of an address is a
// complete key for it once the first three words are known to be the pool's: the server's
// IPv6 router is a Map keyed by that number, as the IPv4 one is keyed by the uint32 address,
// and a packet costs four word reads and compares, no string. (A /64 has room for 2^64
// hosts; 2^32 - 2 clients are more than any server here will see.)
import { Cidr6, formatCidr6, inCidr6, cidr6Bytes, parseCidr6, ipv6ToBytes } from '../wire/ip6';
import { formatIpv6 } from '../wire/ip';

/** The default IPv6 pool: a fixed unique local (ULA, fc00::/7) prefix; "6d76706e" spells "mvpn". */
export const DEFAULT_POOL6 = 'fd6d:7670:6e00::/64';

export class Pool6Range {
  readonly cidr: Cidr6;
  /** Canonical text, e.g. 'fd6d:7670:6e00::/64'. */
  readonly text: string;
  readonly prefix: number;
  /** The server's address (host 1) as text, 16 bytes and key. */
  readonly serverAddress: string;
  readonly serverBytes: Buffer;
  readonly serverKey: number;
  readonly firstHost = 2;
  readonly lastHost: number;
  /** Client addresses there are. */
  readonly size: number;

  constructor(cidr: string) {
    const c = parseCidr6(cidr);
    if (c.prefix < 64 || c.prefix > 126) throw new Error(`pool6 ${cidr}: prefix length must be 64..126 (got /${c.prefix})`);
    this.cidr = c;
    this.prefix = c.prefix;
    this.text = formatCidr6(c);
    this.lastHost = c.prefix <= 96 ? 0xffffffff : 2 ** (128 - c.prefix) - 1;
    this.size = this.lastHost - this.firstHost + 1;
    this.serverKey = this.key(1);
    this.serverBytes = this.bytes(this.serverKey);
    this.serverAddress = formatIpv6(this.serverBytes, 0);
  }

  /** The key (last word) of host number `host`. */
  key(host: number): number { return (this.cidr.net[3] | host) >>> 0; }
  /** The host number of a key. */
  host(key: number): number { return (key & ~this.cidr.mask[3]) >>> 0; }

  bytes(key: number): Buffer {
    const b = cidr6Bytes(this.cidr);
    b.writeUInt32BE(key, 12);
    return b;
  }

  textOf(key: number): string { return formatIpv6(this.bytes(key), 0); }

  /** The key of a client address given as text, or null when it is none of this pool's client addresses. */
  keyOfText(s: string): number | null {
    let b: Buffer;
    try { b = ipv6ToBytes(s); } catch { return null; }
    if (!this.isHostAddress(b, 0)) return null;
    const key = b.readUInt32BE(12), h = this.host(key);
    return h >= this.firstHost && h <= this.lastHost ? key : null;
  }

  /** True when the 16 bytes at buf[off] are in the pool's prefix. */
  contains(buf: Buffer, off: number): boolean { return inCidr6(buf, off, this.cidr); }

  /** True when the address at buf[off] has the form of a pool address (the last word is then its key). */
  isHostAddress(buf: Buffer, off: number): boolean {
    const n = this.cidr.net;
    return buf.readUInt32BE(off) === n[0] && buf.readUInt32BE(off + 4) === n[1] && buf.readUInt32BE(off + 8) === n[2] &&
      ((buf.readUInt32BE(off + 12) & this.cidr.mask[3]) >>> 0) === n[3];
  }
}
