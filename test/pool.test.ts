// Address pool, plus the two small device helpers that go with it: the Router table
// and the drop Counters.
import t from 'tap';
import * as fs from 'fs';
import * as path from 'path';
import { AddressPool, PoolExhaustedError } from '../src/device/pool';
import { Router } from '../src/device/router';
import { Counters, DROP_REASONS } from '../src/device/counters';
import { ipv4ToInt } from '../src/wire/ip';
import { setLevel } from '../src/log';

setLevel('warn');

/** Runs fn while collecting what is written to stderr (where warnings go). */
function captureStderr(fn: () => void): string {
  const chunks: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  (process.stderr as any).write = (s: string) => {
    chunks.push(String(s));
    return true;
  };
  try {
    fn();
  } finally {
    (process.stderr as any).write = orig;
  }
  return chunks.join('');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('basic allocation and stickiness in memory', async (t) => {
  const pool = new AddressPool('10.8.0.0/24', { leasesFile: null });
  t.equal(pool.serverAddress, '10.8.0.1');
  t.equal(pool.serverAddressInt, ipv4ToInt('10.8.0.1'));
  t.equal(pool.size, 253);
  t.equal(pool.cidr, '10.8.0.0/24');

  t.same(pool.acquire('alice'), { address: ipv4ToInt('10.8.0.2'), addressStr: '10.8.0.2', address6: 0, address6Str: '' });
  t.same(pool.acquire('bob'), { address: ipv4ToInt('10.8.0.3'), addressStr: '10.8.0.3', address6: 0, address6Str: '' });
  t.equal(pool.acquire('alice').addressStr, '10.8.0.2', 'acquire of an active CN returns the same address');
  t.equal(pool.activeCount, 2);

  pool.release('alice');
  t.equal(pool.activeCount, 1);
  t.match(pool.lookup('alice'), { active: false, addressStr: '10.8.0.2' });
  t.equal(pool.acquire('carol').addressStr, '10.8.0.4', 'a new CN gets a fresh address, not the released one');
  t.equal(pool.acquire('alice').addressStr, '10.8.0.2', 'released CN gets its address back');
  t.equal(pool.ownerOf(ipv4ToInt('10.8.0.4')), 'carol');
  t.equal(pool.ownerOf(ipv4ToInt('10.8.0.99')), undefined);
  pool.release('nobody'); // harmless
  pool.release('bob');
  pool.release('bob'); // twice is harmless
  t.equal(pool.activeCount, 2);
  t.throws(() => pool.acquire(''), /cn must be a non-empty string/);
});

t.test('network, server and broadcast addresses are never handed out', async (t) => {
  const pool = new AddressPool('10.8.0.0/24');
  const seen = new Set<string>();
  for (let i = 0; i < 253; i++) seen.add(pool.acquire(`c${i}`).addressStr);
  t.equal(seen.size, 253);
  t.notOk(seen.has('10.8.0.0'));
  t.notOk(seen.has('10.8.0.1'));
  t.notOk(seen.has('10.8.0.255'));
  t.ok(seen.has('10.8.0.2') && seen.has('10.8.0.254'));
  t.throws(() => pool.acquire('one-too-many'), PoolExhaustedError);

  const tiny = new AddressPool('10.77.7.4/30');
  t.equal(tiny.cidr, '10.77.7.4/30');
  t.equal(tiny.serverAddress, '10.77.7.5');
  t.equal(tiny.size, 1);
  t.equal(tiny.acquire('a').addressStr, '10.77.7.6');
  t.throws(() => tiny.acquire('b'), { name: 'PoolExhaustedError', message: /10\.77\.7\.4\/30 exhausted: all 1 client addresses/ });
});

t.test('prefix limits and a big pool', async (t) => {
  t.throws(() => new AddressPool('10.0.0.0/7'), /prefix length must be 8\.\.30 \(got \/7\)/);
  t.throws(() => new AddressPool('10.8.0.0/31'), /prefix length must be 8\.\.30/);
  t.throws(() => new AddressPool('10.8.0.0/32'), /prefix length must be 8\.\.30/);
  t.throws(() => new AddressPool('10.8.0/24'), /not a CIDR/);
  const big = new AddressPool('10.0.0.0/8');
  t.equal(big.size, 2 ** 24 - 3);
  t.equal(big.acquire('x').addressStr, '10.0.0.2');
  t.equal(big.acquire('y').addressStr, '10.0.0.3');
});

t.test('exhaustion reuses the oldest inactive lease of another CN', async (t) => {
  const pool = new AddressPool('10.8.0.0/29'); // clients .2 .. .6
  t.equal(pool.size, 5);
  for (const cn of ['a', 'b', 'c', 'd', 'e']) pool.acquire(cn);
  t.throws(() => pool.acquire('f'), /exhausted: all 5 client addresses/);
  pool.release('c'); // c: .4, released first
  await sleep(3);
  pool.release('a'); // a: .2
  t.equal(pool.acquire('f').addressStr, '10.8.0.4', 'oldest inactive (c) reused first');
  t.equal(pool.acquire('g').addressStr, '10.8.0.2', 'then a');
  t.equal(pool.lookup('c'), undefined, 'c lost its reservation');
  t.throws(() => pool.acquire('c'), PoolExhaustedError, 'everyone active again');
  pool.release('b');
  t.equal(pool.acquire('c').addressStr, '10.8.0.3', 'c gets the next free one');
  t.equal(pool.ownerOf(ipv4ToInt('10.8.0.3')), 'c');
  // Re-activating an inactive CN keeps its own address even when the pool is full otherwise.
  pool.release('d');
  t.equal(pool.acquire('d').addressStr, '10.8.0.5');
});

t.test('leases persist: same addresses after a restart', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'leases.json');
  const p1 = new AddressPool('10.8.0.0/24', { leasesFile: file });
  t.equal(p1.acquire('alice').addressStr, '10.8.0.2');
  t.equal(p1.acquire('bob').addressStr, '10.8.0.3');
  t.equal(p1.acquire('carol').addressStr, '10.8.0.4');
  p1.release('bob');

  const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
  t.match(saved, { version: 1, pool: '10.8.0.0/24' });
  t.same(
    saved.leases.map((l: any) => [l.cn, l.address, l.releasedAt === null]),
    [['alice', '10.8.0.2', true], ['bob', '10.8.0.3', false], ['carol', '10.8.0.4', true]],
  );

  // "Restart": a new instance on the same file; connect in a different order.
  const p2 = new AddressPool('10.8.0.0/24', { leasesFile: file });
  t.equal(p2.activeCount, 0, 'sessions do not survive a restart');
  t.equal(p2.acquire('carol').addressStr, '10.8.0.4');
  t.equal(p2.acquire('dave').addressStr, '10.8.0.5', 'a newcomer does not take a reserved address');
  t.equal(p2.acquire('bob').addressStr, '10.8.0.3');
  t.equal(p2.acquire('alice').addressStr, '10.8.0.2');

  // A third instance sees dave too.
  const p3 = new AddressPool('10.8.0.0/24', { leasesFile: file });
  t.equal(p3.acquire('dave').addressStr, '10.8.0.5');
});

t.test('the leases directory is created; an impossible path fails at construction', async (t) => {
  const dir = t.testdir({ 'a-file': '' });
  const file = path.join(dir, 'state', 'sub', 'leases.json');
  const pool = new AddressPool('10.8.0.0/24', { leasesFile: file });
  pool.acquire('alice');
  t.match(JSON.parse(fs.readFileSync(file, 'utf8')), { leases: [{ cn: 'alice', address: '10.8.0.2' }] });
  const bad = path.join(dir, 'a-file', 'leases.json');
  t.throws(() => new AddressPool('10.8.0.0/24', { leasesFile: bad }), /cannot create the directory for leases file .*a-file\/leases\.json/);
});

t.test('oldest-inactive order survives a restart', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'leases.json');
  const p1 = new AddressPool('10.8.0.0/29', { leasesFile: file });
  for (const cn of ['a', 'b', 'c', 'd', 'e']) p1.acquire(cn);
  p1.release('d');
  await sleep(3);
  p1.release('b');
  // a, c, e were still connected when the server stopped: they count as most recent.
  const p2 = new AddressPool('10.8.0.0/29', { leasesFile: file });
  p2.acquire('a');
  t.equal(p2.acquire('x').addressStr, '10.8.0.5', 'd (released first) is reused first');
  t.equal(p2.acquire('y').addressStr, '10.8.0.3', 'then b');
  t.equal(p2.acquire('c').addressStr, '10.8.0.4', 'c kept its address');
});

t.test('atomic writes leave no temp files; a failed write is survived', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'leases.json');
  const pool = new AddressPool('10.8.0.0/24', { leasesFile: file });
  for (let i = 0; i < 20; i++) {
    pool.acquire(`c${i}`);
    if (i % 3 === 0) pool.release(`c${i}`);
  }
  t.same(fs.readdirSync(dir), ['leases.json'], 'only the leases file');
  t.equal(JSON.parse(fs.readFileSync(file, 'utf8')).leases.length, 20);
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'readable by its owner only (it names every client)');

  // Make the rename fail: a directory now sits where the file goes.
  fs.rmSync(file);
  fs.mkdirSync(file);
  let got = '';
  const err = captureStderr(() => {
    got = pool.acquire('late').addressStr;
  });
  t.equal(got, '10.8.0.22', 'pool keeps working in memory');
  t.match(err, /cannot save leases/);
  t.same(fs.readdirSync(dir), ['leases.json'], 'temp file cleaned up after the failure');
  t.same(fs.readdirSync(file), [], 'nothing written into the directory');
});

t.test('a corrupt leases file is set aside with a warning', async (t) => {
  const dir = t.testdir({ 'leases.json': '{"version":1,"leases":[{"cn":"alice","addr' });
  const file = path.join(dir, 'leases.json');
  let pool!: AddressPool;
  const err = captureStderr(() => {
    pool = new AddressPool('10.8.0.0/24', { leasesFile: file });
  });
  t.match(err, /WARN .*leases file is corrupt, starting with no leases/);
  t.match(err, /leases\.json/);
  t.equal(pool.acquire('bob').addressStr, '10.8.0.2', 'started empty');
  t.ok(fs.existsSync(`${file}.corrupt`), 'bad file kept for inspection');
  t.match(JSON.parse(fs.readFileSync(file, 'utf8')), { version: 1, leases: [{ cn: 'bob' }] }, 'a good file written');

  for (const bad of ['', 'null', '[]', '{"version":2,"leases":[]}', '{"version":1}']) {
    fs.writeFileSync(file, bad);
    let p!: AddressPool;
    const e = captureStderr(() => {
      p = new AddressPool('10.8.0.0/24', { leasesFile: file });
    });
    t.match(e, /leases file is corrupt/, `warned for ${JSON.stringify(bad)}`);
    t.equal(p.acquire('zed').addressStr, '10.8.0.2');
  }
});

t.test('bad entries are dropped one by one', async (t) => {
  const leases = [
    { cn: 'alice', address: '10.8.0.7', releasedAt: 1000 },
    { cn: 'alice', address: '10.8.0.8', releasedAt: 1000 }, // duplicate cn
    { cn: 'bob', address: '10.8.0.7', releasedAt: 1000 }, // duplicate address
    { cn: 'carol', address: '10.9.0.5', releasedAt: 1000 }, // outside the pool
    { cn: 'dave', address: '10.8.0.1', releasedAt: 1000 }, // the server address
    { cn: 'erin', address: '10.8.0.255', releasedAt: 1000 }, // broadcast
    { cn: 'frank', address: 'x', releasedAt: 1000 },
    { cn: '', address: '10.8.0.9', releasedAt: 1000 },
    { cn: 'gina', address: '10.8.0.9', releasedAt: 'yesterday' },
    'junk',
    { cn: 'hank', address: '10.8.0.10', releasedAt: null },
  ];
  const dir = t.testdir({ 'leases.json': JSON.stringify({ version: 1, pool: '10.8.0.0/24', leases }) });
  let pool!: AddressPool;
  const err = captureStderr(() => {
    pool = new AddressPool('10.8.0.0/24', { leasesFile: path.join(dir, 'leases.json') });
  });
  t.equal(err.match(/ignoring lease/g)?.length, 9, 'one warning per bad entry');
  t.match(err, /duplicate cn/);
  t.match(err, /duplicate address/);
  t.match(err, /not a client address of 10\.8\.0\.0\/24/);
  t.same(pool.leases().map((l) => [l.cn, l.addressStr]), [['alice', '10.8.0.7'], ['hank', '10.8.0.10']]);
  t.equal(pool.acquire('alice').addressStr, '10.8.0.7');
  t.equal(pool.acquire('new').addressStr, '10.8.0.2');
});

t.test('Router: one /32 per session', async (t) => {
  const r = new Router<{ name: string }>();
  const a = { name: 'a' };
  const a2 = { name: 'a2' };
  const b = { name: 'b' };
  t.equal(r.add(ipv4ToInt('10.8.0.2'), a), undefined);
  r.add(ipv4ToInt('10.8.0.3'), b);
  t.equal(r.size, 2);
  t.equal(r.lookup(ipv4ToInt('10.8.0.2')), a);
  t.equal(r.lookup(0x0a080003), b);
  t.equal(r.lookup(ipv4ToInt('10.8.0.4')), undefined);
  t.equal(r.add(ipv4ToInt('10.8.0.2'), a2), a, 'replacing returns the previous session');
  t.equal(r.remove(ipv4ToInt('10.8.0.2'), a), false, 'a stale session cannot remove its successor');
  t.equal(r.lookup(ipv4ToInt('10.8.0.2')), a2);
  t.equal(r.remove(ipv4ToInt('10.8.0.2'), a2), true);
  t.equal(r.remove(ipv4ToInt('10.8.0.3')), true);
  t.equal(r.remove(ipv4ToInt('10.8.0.3')), false);
  t.equal(r.size, 0);
  r.add(0xfffffffe, a);
  t.equal(r.lookup(ipv4ToInt('255.255.255.254')), a, 'high addresses (unsigned)');
  t.same([...r.entries()], [[0xfffffffe, a]]);
});

t.test('Counters', async (t) => {
  const c = new Counters();
  t.equal(c.total, 0);
  c.inc('garbage');
  c.inc('garbage');
  c.inc('spoofed_source', 5);
  t.equal(c.get('garbage'), 2);
  t.equal(c.get('spoofed_source'), 5);
  t.equal(c.get('no_route'), 0);
  t.equal(c.total, 7);
  const snap = c.snapshot();
  t.same(Object.keys(snap).sort(), [...DROP_REASONS].sort(), 'every reason listed');
  t.same(
    [...DROP_REASONS].sort(),
    ['bad_cookie', 'bad_ethernet', 'bad_ip', 'broadcast_limit', 'client_to_client_off', 'garbage', 'handshake_limit', 'ipv6_link_local', 'mismatch_dtls', 'mismatch_plaintext', 'move_budget', 'move_refused', 'no_route', 'not_answered', 'not_ipv4', 'replayed_or_bad_record', 'spoofed_mac', 'spoofed_source', 'too_big', 'unauthorized'],
  );
  t.equal(snap.garbage, 2);
  snap.garbage = 100;
  t.equal(c.get('garbage'), 2, 'snapshot is a copy');
});

t.test('lease writes can be coalesced: a reconnect loop cannot make the pool fsync at its pace', async (t) => {
  const dir = t.testdir({});
  const file = path.join(dir, 'leases.json');
  const p = new AddressPool('10.8.0.0/24', { leasesFile: file, saveEveryMs: 500 });
  for (let i = 0; i < 200; i++) {
    p.acquire('alice');
    p.release('alice');
  }
  t.equal(p.writes, 1, 'the first change is written at once, the next 399 wait');
  t.equal(JSON.parse(fs.readFileSync(file, 'utf8')).leases[0].releasedAt, null, 'the file still has the first state');
  await new Promise<void>((resolve) => {
    const poll = () => (p.writes === 2 ? resolve() : setTimeout(poll, 20));
    poll();
  });
  t.not(JSON.parse(fs.readFileSync(file, 'utf8')).leases[0].releasedAt, null, 'within 500 ms the last state is written, once');
  p.acquire('bob');
  p.flush();
  t.equal(p.writes, 3, 'flush writes what is pending at once');
  t.same(JSON.parse(fs.readFileSync(file, 'utf8')).leases.map((l: { cn: string }) => l.cn).sort(), ['alice', 'bob']);
  const q = new AddressPool('10.8.0.0/24', { leasesFile: path.join(dir, 'b.json') });
  q.acquire('a'); q.acquire('b'); q.release('a');
  t.equal(q.writes, 3, 'without saveEveryMs, every change is written at once');
});
