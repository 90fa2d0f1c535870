// When a roaming client may open a new socket (src/client/pathchange.ts): at once when its
// socket's own address is gone, at most once a second on a suspicion; a failed try is logged
// once, not at each retry.
import t from 'tap';
import { GONE_GAP_MS, PathChanges, SUSPECT_GAP_MS } from '../src/client/pathchange';

const T0 = 1_000_000;

t.test("the socket's address is gone: a new socket at once, even right after the last one", async (t) => {
  const p = new PathChanges();
  t.ok(p.may(T0, true), 'the first time');
  p.tried(T0, true);
  t.notOk(p.may(T0 + GONE_GAP_MS - 1, true), `not within ${GONE_GAP_MS} ms (an address that flaps)`);
  t.ok(p.may(T0 + GONE_GAP_MS, true), `${GONE_GAP_MS} ms later: a move does not wait for the second to end`);
  t.ok(GONE_GAP_MS * 5 <= SUSPECT_GAP_MS, 'a small fraction of the pace on a suspicion');
});

t.test('a suspicion (a probe unanswered): at most once a second', async (t) => {
  const p = new PathChanges();
  t.ok(p.may(T0, false), 'the first time');
  p.tried(T0, true);
  t.notOk(p.may(T0 + SUSPECT_GAP_MS - 1, false), 'not again within the second');
  t.ok(p.may(T0 + SUSPECT_GAP_MS, false), 'a second later');
  p.tried(T0 + SUSPECT_GAP_MS, true);
  t.ok(p.may(T0 + SUSPECT_GAP_MS + GONE_GAP_MS, true), 'but an address gone meanwhile does not wait for it');
});

t.test('tries that fail (no address or route yet): retried at the same pace, one log line per outage', async (t) => {
  const p = new PathChanges();
  t.equal(p.tried(T0, false), true, 'the first failure is news');
  t.notOk(p.may(T0 + GONE_GAP_MS - 1, true), 'no retry within the gap');
  t.ok(p.may(T0 + GONE_GAP_MS, true), 'a retry after it');
  t.equal(p.tried(T0 + GONE_GAP_MS, false), false, 'a second failure in a row is not');
  t.equal(p.tried(T0 + 2 * GONE_GAP_MS, false), false, 'nor a third');
  t.equal(p.tried(T0 + 3 * GONE_GAP_MS, true), true, 'a socket opened is');
  t.equal(p.tried(T0 + 4 * GONE_GAP_MS, false), true, 'and a failure after it is news again');
});
