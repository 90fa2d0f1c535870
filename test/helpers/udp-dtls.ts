// A tiny UDP driver for the sans-IO DTLS layer, for tests: one node dgram socket, datagrams
// fed to DtlsContext.listen() / DtlsConnection.openOne(), takeOutput() sent back, and
// OpenSSL's retransmission timer run from conn.timeoutMs() / onTimeout(). It is what the
// real server and client event loops do, without any tunnel policy, so that the DTLS layer
// can be put against another implementation (openssl s_client / s_server) on loopback.
import dgram from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import { DtlsConnection, DtlsContext } from '../../src/dtls/dtls';
import { PacketBatch } from '../../src/batch';

/**
 * One DTLS association over a UDP socket. Events: 'open', 'data' (Buffer, one per record),
 * 'closed' (reason), 'failed' (reason).
 */
export class DtlsUdpPeer extends EventEmitter {
  /** Every record received, in order. */
  readonly records: Buffer[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly out = new PacketBatch(16, 16384 + 2048);
  private last: DtlsConnection['state'];

  constructor(readonly conn: DtlsConnection, private readonly sock: dgram.Socket, readonly address: string, readonly port: number) {
    super();
    this.last = conn.state;
  }

  get state(): DtlsConnection['state'] { return this.conn.state; }

  /** All received records as one string (a line sent by a peer may come as one record or several). */
  get text(): string { return Buffer.concat(this.records).toString('utf8'); }

  /** Feeds a datagram from the peer; decrypted records are emitted as 'data'. */
  feed(datagram: Buffer): void {
    if (this.conn.state === 'closed' || this.conn.state === 'failed') return;
    const n = this.conn.openOne(datagram, this.out);
    for (let i = 0; i < n; i++) {
      const rec = Buffer.from(this.out.packet(i)); // copy: the batch is reused
      this.records.push(rec);
      this.emit('data', rec);
    }
    this.afterProgress();
  }

  /** Seals one record and sends it. */
  send(data: Buffer | string): void {
    const b = typeof data === 'string' ? Buffer.from(data) : data;
    const inb = new PacketBatch(1, b.length);
    inb.push(b);
    const n = this.conn.seal(inb, inb.count, this.out);
    for (let i = 0; i < n; i++) this.sock.send(Buffer.from(this.out.packet(i)), this.port, this.address);
    this.flush(); // records that did not fit in `out` went to the output queue
  }

  /** Sends close_notify (if open) and frees the connection. */
  close(): void {
    this.stopTimer();
    if (this.conn.state === 'open') {
      this.conn.shutdown();
      this.flush();
    }
    this.conn.destroy();
  }

  /** Resolves when `text` contains `want`; rejects on timeout, failure or close. */
  async waitForText(want: string, timeoutMs = 10000): Promise<string> {
    return this.waitUntil(() => this.text.includes(want), 'data', timeoutMs, `text ${JSON.stringify(want)} (got ${JSON.stringify(this.text)})`);
  }

  /** Resolves when the connection is open; rejects with OpenSSL's reason if it fails. */
  async waitOpen(timeoutMs = 10000): Promise<void> {
    await this.waitUntil(() => this.state === 'open', 'open', timeoutMs, 'the handshake to finish');
  }

  /** Resolves with the reason when the peer closes (close_notify) or the connection fails. */
  async waitClosed(timeoutMs = 10000): Promise<string> {
    if (this.state === 'closed' || this.state === 'failed') return this.conn.error ?? this.state;
    return new Promise((resolve, reject) => {
      const done = (why: string) => { clearTimeout(t); this.off('closed', done); this.off('failed', done); resolve(why); };
      const t = setTimeout(() => { this.off('closed', done); this.off('failed', done); reject(new Error(`timed out after ${timeoutMs} ms waiting for the connection to close`)); }, timeoutMs);
      this.on('closed', done);
      this.on('failed', done);
    });
  }

  /** Sends queued datagrams and (re)arms the retransmission timer; reports state changes. */
  afterProgress(): void {
    this.flush();
    this.armTimer();
    const s = this.conn.state;
    if (s === this.last) return;
    this.last = s;
    if (s === 'open') this.emit('open');
    else if (s === 'closed') { this.stopTimer(); this.emit('closed', this.conn.error ?? 'closed'); }
    else if (s === 'failed') { this.stopTimer(); this.emit('failed', this.conn.error ?? 'failed'); }
  }

  private flush(): void {
    for (const d of this.conn.takeOutput() ?? []) this.sock.send(d, this.port, this.address);
  }

  private armTimer(): void {
    this.stopTimer();
    const ms = this.conn.timeoutMs();
    if (ms < 0 || this.conn.state === 'closed' || this.conn.state === 'failed') return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.conn.onTimeout();
      this.afterProgress();
    }, ms);
    this.timer.unref(); // the socket, not the timer, decides whether the process stays up
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async waitUntil(ok: () => boolean, event: string, timeoutMs: number, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (ok()) { finish(); resolve(this.text); return; }
        if (this.state === 'failed' || this.state === 'closed') {
          finish();
          reject(new Error(`connection ${this.state} (${this.conn.error ?? 'no reason'}) while waiting for ${what}`));
        }
      };
      const finish = () => {
        clearTimeout(t);
        for (const e of [event, 'closed', 'failed']) this.off(e, check);
      };
      const t = setTimeout(() => { finish(); reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)); }, timeoutMs);
      for (const e of [event, 'closed', 'failed']) this.on(e, check);
      check();
    });
  }
}

/** A DTLS server on one UDP socket: unknown peers go through ctx.listen() (cookie exchange). */
export class DtlsUdpServer extends EventEmitter {
  /** Live associations by "address:port". */
  readonly peers = new Map<string, DtlsUdpPeer>();

  private constructor(private readonly ctx: DtlsContext, readonly sock: dgram.Socket) {
    super();
    sock.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo));
  }

  get port(): number { return this.sock.address().port; }

  /** Binds to host:port (port 0: a free one) and starts serving. */
  static async start(ctx: DtlsContext, host = '127.0.0.1', port = 0): Promise<DtlsUdpServer> {
    if (ctx.role !== 'server') throw new Error('DtlsUdpServer needs a server context');
    const sock = dgram.createSocket('udp4');
    sock.bind(port, host);
    await once(sock, 'listening');
    return new DtlsUdpServer(ctx, sock);
  }

  /** Resolves with the next peer whose handshake completes; rejects if one fails first. */
  nextOpen(timeoutMs = 10000): Promise<DtlsUdpPeer> {
    return new Promise((resolve, reject) => {
      const onOpen = (p: DtlsUdpPeer) => { finish(); resolve(p); };
      const onFail = (p: DtlsUdpPeer, why: string) => { finish(); reject(new Error(`handshake with ${p.address}:${p.port} failed: ${why}`)); };
      const finish = () => { clearTimeout(t); this.off('open', onOpen); this.off('failed', onFail); };
      const t = setTimeout(() => { finish(); reject(new Error(`timed out after ${timeoutMs} ms waiting for a client handshake`)); }, timeoutMs);
      this.on('open', onOpen);
      this.on('failed', onFail);
    });
  }

  close(): void {
    for (const p of this.peers.values()) p.close();
    this.peers.clear();
    this.sock.close();
  }

  private onDatagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}:${rinfo.port}`;
    const known = this.peers.get(key);
    if (known) { known.feed(msg); return; }
    const r = this.ctx.listen(msg, key);
    if (r === null) return; // not a ClientHello: dropped, no state kept
    if ('reply' in r) { // HelloVerifyRequest: stateless
      for (const d of r.reply) this.sock.send(d, rinfo.port, rinfo.address);
      return;
    }
    const peer = new DtlsUdpPeer(r.conn, this.sock, rinfo.address, rinfo.port);
    this.peers.set(key, peer);
    peer.on('open', () => this.emit('open', peer));
    peer.on('failed', (why: string) => { this.peers.delete(key); this.emit('failed', peer, why); });
    peer.on('closed', () => this.peers.delete(key));
    peer.afterProgress(); // sends the ServerHello flight listen() produced
  }
}

/** A DTLS client on its own UDP socket; resolves once the handshake is done. */
export async function dtlsConnect(ctx: DtlsContext, host: string, port: number,
  opts: { serverName?: string; timeoutMs?: number } = {}): Promise<{ peer: DtlsUdpPeer; sock: dgram.Socket }> {
  if (ctx.role !== 'client') throw new Error('dtlsConnect needs a client context');
  const sock = dgram.createSocket('udp4');
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  const peer = new DtlsUdpPeer(ctx.connect(opts.serverName ?? ''), sock, host, port);
  sock.on('message', (msg, rinfo) => {
    if (rinfo.address === host && rinfo.port === port) peer.feed(msg); // anyone else: ignored
  });
  peer.conn.handshake();
  peer.afterProgress();
  try {
    await peer.waitOpen(opts.timeoutMs ?? 10000);
  } catch (err) {
    peer.close();
    sock.close();
    throw err;
  }
  return { peer, sock };
}
