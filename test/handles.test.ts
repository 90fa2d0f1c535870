// The data path's native calls take handles (native/handle.h): a batch's arrays converted
// once, and the TUN, UDP socket and DTLS connection named by one value. These tests hold the
// record calls on batches (count, one datagram or many, append), wrong arguments refused with
// a clear error (never a crash), and the memory behind a handle kept alive by the handle.
import t from 'tap';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';
import { DtlsConnection, DtlsContext } from '../src/dtls/dtls';
import { PacketBatch } from '../src/batch';
import { addon, batchHandle, BatchHandle, DtlsHandle, PeerHandle, TunHandle, UdpHandle } from '../src/native';
import { testPki } from './helpers/certs';
import { handshake } from './helpers/dtls-link';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

async function pair(): Promise<{ client: DtlsConnection; server: DtlsConnection }> {
  const p = await testPki();
  const ctx = (role: 'server' | 'client', id: typeof p.server) =>
    new DtlsContext({ role, ca: p.ca.certPem, cert: id.certPem, key: id.keyPem, retransmitMs: 50 });
  const r = await handshake(ctx('server', p.server), ctx('client', p.client));
  if (r.client.state !== 'open' || r.server?.state !== 'open') throw new Error('handshake failed');
  return { client: r.client, server: r.server };
}

const words = ['first packet', 'second, a little longer', 'third'];

t.test('seal and open on batches: the first `count` packets, one datagram or many, appended or not', async (t) => {
  const { client, server } = await pair();
  const plain = new PacketBatch(4, 2048);
  for (const w of words) plain.push(Buffer.from(w));
  const sealed = new PacketBatch(4, 2048);
  t.equal(client.seal(plain, 2, sealed), 2, 'only the first `count` packets are sealed');
  t.equal(client.seal(plain, 3, sealed), 3);
  t.equal(sealed.count, 3);
  const out = new PacketBatch(8, 2048);
  t.equal(server.openOne(Buffer.from(sealed.packet(0)), out), 1, 'a datagram from anywhere (copied in)');
  t.equal(out.packet(0).toString(), words[0]);
  t.equal(server.openSlot(sealed, 1, out), 1, 'datagram 1 of the batch');
  t.equal(out.packet(0).toString(), words[1]);
  t.equal(server.openSlot(sealed, 2, out, true), 1, 'appended after what out held');
  t.same([0, 1].map((i) => out.packet(i).toString()), [words[1], words[2]]);
  t.equal(out.count, 2);

  // A whole batch in one call.
  const again = new PacketBatch(4, 2048);
  t.equal(client.seal(plain, 3, again), 3);
  t.equal(server.open(again, out), 3, 'three datagrams, three records');
  t.same([0, 1, 2].map((i) => out.packet(i).toString()), words);

  // Replays and garbage are dropped and counted.
  const d0 = server.dropped;
  t.equal(server.openSlot(sealed, 1, out), 0, 'a replayed record is not delivered');
  const junk = new PacketBatch(1, 64);
  junk.push(Buffer.from('garbage that is not DTLS at all'));
  t.equal(server.openSlot(junk, 0, out), 0);
  t.equal(server.dropped, d0 + 2, 'both counted as dropped');
  t.equal(server.state, 'open');
});

t.test('a handle of the wrong kind, or no handle, is a TypeError that names the call', async (t) => {
  const { client, server } = await pair();
  const b = new PacketBatch(2, 2048);
  b.push(Buffer.from('x'));
  const bh = batchHandle(b);
  const ch = (client as unknown as { h: DtlsHandle }).h;
  t.throws(() => addon.dtlsSeal(bh as unknown as DtlsHandle, bh, 1, bh), /dtlsSeal: expected a DTLS connection handle/);
  t.throws(() => addon.dtlsSeal(ch, ch as unknown as BatchHandle, 1, bh), /dtlsSeal: expected a batch handle/);
  t.throws(() => addon.dtlsOpen(ch, bh, 0, 1, {} as BatchHandle, 0), /dtlsOpen: expected a batch handle/);
  t.throws(() => addon.tunWrite(ch as unknown as TunHandle, bh, 1), /tunWrite: expected a TUN handle/);
  t.throws(() => addon.udpSend(ch as unknown as UdpHandle, bh, 1, null), /udpSend: expected a UDP socket handle/);
  t.throws(() => addon.udpSend(ch as unknown as UdpHandle, bh, 1, bh as unknown as PeerHandle), /expected a UDP socket handle/);
  t.throws(() => addon.batchRef(Buffer.alloc(4), new Uint8Array(2) as unknown as Uint32Array, new Uint32Array(2)), /batchRef: offs: expected a Uint32Array, got a Buffer \(Uint8Array\)/);
  t.throws(() => addon.udpPeer(Buffer.alloc(4), 1), /udpPeer: addr16: expected 16 bytes, got 4/);
  t.throws(() => addon.dtlsOpen((server as unknown as { h: DtlsHandle }).h, bh, 2, 1, bh, 0), /dtlsOpen: count: expected an integer from 0 to 0, got 1/);
  t.equal(client.state, 'open', 'nothing happened to the connection');
  t.equal(client.seal(b, 1, new PacketBatch(1, 2048)), 1, 'and it still seals');
});

t.test('a batch handle keeps its arrays alive, and a DTLS handle its connection', async (t) => {
  const { client, server } = await pair();
  const make = () => {
    const b = new PacketBatch(1, 2048);
    b.push(Buffer.from('kept alive by the handle'));
    return batchHandle(b); // the batch itself becomes garbage
  };
  const inH = make();
  const outB = new PacketBatch(1, 2048);
  const connH = (client as unknown as { h: DtlsHandle }).h;
  for (let i = 0; i < 3; i++) gc();
  // Allocate over the freed space, so a dangling pointer would read something else.
  const filler = Array.from({ length: 64 }, () => Buffer.alloc(4096, 0xee));
  t.equal(addon.dtlsSeal(connH, inH, 1, batchHandle(outB)), 1);
  outB.count = 1;
  const out = new PacketBatch(1, 2048);
  t.equal(server.openSlot(outB, 0, out), 1);
  t.equal(out.packet(0).toString(), 'kept alive by the handle', 'the bytes behind the handle are still the batch\'s');
  // (Also keeps the filler alive until here.) Nothing was written through a stale pointer into it.
  t.ok(filler.every((f) => f.every((x) => x === 0xee)), 'the memory reused after the GC is untouched');
});

t.test('destroy(): the data-path calls stop, without a crash', async (t) => {
  const { client, server } = await pair();
  const b = new PacketBatch(1, 2048);
  b.push(Buffer.from('late'));
  const sealed = new PacketBatch(1, 2048);
  t.equal(client.seal(b, 1, sealed), 1);
  server.destroy();
  t.equal(server.openSlot(sealed, 0, new PacketBatch(1, 2048)), 0, 'nothing opened after destroy');
  client.destroy();
  t.throws(() => client.seal(b, 1, sealed), /not open/);
});

// The readers call JavaScript directly, not with MakeCallback (native/poll.h, CallJs), and
// run Node's queued jobs right after a batch only when its callback did not return false.
t.test('batch callbacks: queued jobs run right after a batch unless it returned false; exceptions are uncaught', async (t) => {
  const run = (mode: string) => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'fixtures', 'batch-callback.js'), mode], { encoding: 'utf8', timeout: 10000 });
    t.equal(r.status, 0, `child (${mode}) exits 0${r.stderr ? `: ${r.stderr.slice(-300)}` : ''}`);
    return JSON.parse(r.stdout.trim() || '{}');
  };
  t.same(run('true').order, ['A', 'job', 'B'], 'true: the promise job ran right after its batch, before the next callback');
  t.same(run('false').order, ['A', 'B', 'job'], 'false: it ran later in the same loop turn (after the poll phase)');
  t.same(run('throw'), { uncaught: 'thrown in a batch callback' }, 'an exception reaches uncaughtException, as from any I/O callback');
});
