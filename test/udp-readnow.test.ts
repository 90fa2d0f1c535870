// Reading the UDP socket right after a send (UdpSocket.readNow and endBatch, native udpRead):
// what is queued on the socket goes to the onDatagrams callback inside the call, without a
// trip through the event loop; never from inside the callback itself (its batch is in use);
// errors reach onError as they would from the loop. On loopback, in this process: a datagram
// sent to a local socket is queued on it by the time the send returns.
import t from 'tap';
import { UdpBatch, UdpSocket } from '../src/conn/udp';
import { PacketBatch } from '../src/batch';
import { HANDOFF_YIELD_MAX_BATCH, handoffStats, readUdpAfterSend, setHandoffYield } from '../src/os/latency';

interface Call { texts: string[]; inReadNow: boolean }

interface Pair {
  a: UdpSocket; b: UdpSocket;
  /** B's callbacks, in order */
  calls: Call[];
  /** what B's callback returns */
  answer: { value: boolean };
  /** run inside B's next callback */
  inCallback: { fn: (() => void) | null };
  /** B.readNow, marking the callbacks made inside it */
  readNow: () => boolean | void;
  endBatch: (packets: number) => boolean | void;
  close: () => void;
}

function pair(o: { gso?: boolean } = {}): Pair {
  const b = UdpSocket.bind('127.0.0.1', 0, { gso: o.gso });
  const a = UdpSocket.connect('127.0.0.1', b.address().port);
  const calls: Call[] = [];
  const answer = { value: false };
  const inCallback: Pair['inCallback'] = { fn: null };
  let inside = false;
  b.onDatagrams(new UdpBatch(64, 2048), (rx) => {
    const texts: string[] = [];
    for (let i = 0; i < rx.count; i++) texts.push(rx.packet(i).toString());
    calls.push({ texts, inReadNow: inside });
    const fn = inCallback.fn;
    inCallback.fn = null;
    fn?.();
    return answer.value;
  });
  a.onDatagrams(new UdpBatch(64, 2048), () => false);
  const marked = <T>(f: () => T): T => {
    inside = true;
    try { return f(); } finally { inside = false; }
  };
  return {
    a, b, calls, answer, inCallback,
    readNow: () => marked(() => b.readNow(0)),
    endBatch: (packets) => marked(() => readUdpAfterSend(b, packets, 0)),
    close: () => { a.close(); b.close(); },
  };
}

/** Lets the event loop run until `until` holds. */
async function loopUntil(until: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000; // a limit only: on a loaded machine the loop may wait for a CPU
  while (!until()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

t.test('readNow hands what is queued to the callback inside the call, and returns its answer', async (t) => {
  const p = pair();
  t.teardown(p.close);
  p.a.send(Buffer.from('one'), null);
  p.a.send(Buffer.from('two'), null);
  t.equal(p.readNow(), false, 'the callback said "only packets": false comes back');
  t.same(p.calls, [{ texts: ['one', 'two'], inReadNow: true }], 'both datagrams, in one batch, inside readNow');
  p.answer.value = true;
  p.a.send(Buffer.from('three'), null);
  t.equal(p.readNow(), true, 'the callback said "more than packets": true comes back');
  t.same(p.calls[1], { texts: ['three'], inReadNow: true });
});

t.test('readNow with nothing queued: no callback', async (t) => {
  const p = pair();
  t.teardown(p.close);
  t.equal(p.readNow(), false);
  t.equal(p.calls.length, 0, 'the callback did not run');
});

t.test('readNow from inside the callback does nothing; the datagram comes through the loop', async (t) => {
  const p = pair();
  t.teardown(p.close);
  let nested: boolean | void = true;
  let callsInside = -1;
  p.inCallback.fn = () => {
    p.a.send(Buffer.from('second'), null); // queued on B now
    nested = p.b.readNow(0);
    callsInside = p.calls.length;
  };
  p.a.send(Buffer.from('first'), null);
  p.readNow();
  t.equal(nested, false, 'the nested readNow returned false');
  t.equal(callsInside, 1, 'and did not call the callback again while its batch was in use');
  t.same(p.calls[0], { texts: ['first'], inReadNow: true });
  await loopUntil(() => p.calls.length === 2);
  t.same(p.calls[1], { texts: ['second'], inReadNow: false }, 'the second datagram came later, through the event loop');
});

t.test('endBatch reads only after a small batch', async (t) => {
  const p = pair();
  t.teardown(p.close);
  p.a.send(Buffer.from('bulk'), null);
  t.equal(p.endBatch(HANDOFF_YIELD_MAX_BATCH + 1), false, 'a fuller batch: no read');
  t.equal(p.endBatch(0), false, 'nothing sent: no read');
  t.equal(p.calls.length, 0, 'so no callback yet');
  await loopUntil(() => p.calls.length === 1);
  t.same(p.calls[0], { texts: ['bulk'], inReadNow: false }, 'the datagram came through the event loop');
  p.a.send(Buffer.from('interactive'), null);
  p.endBatch(1);
  t.same(p.calls[1], { texts: ['interactive'], inReadNow: true }, 'a batch of one: read inside endBatch');
  p.a.send(Buffer.from('at the limit'), null);
  p.endBatch(HANDOFF_YIELD_MAX_BATCH);
  t.same(p.calls[2], { texts: ['at the limit'], inReadNow: true }, `a batch of ${HANDOFF_YIELD_MAX_BATCH}: read too`);
});

t.test('an error found by readNow reaches onError (it is reported once, and must not be lost)', async (t) => {
  // A connected socket to a port nobody listens on: the ICMP port unreachable makes the
  // socket's next read fail with ECONNREFUSED.
  const closed = UdpSocket.bind('127.0.0.1', 0);
  const port = closed.address().port;
  closed.close();
  const c = UdpSocket.connect('127.0.0.1', port);
  t.teardown(() => c.close());
  const errors: number[] = [];
  let got = 0;
  c.onDatagrams(new UdpBatch(8, 2048), () => { got++; return false; }, (errno) => errors.push(errno));
  c.send(Buffer.from('anyone?'), null);
  // On loopback the ICMP error is queued within the send; allow a few tries all the same.
  let r: boolean | void = false;
  for (let i = 0; i < 100 && errors.length === 0; i++) r = c.readNow(0);
  t.same(errors, [111], 'ECONNREFUSED, inside readNow');
  t.equal(r, true, 'readNow says the callback did more than forward packets');
  t.equal(got, 0, 'no datagrams');
});

t.test('before onDatagrams, and on a UDP GRO socket, readNow leaves the datagrams to the loop', async (t) => {
  const b = UdpSocket.bind('127.0.0.1', 0);
  const a = UdpSocket.connect('127.0.0.1', b.address().port);
  t.teardown(() => { a.close(); b.close(); });
  a.send(Buffer.from('early'), null);
  t.equal(b.readNow(0), false, 'not started: nothing read');
  const texts: string[] = [];
  b.onDatagrams(new UdpBatch(8, 2048), (rx) => { texts.push(rx.packet(0).toString()); return false; });
  await loopUntil(() => texts.length === 1);
  t.same(texts, ['early'], 'the datagram was still there for the loop');

  const g = pair({ gso: true });
  t.teardown(g.close);
  g.a.send(Buffer.from('gro'), null);
  t.equal(g.readNow(), false, 'GRO socket: no read now (one read there may fill several batches)');
  t.equal(g.calls.length, 0, 'and no callback');
  await loopUntil(() => g.calls.length === 1);
  t.same(g.calls[0], { texts: ['gro'], inReadNow: false }, 'it came through the loop');
});

t.test('datagrams read inside a callback count towards its batch: past the limit, sends do not yield', async (t) => {
  setHandoffYield(true, { maxAwayMs: 1e9 }); // (no pause after a slow yield: other tests may keep the CPUs busy)
  t.teardown(() => setHandoffYield(false));
  const p = pair(); // B: read with readNow from inside C's callback
  t.teardown(p.close);
  const c = UdpSocket.bind('127.0.0.1', 0); // C: its callback (a batch of one) is the running one
  const toC = UdpSocket.connect('127.0.0.1', c.address().port);
  const sink = UdpSocket.bind('127.0.0.1', 0); // where C's callback sends: a hand-off
  const toSink = UdpSocket.connect('127.0.0.1', sink.address().port);
  t.teardown(() => { c.close(); toC.close(); sink.close(); toSink.close(); });
  const out = new PacketBatch(1, 64);
  out.push(Buffer.from('on'));
  let extra = 0;
  const seen: { read: number; yields: number }[] = [];
  c.onDatagrams(new UdpBatch(8, 2048), () => {
    for (let i = 0; i < extra; i++) p.a.send(Buffer.from(`more ${i}`), null); // queued on B
    const before = p.calls.length;
    p.b.readNow(0);
    const read = p.calls.length > before ? p.calls[p.calls.length - 1].texts.length : 0;
    const y0 = handoffStats().yields;
    toSink.sendBatch(out, null);
    seen.push({ read, yields: handoffStats().yields - y0 });
    return false;
  });
  extra = HANDOFF_YIELD_MAX_BATCH - 1;
  toC.send(Buffer.from('go'), null);
  await loopUntil(() => seen.length === 1);
  extra = HANDOFF_YIELD_MAX_BATCH;
  toC.send(Buffer.from('go'), null);
  await loopUntil(() => seen.length === 2);
  t.same(seen[0], { read: HANDOFF_YIELD_MAX_BATCH - 1, yields: 1 }, `1 + ${HANDOFF_YIELD_MAX_BATCH - 1} packets: still small, the send yields`);
  t.same(seen[1], { read: HANDOFF_YIELD_MAX_BATCH, yields: 0 }, `1 + ${HANDOFF_YIELD_MAX_BATCH} packets: past the limit, no yield`);
});
