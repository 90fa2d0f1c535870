// The session core (src/session/core.ts) with no I/O: two cores talk through arrays of
// datagrams, and the clock is a number the test moves. Keepalives, dead peers, refusals,
// bye, version mismatches, the DTLS handshake's end, as client and server see them, and the
// roaming move rule: its trial decryption, and admission's move of the session.
import t from 'tap';
import { PacketBatch } from '../src/batch';
import { addr16, Peer } from '../src/conn/udp';
import { Counters } from '../src/device/counters';
import { AddressPool } from '../src/device/pool';
import { Admission, AdmissionHost } from '../src/server/admission';
import { Session, SessionTable } from '../src/server/sessions';
import { DtlsContext } from '../src/dtls/dtls';
import { DtlsChannel, PlaintextChannel } from '../src/session/channel';
import { dataFrame, SessionCore, SessionEvent, Timing } from '../src/session/core';
import { ConfigMsg, encodeControl } from '../src/wire/control';
import { encodeFrame, FrameType, recordSeq } from '../src/wire/frame';
import { testPki } from './helpers/certs';

const T0 = 1_000_000;
const SERVER_TIMING: Timing = { keepaliveMs: 1000, deadMs: 5000, upWithinMs: 30_000 };
const CLIENT_TIMING: Timing = { keepaliveMs: 0, deadMs: 10_000, upWithinMs: 10_000 };

function config(over: Partial<ConfigMsg> = {}): ConfigMsg {
  return {
    type: 'config', v: 1, address: '10.8.0.2', prefix: 24, gateway: '10.8.0.1', mtu: 1400, routes: [],
    redirectGateway: false, dns: [], keepaliveSec: 2, timeoutSec: 7, ...over,
  };
}

/** Datagrams as a receive batch (what a UDP read gives the core). */
function batchOf(datagrams: Buffer[]): PacketBatch {
  const b = new PacketBatch(Math.max(1, datagrams.length), 2048);
  for (const d of datagrams) b.push(d);
  return b;
}

/** Moves what `from` queued into `to`; returns the events `to` raised and the DATA packets it gave out. */
function deliver(from: SessionCore, to: SessionCore, now: number): { events: SessionEvent[]; packets: Buffer[]; work: boolean[] } {
  const b = batchOf(from.out.datagrams);
  from.out.clear();
  return feed(to, b, now);
}

function feed(to: SessionCore, b: PacketBatch, now: number): { events: SessionEvent[]; packets: Buffer[]; work: boolean[] } {
  const packets: Buffer[] = [];
  const work: boolean[] = [];
  for (let i = 0; i < b.count; i++) {
    work.push(to.decapsulate(b, i, now));
    const pk = to.packets;
    for (let k = 0; k < pk.count; k++) packets.push(Buffer.from(pk.buf.subarray(pk.offs[k], pk.offs[k] + pk.lens[k])));
  }
  const events = to.out.events.slice();
  to.out.events.length = 0;
  return { events, packets, work };
}

/** A plaintext client and server core, the client's hello delivered. */
function plainPair(now = T0) {
  const cc = new Counters(), sc = new Counters();
  const client = new SessionCore('client', new PlaintextChannel(), CLIENT_TIMING, cc, now, 'alice');
  const server = new SessionCore('server', new PlaintextChannel(), SERVER_TIMING, sc, now);
  client.start(now);
  return { client, server, cc, sc };
}

/** A pair that is up: hello, config. */
function upPair(now = T0) {
  const p = plainPair(now);
  deliver(p.client, p.server, now);
  p.server.accept(config(), now);
  deliver(p.server, p.client, now);
  return p;
}

const types = (datagrams: Buffer[]) => datagrams.map((d) => d[0]);

t.test('the control exchange: hello, then config; the client takes the config\'s timers', async (t) => {
  const { client, server } = plainPair();
  t.same(types(client.out.datagrams), [FrameType.CONTROL], 'a plaintext client says hello at once');
  const r = deliver(client, server, T0);
  t.same(r.events, [{ type: 'hello', msg: { type: 'hello', v: 1, cn: 'alice' } }], 'the server hears hello, with the claimed name');
  t.equal(r.work[0], true, 'control work is reported');
  t.equal(server.out.datagrams.length, 0, 'no config before the server accepted');
  t.equal(server.up, false);
  server.accept(config(), T0 + 5);
  t.equal(server.up, true, 'accepted: up');
  t.same(types(server.out.datagrams), [FrameType.CONTROL], 'hello already seen: config sent at once');
  const c = deliver(server, client, T0 + 6);
  t.equal(c.events.length, 1);
  t.equal(c.events[0].type, 'config', 'the client gets the config as an event');
  t.equal(client.up, true);
  t.same(client.timing, { keepaliveMs: 2000, deadMs: 7000, upWithinMs: 10_000 }, 'keepalive and dead-peer time come from the config');
  // A second hello (the client retried): the config again.
  client.out.datagrams.push(encodeFrame(FrameType.CONTROL, encodeControl({ type: 'hello', v: 1 })));
  deliver(client, server, T0 + 7);
  t.same(types(server.out.datagrams), [FrameType.CONTROL], 'each hello is answered with the config');
});

t.test('DATA: counted as unauthorized before the session is up, handed out after, header stripped', async (t) => {
  const { client, server, sc } = plainPair();
  deliver(client, server, T0);
  const data = Buffer.concat([Buffer.from([FrameType.DATA]), Buffer.from('an IP packet')]);
  let r = feed(server, batchOf([data]), T0 + 1);
  t.same(r.packets, [], 'nothing handed out before accept');
  t.equal(sc.get('unauthorized'), 1, 'counted');
  server.accept(config(), T0 + 2);
  r = feed(server, batchOf([data, data]), T0 + 3);
  t.same(r.packets.map(String), ['an IP packet', 'an IP packet'], 'after accept: the packets, without the frame byte');
  t.same(r.work, [false, false], 'pure data is no control work');
  t.equal(server.rxPackets, 2);
  t.equal(server.lastSeen, T0 + 3, 'traffic counts as a sign of life');
});

t.test('encapsulate: nothing before up; frames made in the headroom, counted', async (t) => {
  const { client, server } = plainPair();
  const tun = Buffer.alloc(64);
  tun.write('ping', 1);
  const tx = PacketBatch.over(tun, 4);
  dataFrame(tx, tun, 1, 4);
  t.equal(client.encapsulate(tx, 1, new PacketBatch(4, 2048), T0), null, 'the client sends no data before its config');
  deliver(client, server, T0);
  server.accept(config(), T0);
  deliver(server, client, T0);
  const out = client.encapsulate(tx, 1, new PacketBatch(4, 2048), T0 + 50);
  t.ok(out, 'sealed once up');
  t.same([...out!.packet(0)], [FrameType.DATA, ...Buffer.from('ping')], 'plaintext: the frame is the datagram');
  t.equal(client.txPackets, 1);
  t.equal(client.lastSent, T0 + 50, 'a send restarts the keepalive timer');
});

t.test('keepalive: sent when idle for the interval, answered, and the answer is a sign of life', async (t) => {
  const { client, server } = upPair();
  server.out.clear();
  server.tick(T0 + 999);
  t.equal(server.out.datagrams.length, 0, 'not before the interval');
  server.tick(T0 + 1000);
  t.same(types(server.out.datagrams), [FrameType.KEEPALIVE], 'a keepalive after 1 s idle');
  server.tick(T0 + 1500);
  t.equal(server.out.datagrams.length, 1, 'one per interval: sending restarted the timer');
  const r = deliver(server, client, T0 + 1600);
  t.equal(r.work[0], true, 'a keepalive is control work');
  t.same(types(client.out.datagrams), [FrameType.KEEPALIVE_REPLY], 'the client answers');
  deliver(client, server, T0 + 1700);
  t.equal(server.lastSeen, T0 + 1700, 'the answer counts as a sign of life');
  t.equal(server.out.datagrams.length, 0, 'a reply is not answered');
});

t.test('dead peer: nothing heard for the timeout ends the session, on both sides, in every state', async (t) => {
  const { client, server } = upPair();
  server.tick(T0 + 5000);
  t.equal(server.out.close, null, 'not at the timeout itself');
  server.tick(T0 + 5001);
  t.same(server.out.close, { code: 'dead', reason: 'no traffic for 5s' }, 'the server gives up on a silent client');
  client.tick(T0 + 7001);
  t.equal(client.out.close?.code, 'dead', 'the client with the timeout the server pushed (7 s)');
  // Before the session is up there is no dead-peer timer but a deadline to get up.
  const fresh = plainPair();
  fresh.client.tick(T0 + 10_000);
  t.equal(fresh.client.out.close, null);
  fresh.client.tick(T0 + 10_001);
  t.same(fresh.client.out.close, { code: 'no-answer', reason: 'not up within 10s' }, 'a client without a config gives up after 10 s');
  fresh.server.tick(T0 + 30_001);
  t.equal(fresh.server.out.close?.code, 'no-answer', 'a server session never accepted ends after 30 s');
  // An ended session does nothing more.
  server.out.clear();
  server.tick(T0 + 60_000);
  t.equal(server.out.datagrams.length, 0, 'no keepalives after the end');
  t.same(feed(server, batchOf([Buffer.from([FrameType.DATA, 1])]), T0).packets, [], 'no packets after the end');
});

t.test('refuse: the client is told why and stops; the server ends the session', async (t) => {
  const { client, server } = plainPair();
  deliver(client, server, T0);
  server.refuse('address pool 10.8.0.0/30 exhausted', T0 + 1);
  t.same(server.out.close, { code: 'refused', reason: 'address pool 10.8.0.0/30 exhausted' });
  t.equal(server.up, false);
  deliver(server, client, T0 + 2);
  t.same(client.out.close, { code: 'refused', reason: 'address pool 10.8.0.0/30 exhausted' }, 'the client learns the reason');
});

t.test('bye and CLOSE: the peer\'s reason ends the session', async (t) => {
  let p = upPair();
  p.client.close('client stopping', true, T0 + 1);
  t.same(p.client.out.close, { code: 'local', reason: 'client stopping' });
  t.same(types(p.client.out.datagrams), [FrameType.CONTROL], 'bye sent');
  deliver(p.client, p.server, T0 + 2);
  t.same(p.server.out.close, { code: 'bye', reason: 'client stopping' }, 'the server hears bye with the reason');

  p = upPair();
  p.server.close('no longer authorized', false, T0 + 1);
  t.equal(p.server.out.datagrams.length, 0, 'without notify nothing is sent');

  p = upPair();
  const r = feed(p.client, batchOf([encodeFrame(FrameType.CLOSE, Buffer.from('server requires DTLS'))]), T0 + 3);
  t.equal(r.work[0], true);
  t.same(p.client.out.close, { code: 'peer-closed', reason: 'server requires DTLS' }, 'a CLOSE frame gives its reason');
  p = upPair();
  feed(p.client, batchOf([encodeFrame(FrameType.CLOSE)]), T0 + 3);
  t.same(p.client.out.close, { code: 'peer-closed', reason: 'no reason given' }, 'and without one says so');
});

t.test('protocol version mismatch: a frame of another version is garbage, a control message of another version is invalid', async (t) => {
  const { client, server, sc } = upPair();
  const v2frame = Buffer.from([0x51, 1, 2, 3]); // version nibble 5
  const r = feed(server, batchOf([v2frame]), T0 + 1);
  t.same(r.packets, [], 'no packet from it');
  t.equal(sc.get('garbage'), 1, 'counted as garbage');
  t.equal(server.out.close, null, 'the session goes on');
  const v2hello = encodeFrame(FrameType.CONTROL, Buffer.from(JSON.stringify({ type: 'hello', v: 2 })));
  const h = feed(server, batchOf([v2hello]), T0 + 2);
  t.equal(h.events.length, 1);
  t.match(h.events[0], { type: 'invalid', error: /^v: unsupported control version 2/ }, 'the error names the field');
  t.equal(server.out.close, null, 'an invalid message ends nothing');
  t.equal(client.out.close, null);
});

t.test('DTLS: the handshake\'s end is an event; the client says hello by itself; a refused certificate fails it', async (t) => {
  const p = await testPki();
  const ctx = (role: 'server' | 'client', id: { certPem: string; keyPem: string }, ca = p.ca) =>
    new DtlsContext({ role, ca: ca.certPem, cert: id.certPem, key: id.keyPem, retransmitMs: 50 });
  const run = (clientId: { certPem: string; keyPem: string }) => {
    const sctx = ctx('server', p.server), cctx = ctx('client', clientId);
    const rx = { c: new PacketBatch(128, 2048), s: new PacketBatch(128, 2048) };
    const client = new SessionCore('client', new DtlsChannel(cctx.connect('server.minivpn.test'), rx.c), CLIENT_TIMING, new Counters(), T0);
    client.start(T0);
    t.ok(client.out.datagrams.length > 0, 'the client\'s first flight');
    let server: SessionCore | null = null;
    const events: SessionEvent[] = [];
    const into = (core: SessionCore, rxb: PacketBatch, datagrams: Buffer[]) => {
      const r = feed(core, batchOf(datagrams), T0);
      rxb.count = 0; // (the shell empties the receive batch once its packets are written)
      return r;
    };
    for (let round = 0; round < 20; round++) {
      let moved = false;
      for (const d of client.out.datagrams.splice(0)) {
        moved = true;
        if (server !== null) { events.push(...into(server, rx.s, [d]).events); continue; }
        // The cookie exchange is admission's (stateless): by hand here.
        const r = sctx.listen(d, '192.0.2.11:40000');
        if (r && 'reply' in r) into(client, rx.c, r.reply);
        else if (r && 'conn' in r) server = new SessionCore('server', new DtlsChannel(r.conn, rx.s), SERVER_TIMING, new Counters(), T0);
      }
      if (server !== null) {
        const back = server.out.datagrams.splice(0);
        if (back.length) { moved = true; into(client, rx.c, back); }
      }
      if (!moved) break;
    }
    return { client, server, events };
  };
  const ok = run(p.client);
  t.equal(ok.server?.channel.state, 'open');
  t.same(ok.events.map((e) => e.type), ['established', 'hello'], 'the server: established (certificate known), then the client\'s hello');
  t.equal(ok.client.out.close, null);

  const bad = run(p.rogueClient);
  const ended = bad.server?.out.close ?? bad.client.out.close;
  t.equal(ended?.code, 'handshake-failed', 'a certificate from another CA fails the handshake');
  t.match(ended?.reason, /certificate/, 'with the reason');
});

/**
 * A DTLS client and server core, handshaken in memory and up (hello, config). The cookie
 * exchange is admission's (stateless), done by hand with the server context's listen().
 */
function dtlsUpPair(sctx: DtlsContext, cctx: DtlsContext, peer: string) {
  const rx = { c: new PacketBatch(128, 2048), s: new PacketBatch(128, 2048) };
  const client = new SessionCore('client', new DtlsChannel(cctx.connect('server.minivpn.test'), rx.c), CLIENT_TIMING, new Counters(), T0);
  let server: SessionCore | null = null;
  // (The shell empties a receive batch once its packets are written.)
  const into = (core: SessionCore, rxb: PacketBatch, datagrams: Buffer[]) => { feed(core, batchOf(datagrams), T0); rxb.count = 0; };
  client.start(T0);
  for (let round = 0; round < 20; round++) {
    let moved = false;
    for (const d of client.out.datagrams.splice(0)) {
      moved = true;
      if (server !== null) { into(server, rx.s, [d]); continue; }
      const r = sctx.listen(d, peer);
      if (r && 'reply' in r) into(client, rx.c, r.reply);
      else if (r && 'conn' in r) server = new SessionCore('server', new DtlsChannel(r.conn, rx.s), SERVER_TIMING, new Counters(), T0);
    }
    const back = server?.out.datagrams.splice(0) ?? [];
    if (back.length) { moved = true; into(client, rx.c, back); }
    if (!moved) break;
  }
  if (server === null || server.channel.state !== 'open') throw new Error('the in-memory DTLS handshake did not finish');
  server.accept(config(), T0);
  into(client, rx.c, server.out.datagrams.splice(0));
  /** The next record the client seals (a keepalive), as a datagram. */
  const seal = (): Buffer => { client.keepalive(T0); const [d] = client.out.datagrams.splice(0); return d; };
  /** tryDecapsulate on the server, then the receive batch emptied as the shell would. */
  const trial = (d: Buffer) => { const r = server!.tryDecapsulate(batchOf([d]), 0, T0); rx.s.count = 0; return r; };
  const open = (d: Buffer) => { const r = feed(server!, batchOf([d]), T0); rx.s.count = 0; return r; };
  return { client, server, seal, trial, open, rx };
}

t.test('the move rule\'s trial: another session\'s record and a replay fail without touching the replay window', async (t) => {
  const p = await testPki();
  const ctx = (role: 'server' | 'client', id: { certPem: string; keyPem: string }) =>
    new DtlsContext({ role, ca: p.ca.certPem, cert: id.certPem, key: id.keyPem, retransmitMs: 50 });
  const sctx = ctx('server', p.server);
  const a = dtlsUpPair(sctx, ctx('client', p.client), '192.0.2.11:40000');
  const b = dtlsUpPair(sctx, ctx('client', p.client), '192.0.2.12:40000');
  t.ok(a.server.up && a.client.up && b.server.up && b.client.up, 'both sessions are up');
  const seq = (d: Buffer) => recordSeq(d, 0);

  // B's record numbers run far ahead of A's: more than a replay window (64) ahead.
  let fromB = b.seal();
  for (let k = 0; k < 100; k++) fromB = b.seal();
  const a1 = a.seal();
  a.open(a1);
  t.equal(a.server.rxSeq, seq(a1), 'A authenticated its own record');
  const a2 = a.seal(), a3 = a.seal();
  t.ok(seq(fromB) > seq(a3) + 64, `B's record (seq ${seq(fromB)}) is more than a window ahead of A's next (seq ${seq(a2)}, ${seq(a3)})`);

  const droppedBefore = a.server.droppedRecords;
  t.equal(a.trial(fromB), null, "B's record tried on A's session: null");
  t.equal(a.trial(fromB), null, 'and again: still null');
  t.equal(a.server.droppedRecords, droppedBefore, 'a failed trial is not a drop of A\'s');
  t.equal(a.server.rxSeq, seq(a1), "A's highest record number did not move");
  t.equal(a.server.packets.count, 0, 'no packets handed out');

  t.not(a.trial(a2), null, "A's own next record, numbered far below the failed trial's, still opens (as a trial)");
  a.open(a3);
  t.equal(a.server.droppedRecords, droppedBefore, 'and the one after it opens as usual: nothing dropped');
  t.equal(a.server.rxSeq, seq(a3), 'A is at its own latest record');

  t.equal(a.trial(a1), null, "a replay of A's own record, tried on A: null");
  t.equal(a.trial(a3), null, 'so is a replay of the latest one');
  t.not(a.trial(a.seal()), null, 'a fresh record of A opens');
  t.not(b.trial(fromB), null, "and B's record is still fresh for B: A's trials did not consume it");
});

/** A peer at host:port, as the server's UDP batch would make it. */
function peerAt(host: string, port: number): Peer {
  return { addr: addr16(host), port, key: `${host}:${port}`, host, text: `${host}:${port}`, handle: null };
}

t.test('a record that moves a session: the session is at the new endpoint before its answer is sent', async (t) => {
  const p = await testPki();
  const ctx = (role: 'server' | 'client', id: { certPem: string; keyPem: string }) =>
    new DtlsContext({ role, ca: p.ca.certPem, cert: id.certPem, key: id.keyPem, retransmitMs: 50 });
  const a = dtlsUpPair(ctx('server', p.server), ctx('client', p.client), '192.0.2.11:40000');
  const table = new SessionTable(new AddressPool('10.8.0.0/24'));
  const old = peerAt('192.0.2.11', 40000);
  const s = new Session(a.server, old, new PacketBatch(1, 2048));
  s.cn = 'alice';
  table.add(s);
  table.connect(s, { address: 0x0a080002, addressStr: '10.8.0.2', address6: 0, address6Str: '' }, T0);
  // (Admission's host is the server's event loop: tryMove does not use it.)
  const adm = new Admission({} as AdmissionHost, table, new Counters(), null, null, 1000, 4);
  /** Datagram d from `from`, given to the move rule; the receive batch emptied as the shell would. */
  const fromAddress = (d: Buffer, from: Peer) => {
    const m = adm.tryMove(Object.assign(batchOf([d]), { peer: () => from }), 0, T0 + 3000);
    a.rx.s.count = 0;
    return m;
  };

  // The client's first record from a new socket is a keepalive: its answer tells the client
  // that the path works (its dead-peer clock), and the client may move again at any moment,
  // so the answer must go where the keepalive came from, not to the address it left.
  const to = peerAt('192.0.2.21', 40001);
  const m = fromAddress(a.seal(), to);
  t.equal(m?.session, s, "the keepalive opened as alice's");
  t.equal(m?.from, '192.0.2.11:40000', 'moved from her old endpoint');
  t.equal(s.peer, to, 'the session is at the new endpoint already');
  t.equal(s.key, '192.0.2.21:40001', 'its key (logs, status) too');
  t.equal(table.fromRemote(to.key), s, 'datagrams from the new endpoint find the session');
  t.equal(table.fromRemote(old.key), undefined, 'the old endpoint is forgotten');
  t.equal(adm.moves, 1, 'one move counted');
  t.equal(s.core.out.datagrams.length, 1, 'the answer (KEEPALIVE_REPLY) is not sent yet: the shell sends it to s.peer');
  const heard = deliver(s.core, a.client, T0 + 3000);
  t.equal(heard.work.length, 1, 'one datagram for the client');
  t.equal(a.client.lastSeen, T0 + 3000, 'the client, once the answer reaches it, has heard the server');

  // A record that ends the session (here the client's bye) opens, but moves nothing.
  a.client.close('moving on', true, T0 + 4000);
  const bye = a.client.out.datagrams[0];
  const third = peerAt('192.0.2.31', 40002);
  const end = fromAddress(bye, third);
  t.equal(end?.session, s, "the bye opened as alice's");
  t.equal(end?.from, null, 'no move');
  t.ok(s.core.closed, 'the session ended');
  t.equal(s.peer, to, 'it stays at its endpoint');
  t.equal(table.fromRemote(third.key), undefined, 'the third address owns nothing');
  t.equal(adm.moves, 1, 'still one move');
});
