// A DTLS client and server session core, up (handshake, hello, config), for the DTLS fuzz
// target in test/fuzz.test.ts. No sockets: datagrams are handed over in memory.
import { PacketBatch } from '../../src/batch';
import { Counters } from '../../src/device/counters';
import { DtlsContext } from '../../src/dtls/dtls';
import { DtlsChannel } from '../../src/session/channel';
import { ConfigMsg } from '../../src/wire/control';
import { SessionCore, Timing } from '../../src/session/core';
import { FrameType } from '../../src/wire/frame';
import { testPki } from './certs';

export interface DtlsPair {
  client: SessionCore;
  server: SessionCore;
  serverCounters: Counters;
  /** The server's receive batch (the channel appends records there; the shell empties it). */
  serverRx: PacketBatch;
  /** A DATA frame carrying `body`, sealed by the client: one datagram. */
  seal(body: Buffer, now: number): Buffer;
}

/** Feeds datagrams into a core, emptying its receive batch after each as a shell does. */
function feed(core: SessionCore, rx: PacketBatch, datagrams: Buffer[], now: number): void {
  for (const d of datagrams) {
    const b = new PacketBatch(1, 2048);
    b.push(d);
    core.decapsulate(b, 0, now);
    rx.count = 0;
  }
}

/** Makes fresh pairs (a handshake each, a few ms), so that every fuzz run starts clean. */
export async function dtlsPairs(timing: Timing, config: ConfigMsg, ciphers?: string): Promise<(now: number) => DtlsPair> {
  const p = await testPki();
  const ctx = (role: 'server' | 'client', id: { certPem: string; keyPem: string }) =>
    new DtlsContext({ role, ca: p.ca.certPem, cert: id.certPem, key: id.keyPem, retransmitMs: 1000, ciphers });
  const sctx = ctx('server', p.server), cctx = ctx('client', p.client);
  return (now) => dtlsPair(sctx, cctx, timing, config, now);
}

function dtlsPair(sctx: DtlsContext, cctx: DtlsContext, timing: Timing, config: ConfigMsg, now: number): DtlsPair {
  const rx = { c: new PacketBatch(128, 2048), s: new PacketBatch(128, 2048) };
  const serverCounters = new Counters();
  const client = new SessionCore('client', new DtlsChannel(cctx.connect('server.minivpn.test'), rx.c), timing, new Counters(), now);
  let server: SessionCore | null = null;
  client.start(now);
  // The handshake, the hello and the config, back and forth until nothing moves.
  for (let round = 0; round < 30; round++) {
    let moved = false;
    for (const d of client.out.datagrams.splice(0)) {
      moved = true;
      if (server) { feed(server, rx.s, [d], now); continue; }
      const r = sctx.listen(d, '192.0.2.11:40000'); // (the cookie exchange is admission's: by hand here)
      if (r && 'reply' in r) feed(client, rx.c, r.reply, now);
      else if (r && 'conn' in r) server = new SessionCore('server', new DtlsChannel(r.conn, rx.s), timing, serverCounters, now);
    }
    if (server) {
      if (!server.up && server.out.events.some((e) => e.type === 'hello')) server.accept(config, now);
      server.out.events.length = 0;
      const back = server.out.datagrams.splice(0);
      if (back.length) { moved = true; feed(client, rx.c, back, now); }
    }
    if (!moved) break;
  }
  if (!server || !server.up || !client.up) throw new Error('the DTLS pair did not come up');
  client.out.clear();
  const s = server;
  const tx = new PacketBatch(1, 2048), into = new PacketBatch(1, 2048);
  return {
    client, server: s, serverCounters, serverRx: rx.s,
    seal(body, at) {
      tx.clear();
      tx.push(Buffer.concat([Buffer.from([FrameType.DATA]), body]));
      const out = client.encapsulate(tx, 1, into, at);
      if (!out || out.count !== 1) throw new Error('the client did not seal');
      return Buffer.from(out.packet(0));
    },
  };
}
