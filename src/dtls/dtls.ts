// DTLS contexts and connections: a thin, typed layer over OpenSSL (native/dtls.cc).
//
// Sans-IO: a connection never touches a socket or a clock. You give it datagrams
// (`open`), it gives back decrypted records and datagrams to send (`takeOutput`), and it
// tells you when OpenSSL wants its retransmission timer run (`timeoutMs`, `onTimeout`).
// The event loop (server/client) does the actual I/O.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { addon, batchHandle, DtlsHandle, NativeDtlsConnection, NativeDtlsContext, PeerIdentity } from '../native';
import { PacketBatch, shared } from '../batch';
import { logger } from '../log';

const log = logger('dtls');

export type ConnState = 'handshaking' | 'open' | 'closed' | 'failed';
const STATES: ConnState[] = ['handshaking', 'open', 'closed', 'failed'];

export interface DtlsContextOptions {
  role: 'server' | 'client';
  /** PEM text of the CA that signs the peers' certificates. */
  ca: string;
  cert: string;
  key: string;
  /** Mutual authentication is the default; turning it off is for experiments only. */
  verifyPeer?: boolean;
  /** Largest UDP payload for handshake messages (path MTU minus IP and UDP headers). */
  mtu?: number;
  /** Append session secrets in NSS key log format, so a capture can be decrypted. */
  keylogFile?: string | null;
  ciphers?: string;
  /** First retransmission timeout of a handshake flight (doubles on each loss); default 1000. */
  retransmitMs?: number;
  /** Server: the first cookie secret (tests); by default a random one. */
  cookieSecret?: Buffer;
}

/** checkCookie(): a good cookie, none, one not ours (forged, stale, another sender's), or not a whole ClientHello. */
export const enum CookieCheck { GOOD = 1, NONE = 0, BAD = -1, NOT_A_HELLO = -2 }

export class DtlsContext {
  readonly role: 'server' | 'client';
  private readonly ctx: NativeDtlsContext;
  private readonly keylogFile: string | null;
  /** The key log, opened once here: errors show at startup, and it stays writable after --user. */
  private keylogFd: number | null = null;

  constructor(opts: DtlsContextOptions) {
    this.role = opts.role;
    this.keylogFile = opts.keylogFile ?? null;
    if (this.keylogFile) this.keylogFd = openKeylog(this.keylogFile);
    this.ctx = new addon.DtlsContext({
      server: opts.role === 'server',
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      verifyPeer: opts.verifyPeer ?? true,
      mtu: opts.mtu ?? 1400,
      keylog: this.keylogFile !== null,
      ciphers: opts.ciphers,
      retransmitMs: opts.retransmitMs,
      ...(opts.cookieSecret ? { cookieSecret: opts.cookieSecret } : {}),
    });
    if (this.keylogFile) {
      log.warn('KEY LOG IS ON: session secrets are written to a file; anyone with it and a capture can read the traffic', { file: this.keylogFile });
    }
  }

  /** Loads PEM files from paths, with errors that name the file. */
  static fromFiles(opts: Omit<DtlsContextOptions, 'ca' | 'cert' | 'key'> & { caFile: string; certFile: string; keyFile: string }): DtlsContext {
    const read = (what: string, file: string) => {
      try {
        return fs.readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`${what}: cannot read ${file}: ${(err as Error).message}`);
      }
    };
    const cert = read('cert', opts.certFile);
    checkValidity('cert', opts.certFile, cert);
    try {
      return new DtlsContext({ ...opts, ca: read('ca', opts.caFile), cert, key: read('key', opts.keyFile) });
    } catch (err) {
      // OpenSSL's part says "ca: ...", "cert: ..." or "key: ...": add which file that was.
      const files: Record<string, string> = { ca: opts.caFile, cert: opts.certFile, key: opts.keyFile };
      const m = /^(ca|cert|key): ([^]*)$/.exec((err as Error).message);
      if (m) throw new Error(`${m[1]} ${files[m[1]]}: ${m[2]}`);
      throw err;
    }
  }

  /**
   * Server side, for a datagram from a peer with no connection yet. OpenSSL answers a
   * ClientHello without a valid cookie with a HelloVerifyRequest (returned as datagrams to
   * send) and keeps no state; a ClientHello with a valid cookie becomes a connection.
   */
  listen(datagram: Buffer, peerKey: string | Uint8Array, handshakeNow = true): { conn: DtlsConnection } | { reply: Buffer[] } | null {
    const r = this.ctx.listen(datagram, peerKey);
    if (r === null) return null;
    if (Array.isArray(r)) return { reply: r };
    const conn = new DtlsConnection(r, this);
    // (The server's first flight carries a signature: milliseconds. A server that queues
    // handshake work passes false and calls handshake() when the step's turn comes.)
    if (handshakeNow) conn.handshake();
    return { conn };
  }

  /**
   * Server side, before listen(): the cookie of the ClientHello at buf[offset, offset+length),
   * checked against our own (an HMAC of `peerKey`, as listen() makes them), without OpenSSL
   * parsing the ClientHello: a flood of forged cookies costs one HMAC each.
   */
  checkCookie(buf: Uint8Array, offset: number, length: number, peerKey: Uint8Array): CookieCheck {
    return this.ctx.checkCookie(buf, offset, length, peerKey) as CookieCheck;
  }

  /** Server side: a new cookie secret (the previous one is still accepted until the next call). */
  rotateCookieSecret(): void { this.ctx.rotateCookieSecret(); }

  /** Client side: a new connection; call handshake() and send takeOutput(). */
  connect(serverName: string): DtlsConnection {
    return new DtlsConnection(this.ctx.connect(serverName), this);
  }

  /** Writes any new key log lines (called after handshake progress). */
  flushKeylog(): void {
    if (this.keylogFd === null) return;
    const lines = this.ctx.takeKeylog();
    if (!lines.length) return;
    try {
      fs.writeSync(this.keylogFd, lines.join('\n') + '\n');
    } catch (err) {
      // Called on the receive path: a full disk must not stop the VPN. Say it once, stop logging keys.
      log.error('key log write failed; no more session secrets are written', { file: this.keylogFile, error: (err as Error).message });
      try { fs.closeSync(this.keylogFd); } catch { /* already closed */ }
      this.keylogFd = null;
    }
  }
}

/**
 * Opens (or creates) the key log for appending, mode 0600, not through a symbolic link (a
 * link planted in a shared directory would send the secrets elsewhere). A file that exists
 * keeps its content but is made 0600: it is about to hold secrets.
 */
function openKeylog(file: string): number {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`keylog: cannot open ${file}: ${e.code === 'ELOOP' ? 'it is a symbolic link' : e.message}`);
  }
  try {
    if (!fs.fstatSync(fd).isFile()) throw new Error('not a regular file');
    fs.fchmodSync(fd, 0o600);
  } catch (err) {
    fs.closeSync(fd);
    throw new Error(`keylog: cannot use ${file}: ${(err as Error).message}`);
  }
  return fd;
}

/**
 * Refuses our own certificate when it is outside its validity period: every peer would
 * reject it anyway, and "certificate expired on ..." at startup is the clearer message.
 */
export function checkValidity(what: string, file: string, pem: string, now = Date.now()): void {
  let x: crypto.X509Certificate;
  try {
    x = new crypto.X509Certificate(pem);
  } catch (err) {
    throw new Error(`${what}: ${file} is not a PEM certificate: ${(err as Error).message}`);
  }
  if (Date.parse(x.validTo) < now) throw new Error(`${what}: ${file} expired on ${new Date(x.validTo).toISOString()} (renew it: npm run pki)`);
  if (Date.parse(x.validFrom) > now) throw new Error(`${what}: ${file} is not valid before ${new Date(x.validFrom).toISOString()} (check the clock)`);
}

export class DtlsConnection {
  /**
   * [state, dropped, queued output datagrams], kept up to date by the native connection after
   * each call: the data path reads them per datagram without crossing into native code.
   * (On a SharedArrayBuffer, whose memory never moves nor goes away: native code keeps a pointer.)
   */
  private readonly status = shared.f64(3);
  /** What the record calls (open, seal) pass instead of `n`: see native/handle.h. */
  private readonly h: DtlsHandle;

  constructor(private readonly n: NativeDtlsConnection, private readonly ctx: DtlsContext) {
    n.bindStatus(this.status);
    this.h = n.handle();
  }

  get state(): ConnState { return STATES[this.status[0]]; }
  get error(): string | null { return this.n.error; }
  /** Datagrams dropped by OpenSSL after the handshake (replays, bad MACs, garbage). */
  get dropped(): number { return this.status[1]; }

  /** Drives the handshake; output (if any) is in takeOutput(). */
  handshake(): ConnState {
    const s = STATES[this.n.handshake()];
    this.ctx.flushKeylog();
    return s;
  }

  /**
   * Feeds datagram i of `inb` (e.g. a slot of a UDP receive batch). Its records replace what
   * is in `out`, or with `append` go after it; returns how many it added.
   */
  openSlot(inb: PacketBatch, i: number, out: PacketBatch, append = false): number {
    const first = append ? out.count : 0;
    this.openRange(inb, i, 1, out, first);
    return out.count - first;
  }

  /** Feeds every datagram of `batch`; their records replace what is in `out`. */
  open(batch: PacketBatch, out: PacketBatch): number {
    return this.openRange(batch, 0, batch.count, out, 0);
  }

  /** Feeds one datagram from anywhere (a copy: for the control path and tests); records replace what is in `out`. */
  openOne(datagram: Buffer, out: PacketBatch): number {
    const one = this.one ?? (this.one = new PacketBatch(1, 65536));
    one.clear();
    if (!one.push(datagram)) throw new RangeError(`a datagram of ${datagram.length} bytes does not fit in UDP`);
    return this.openRange(one, 0, 1, out, 0);
  }
  private one: PacketBatch | null = null;

  private openRange(inb: PacketBatch, from: number, count: number, out: PacketBatch, outFirst: number): number {
    const wasOpen = this.status[0] === 1;
    out.count = addon.dtlsOpen(this.h, batchHandle(inb), from, count, batchHandle(out), outFirst);
    if (!wasOpen) this.ctx.flushKeylog();
    return out.count;
  }

  /** Seals the first `count` packets of `inb`, one record each, into `out` (replacing what it held). */
  seal(inb: PacketBatch, count: number, out: PacketBatch): number {
    const n = addon.dtlsSeal(this.h, batchHandle(inb), count, batchHandle(out));
    out.count = n;
    return n;
  }

  /** Datagrams to send: handshake flights, retransmissions, alerts, close_notify. */
  takeOutput(): Buffer[] | null { return this.status[2] > 0 ? this.n.takeOutput() : null; }

  /** Milliseconds until onTimeout() should run, or -1 for no timer. */
  timeoutMs(): number { return this.n.timeout(); }

  /** Lets OpenSSL retransmit (or give up on) the current flight. */
  onTimeout(): ConnState { return STATES[this.n.handleTimeout()]; }

  /** Queues close_notify; send takeOutput() afterwards. */
  shutdown(): void { this.n.shutdown(); }

  peer(): PeerIdentity | null { return this.n.peer(); }
  info(): { version: string; cipher: string; dataMtu: number } { return this.n.info(); }
  destroy(): void { this.n.destroy(); }
}

export { PeerIdentity };
