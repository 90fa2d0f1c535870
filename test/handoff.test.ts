// Yielding the CPU at a hand-off (src/os/latency.ts, native/poll.h): in a reader's callback
// that had at most a few packets, each send that passes packets on yields at once, inside the
// callback; a fuller batch, a callback that sent nothing, or the option turned off: no yield. On
// loopback, in this process: socket B echoes what socket A sends it. (A TUN write counts as
// a hand-off too: test/tun.test.ts.) A yield that kept us away too long (another program
// busy on this CPU) pauses yielding.
import t from 'tap';
import { UdpBatch, UdpSocket, Peer } from '../src/conn/udp';
import { PacketBatch } from '../src/batch';
import { HANDOFF_YIELD_MAX_BATCH, handoffStats, setHandoffYield as setYield } from '../src/os/latency';

const handoffYields = () => handoffStats().yields;
// No pause after a slow yield here (other tests may keep the CPUs busy), except in the test of it.
const setHandoffYield = (on: boolean) => setYield(on, { maxAwayMs: 1e9 });
import { parseClientArgs, parseServerArgs } from '../src/config';

interface Echo {
  a: UdpSocket; b: UdpSocket; batches: number[];
  /** B's echo: on or off, and how many times it sends each batch back */
  echo: { on: boolean; times: number };
  /** per B callback: the yields counted right after each of its sends, before it returned */
  inCallback: number[][];
  got: () => number; close: () => void;
}

function echoPair(): Echo {
  const b = UdpSocket.bind('127.0.0.1', 0);
  const a = UdpSocket.connect('127.0.0.1', b.address().port);
  const batches: number[] = [];
  const echo = { on: true, times: 1 };
  const inCallback: number[][] = [];
  const peers = new Map<number | string, Peer>();
  const out = new PacketBatch(64, 2048);
  b.onDatagrams(new UdpBatch(64, 2048), (rx) => {
    batches.push(rx.count);
    if (!echo.on) return false;
    const k = rx.peerKey(0);
    let p = peers.get(k);
    if (!p) peers.set(k, (p = rx.peer(0)));
    out.clear();
    for (let i = 0; i < rx.count; i++) out.push(rx.packet(i));
    const y0 = handoffYields(), seen: number[] = [];
    for (let k = 0; k < echo.times; k++) {
      b.sendBatch(out, p);
      seen.push(handoffYields() - y0);
    }
    inCallback.push(seen);
    return false;
  });
  let got = 0;
  a.onDatagrams(new UdpBatch(64, 2048), (rx) => { got += rx.count; return false; });
  return { a, b, batches, echo, inCallback, got: () => got, close: () => { a.close(); b.close(); } };
}

/** Sends n datagrams from A in one go (one loop turn), then waits until `until` holds. */
async function send(e: Echo, n: number, until: () => boolean): Promise<void> {
  for (let i = 0; i < n; i++) e.a.send(Buffer.from(`datagram ${i}`), null);
  const deadline = Date.now() + 20_000; // a limit only: on a loaded machine the loop may wait for a CPU
  while (!until()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for the echo');
    await new Promise((r) => setTimeout(r, 5));
  }
  await new Promise((r) => setTimeout(r, 20));  // and let anything else that would come, come
}

t.test('a callback that echoes one datagram yields once; the receiving callback, which sends nothing, does not', async (t) => {
  const e = echoPair();
  t.teardown(e.close);
  setHandoffYield(true);
  for (let round = 1; round <= 3; round++) {
    const y0 = handoffYields();
    await send(e, 1, () => e.got() === round);
    t.equal(handoffYields() - y0, 1, `round ${round}: one yield, after B's send`);
  }
});

t.test('the yield comes right at the send, before the callback returns; each send of a small batch yields', async (t) => {
  const e = echoPair();
  t.teardown(e.close);
  setHandoffYield(true);
  const y0 = handoffYields();
  await send(e, 1, () => e.got() === 1);
  t.same(e.inCallback, [[1]], 'one send: one yield, already counted when the send returned');
  t.equal(handoffYields() - y0, 1, 'and none more after the callback');
  e.echo.times = 2;
  const y1 = handoffYields();
  await send(e, 1, () => e.got() === 3);
  t.same(e.inCallback[1], [1, 2], 'two sends (say, to two clients): a yield after each');
  t.equal(handoffYields() - y1, 2);
});

t.test(`a batch of more than ${HANDOFF_YIELD_MAX_BATCH} packets (bulk traffic) keeps the CPU`, async (t) => {
  const e = echoPair();
  t.teardown(e.close);
  setHandoffYield(true);
  const n = 2 * HANDOFF_YIELD_MAX_BATCH;
  const y0 = handoffYields();
  await send(e, n, () => e.got() === n);
  t.same(e.batches, [n], `B read all ${n} datagrams in one batch`);
  t.equal(handoffYields() - y0, 0, 'no yield');
  // And the largest small batch still yields.
  e.batches.length = 0;
  const y1 = handoffYields();
  await send(e, HANDOFF_YIELD_MAX_BATCH, () => e.got() === n + HANDOFF_YIELD_MAX_BATCH);
  t.same(e.batches, [HANDOFF_YIELD_MAX_BATCH]);
  t.equal(handoffYields() - y1, 1, `a batch of ${HANDOFF_YIELD_MAX_BATCH} yields once`);
});

t.test('a callback that passes nothing on does not yield', async (t) => {
  const e = echoPair();
  t.teardown(e.close);
  setHandoffYield(true);
  e.echo.on = false;
  const y0 = handoffYields();
  await send(e, 1, () => e.batches.length === 1);
  t.equal(handoffYields() - y0, 0);
});

t.test('turned off (--no-handoff-yield): no yield', async (t) => {
  const e = echoPair();
  t.teardown(e.close);
  setHandoffYield(false);
  const y0 = handoffYields();
  await send(e, 1, () => e.got() === 1);
  t.equal(handoffYields() - y0, 0);
  setHandoffYield(true);
  await send(e, 1, () => e.got() === 2);
  t.equal(handoffYields() - y0, 1, 'and on again');
});

t.test('a yield that kept us away longer than maxAwayMs pauses yielding for pauseMs', async (t) => {
  const e = echoPair();
  t.teardown(e.close);
  t.teardown(() => setHandoffYield(true));
  setYield(true, { maxAwayMs: 0, pauseMs: 60_000 });  // every yield is "slow"
  const s0 = handoffStats();
  t.equal(s0.pausedMs, 0, 'not paused to begin with');
  await send(e, 1, () => e.got() === 1);
  const s1 = handoffStats();
  t.equal(s1.yields - s0.yields, 1, 'the first hand-off yields');
  t.equal(s1.slow - s0.slow, 1, 'and it counts as slow');
  t.ok(s1.pausedMs > 50_000 && s1.pausedMs <= 60_000, `then yielding pauses for pauseMs (${s1.pausedMs} ms left)`);
  await send(e, 1, () => e.got() === 2);
  t.equal(handoffStats().yields, s1.yields, 'no yield while paused');
  setYield(true, { maxAwayMs: 1e9, pauseMs: 60_000 });
  t.equal(handoffStats().pausedMs, 0, 'setting it again ends the pause');
  await send(e, 1, () => e.got() === 3);
  t.equal(handoffStats().yields, s1.yields + 1, 'and yielding resumes');
});

t.test('the option: on by default for server and client, off with --no-handoff-yield', async (t) => {
  t.equal(parseServerArgs([], {}).handoffYield, true);
  t.equal(parseServerArgs(['--no-handoff-yield'], {}).handoffYield, false);
  t.equal(parseClientArgs(['--server', '192.0.2.1:1194', '--name', 'alice'], {}).handoffYield, true);
  t.equal(parseClientArgs(['--server', '192.0.2.1:1194', '--name', 'alice', '--no-handoff-yield'], {}).handoffYield, false);
});
