// The tunnel address pool: hands each client (by certificate CN) an address from the
// tunnel subnet, e.g. 10.8.0.0/24 -> server 10.8.0.1, clients 10.8.0.2 .. 10.8.0.254.
//
// Addresses are *sticky*: a CN keeps its address after disconnecting and across server
// restarts (leases are saved to a JSON file), so firewall rules, logs and students'
// notes that mention "alice is 10.8.0.2" stay true. When no never-used address is left,
// the address of the client that has been gone longest is given away; its owner then
// gets a new one next time.

import * as fs from 'fs';
import * as path from 'path';
import { monotonicMs } from '../clock';
import { logger } from '../log';
import { formatCidr, intToIpv4, ipv4ToInt, parseCidr } from '../wire/ip';
import { Pool6Range } from './pool6';

const log = logger('pool');


export class PoolExhaustedError extends Error {
  constructor(readonly cidr: string, readonly size: number) {
    super(`address pool ${cidr} exhausted: all ${size} client addresses are leased to connected clients`);
    this.name = 'PoolExhaustedError';
  }
}

/** Every IPv6 client address is leased to a connected client: its own refusal reason. */
export class Pool6ExhaustedError extends Error {
  constructor(readonly cidr: string, readonly size: number) {
    super(`IPv6 address pool ${cidr} exhausted: all ${size} client addresses are leased to connected clients`);
    this.name = 'Pool6ExhaustedError';
  }
}

export interface Lease {
  cn: string;
  address: number;
  addressStr: string;
  /** The IPv6 address's key (its last 32-bit word, see pool6.ts), 0 for none, and its text. */
  address6: number;
  address6Str: string;
  active: boolean;
  /** When the lease last became inactive (ms since epoch), null while active. */
  releasedAt: number | null;
}

/** On-disk format of the leases file. */
interface LeasesFile {
  version: 1;
  pool: string;
  /** The IPv6 pool, when there is one (absent in files written before IPv6: they still load). */
  pool6?: string;
  leases: { cn: string; address: string; address6?: string; releasedAt: number | null }[];
}

/** What acquire() hands out. */
export interface Acquired { address: number; addressStr: string; address6: number; address6Str: string }

export interface PoolOptions {
  /** Where leases persist; null/undefined keeps them in memory only. */
  leasesFile?: string | null;
  /** Write the file at most this often (ms), changes in between together; 0 (default): at each change. */
  saveEveryMs?: number;
  /** The IPv6 pool (a /64 .. /126); null or absent: clients get IPv4 only. */
  pool6?: string | null;
}

export class AddressPool {
  readonly cidr: string;
  readonly prefix: number;
  /** The first host address (.1), which the server uses. */
  readonly serverAddress: string;
  readonly serverAddressInt: number;
  /** Number of addresses clients can get (subnet minus network, broadcast, server). */
  readonly size: number;

  private readonly firstClient: number;
  private readonly lastClient: number;
  private readonly file: string | null;
  private readonly byCn = new Map<string, Lease>();
  private readonly byAddress = new Map<number, Lease>();
  /** The IPv6 pool (null: IPv4 only) and its leases by key. */
  readonly v6: Pool6Range | null;
  private readonly byAddress6 = new Map<number, Lease>();
  private freshCursor6 = 2;
  /** Inactive leases, oldest release first (a Map keeps insertion order). */
  private readonly inactive = new Map<string, Lease>();
  /** Every address below this one has been handed out at some point (is reserved). */
  private freshCursor: number;
  private tmpCounter = 0;
  private readonly saveEveryMs: number;
  /** Coalesced saves: changes not yet written, the pending write, the last one (monotonic ms). */
  private dirty = false;
  private saveTimer: NodeJS.Timeout | null = null;
  private savedAt = -Infinity;
  /** Writes of the leases file so far (tests: bounded under a reconnect loop). */
  writes = 0;

  constructor(cidr: string, opts: PoolOptions = {}) {
    const c = parseCidr(cidr);
    if (c.prefix < 8 || c.prefix > 30) {
      throw new Error(`pool ${cidr}: prefix length must be 8..30 (got /${c.prefix})`);
    }
    this.cidr = formatCidr(c);
    this.prefix = c.prefix;
    this.saveEveryMs = opts.saveEveryMs ?? 0;
    const broadcast = (c.network | ~c.mask) >>> 0;
    this.serverAddressInt = c.network + 1;
    this.serverAddress = intToIpv4(this.serverAddressInt);
    this.firstClient = c.network + 2;
    this.lastClient = broadcast - 1;
    this.size = this.lastClient - this.firstClient + 1;
    this.freshCursor = this.firstClient;
    this.v6 = opts.pool6 ? new Pool6Range(opts.pool6) : null;
    this.file = opts.leasesFile ?? null;
    if (this.file) this.load(this.file);
  }

  /**
   * The address for `cn`: its previous one if it has a lease, otherwise a never-used
   * address, otherwise the one released longest ago. Calling it again for an active CN
   * returns the same address (the caller decides what to do with a duplicate session).
   * Throws PoolExhaustedError when every client address is in active use.
   */
  acquire(cn: string): Acquired {
    if (typeof cn !== 'string' || cn === '') throw new Error('pool.acquire: cn must be a non-empty string');
    let lease = this.byCn.get(cn);
    if (lease?.active) return acquired(lease);
    // IPv6 first: a refusal must leave both pools as they were.
    if (this.v6 && !(lease && lease.address6) && this.nextFresh6() === null && !this.oldestInactive6()) {
      throw new Pool6ExhaustedError(this.v6.text, this.v6.size);
    }
    if (lease) {
      this.inactive.delete(cn);
    } else {
      const address = this.nextFresh();
      if (address !== null) {
        lease = { cn, address, addressStr: intToIpv4(address), address6: 0, address6Str: '', active: false, releasedAt: null };
      } else {
        // Take over the oldest inactive lease of another CN (its IPv6 address too).
        const oldest = this.inactive.values().next();
        if (oldest.done) throw new PoolExhaustedError(this.cidr, this.size);
        const prev = oldest.value;
        this.inactive.delete(prev.cn);
        this.byCn.delete(prev.cn);
        log.info('reusing address of inactive client', { address: prev.addressStr, from: prev.cn, to: cn });
        lease = { cn, address: prev.address, addressStr: prev.addressStr, address6: prev.address6, address6Str: prev.address6Str, active: false, releasedAt: null };
        if (prev.address6) this.byAddress6.set(prev.address6, lease);
      }
      this.byCn.set(cn, lease);
      this.byAddress.set(lease.address, lease);
    }
    if (this.v6 && !lease.address6) this.lease6(lease, this.v6);
    lease.active = true;
    lease.releasedAt = null;
    this.save();
    return acquired(lease);
  }

  /** Gives `lease` an IPv6 address: a never-used one, else the one released longest ago (acquire checked there is one). */
  private lease6(lease: Lease, v6: Pool6Range): void {
    let key = this.nextFresh6();
    if (key === null) {
      const prev = this.oldestInactive6()!;
      key = prev.address6;
      prev.address6 = 0;
      prev.address6Str = '';
      log.info('reusing IPv6 address of inactive client', { address6: v6.textOf(key), from: prev.cn, to: lease.cn });
    }
    lease.address6 = key;
    lease.address6Str = v6.textOf(key);
    this.byAddress6.set(key, lease);
  }

  /** The inactive lease released longest ago that holds an IPv6 address. */
  private oldestInactive6(): Lease | undefined {
    for (const l of this.inactive.values()) if (l.address6) return l;
    return undefined;
  }

  /** Next IPv6 key no CN has ever held, or null. */
  private nextFresh6(): number | null {
    const v6 = this.v6!;
    while (this.freshCursor6 <= v6.lastHost && this.byAddress6.has(v6.key(this.freshCursor6))) this.freshCursor6++;
    return this.freshCursor6 <= v6.lastHost ? v6.key(this.freshCursor6) : null;
  }

  /** Marks `cn`'s lease inactive; the address stays reserved for it while possible. */
  release(cn: string): void {
    const lease = this.byCn.get(cn);
    if (!lease || !lease.active) return;
    lease.active = false;
    lease.releasedAt = Date.now();
    this.inactive.set(cn, lease);
    this.save();
  }

  /** The lease of `cn`, if it has one. */
  lookup(cn: string): Lease | undefined {
    const l = this.byCn.get(cn);
    return l && { ...l };
  }

  /** The CN that holds `address` (uint32), if any. */
  ownerOf(address: number): string | undefined {
    return this.byAddress.get(address)?.cn;
  }

  get activeCount(): number {
    return this.byCn.size - this.inactive.size;
  }

  /** All leases, by address (copies). */
  leases(): Lease[] {
    return [...this.byAddress.values()].sort((a, b) => a.address - b.address).map((l) => ({ ...l }));
  }

  /** Next address that no CN has ever held, or null. Amortised O(1): the cursor only moves up. */
  private nextFresh(): number | null {
    while (this.freshCursor <= this.lastClient && this.byAddress.has(this.freshCursor)) this.freshCursor++;
    return this.freshCursor <= this.lastClient ? this.freshCursor : null;
  }

  private load(file: string): void {
    // Create the directory now, so a wrong path fails at startup rather than at every save.
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
    } catch (e) {
      throw new Error(`pool: cannot create the directory for leases file ${file}: ${(e as Error).message}`);
    }
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        log.info('no leases file yet, starting empty', { file });
        return;
      }
      throw new Error(`pool: cannot read leases file ${file}: ${(e as Error).message}`);
    }
    let data: LeasesFile;
    try {
      data = JSON.parse(text);
      if (typeof data !== 'object' || data === null || data.version !== 1 || !Array.isArray(data.leases)) {
        throw new Error('not a version 1 leases file');
      }
    } catch (e) {
      // Losing stickiness is better than refusing to start; keep the bad file for a post-mortem.
      const aside = `${file}.corrupt`;
      log.warn('leases file is corrupt, starting with no leases', { file, error: (e as Error).message, movedTo: aside });
      try {
        fs.renameSync(file, aside);
      } catch {
        // it will be overwritten on the next save; nothing else to do
      }
      return;
    }
    const now = Date.now();
    const loaded: Lease[] = [];
    for (const entry of data.leases) {
      const why = this.badEntry(entry);
      if (why) {
        log.warn('ignoring lease', { file, entry: JSON.stringify(entry), reason: why });
        continue;
      }
      const address = ipv4ToInt(entry.address);
      // Sessions do not survive a restart: every lease starts inactive. Leases that were
      // active when the server stopped count as released now (most recently used).
      const releasedAt = typeof entry.releasedAt === 'number' ? entry.releasedAt : now;
      const lease: Lease = { cn: entry.cn, address, addressStr: intToIpv4(address), address6: 0, address6Str: '', active: false, releasedAt };
      this.load6(lease, entry.address6, file);
      this.byCn.set(lease.cn, lease);
      this.byAddress.set(address, lease);
      loaded.push(lease);
    }
    loaded.sort((a, b) => (a.releasedAt as number) - (b.releasedAt as number));
    for (const l of loaded) this.inactive.set(l.cn, l);
    log.info('leases loaded', { file, count: loaded.length });
  }

  /** A lease's IPv6 address from the file, if it has one that is usable now (a file from before IPv6 has none). */
  private load6(lease: Lease, text: unknown, file: string): void {
    if (!this.v6 || text === undefined || text === null) return;
    const key = typeof text === 'string' ? this.v6.keyOfText(text) : null;
    if (key === null || this.byAddress6.has(key)) {
      log.warn('ignoring IPv6 address of lease', { file, cn: lease.cn, address6: String(text), reason: key === null ? `not a client address of ${this.v6.text}` : 'duplicate address6' });
      return;
    }
    lease.address6 = key;
    lease.address6Str = this.v6.textOf(key);
    this.byAddress6.set(key, lease);
  }

  /** Why a leases-file entry cannot be used, or null. */
  private badEntry(e: unknown): string | null {
    if (typeof e !== 'object' || e === null) return 'not an object';
    const { cn, address, releasedAt } = e as Record<string, unknown>;
    if (typeof cn !== 'string' || cn === '') return 'cn missing';
    if (this.byCn.has(cn)) return 'duplicate cn';
    let a: number;
    try {
      a = ipv4ToInt(address as string);
    } catch {
      return 'bad address';
    }
    if (a < this.firstClient || a > this.lastClient) return `address not a client address of ${this.cidr}`;
    if (this.byAddress.has(a)) return 'duplicate address';
    if (releasedAt !== null && releasedAt !== undefined && !(typeof releasedAt === 'number' && Number.isFinite(releasedAt))) {
      return 'bad releasedAt';
    }
    return null;
  }

  /**
   * Saves the leases, at most once per saveEveryMs (the server: 500): a client reconnecting in a loop must not
   * make the server fsync at its pace. Changes within that time are written together when it
   * is over (a timer), or by flush() (the server's stop). A crash loses at most that much.
   */
  private save(): void {
    if (!this.file) return;
    this.dirty = true;
    if (this.saveTimer) return;
    const wait = this.savedAt + this.saveEveryMs - monotonicMs();
    if (wait <= 0) { this.flush(); return; }
    this.saveTimer = setTimeout(() => { this.saveTimer = null; this.flush(); }, wait);
    this.saveTimer.unref();
  }

  /** Writes pending changes now. */
  flush(): void {
    if (this.saveTimer) { clearTimeout(this.saveTimer); this.saveTimer = null; }
    if (!this.dirty || !this.file) return;
    this.dirty = false;
    this.savedAt = monotonicMs();
    this.write(this.file);
  }

  /**
   * Writes the leases atomically: a temp file in the same directory, fsync, rename over
   * the old file, fsync the directory. A crash leaves either the old or the new file,
   * never a half-written one. A failed write is logged; the pool keeps working in memory.
   */
  private write(file: string): void {
    this.writes++;
    const data: LeasesFile = {
      version: 1,
      pool: this.cidr,
      ...(this.v6 ? { pool6: this.v6.text } : {}),
      leases: this.leases().map((l) => ({ cn: l.cn, address: l.addressStr, releasedAt: l.releasedAt, ...(l.address6 ? { address6: l.address6Str } : {}) })),
    };
    const dir = path.dirname(file);
    const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${this.tmpCounter++}`);
    let fd: number | null = null;
    try {
      // 0600: it names every client and its address (as the status socket, which is root's only).
      // 'wx': never through a file or link someone else put under this name.
      fd = fs.openSync(tmp, 'wx', 0o600);
      fs.writeSync(fd, JSON.stringify(data, null, 2) + '\n');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fd = null;
      fs.renameSync(tmp, file);
      this.fsyncDir(dir);
    } catch (e) {
      log.error('cannot save leases', { file, error: (e as Error).message });
      if (fd !== null) fs.closeSync(fd);
      fs.rmSync(tmp, { force: true });
    }
  }

  private fsyncDir(dir: string): void {
    // Makes the rename itself durable. Best effort: not every filesystem allows it.
    try {
      const d = fs.openSync(dir, 'r');
      try {
        fs.fsyncSync(d);
      } finally {
        fs.closeSync(d);
      }
    } catch {
      // ignore
    }
  }
}

function acquired(l: Lease): Acquired {
  return { address: l.address, addressStr: l.addressStr, address6: l.address6, address6Str: l.address6Str };
}
