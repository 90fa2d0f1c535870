// The batched UDP socket (native/udp.cc through src/conn/udp.ts), on loopback: a batch sent
// with one sendmmsg arrives as the same datagrams, in order, with or without UDP
// segmentation offload, and GSO falls back to plain sends where the route refuses it.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { SIZES } from './fixtures/udp-batch';

const FIXTURE = path.join(__dirname, 'fixtures', 'udp-batch.js');
const NS = `mvudp-${process.pid}`;

interface Result { sent: number; received: number; lens: number[]; intact: boolean; gso: string }

function run(gso: boolean, ns?: string, host = '127.0.0.1'): Result {
  const args = [FIXTURE, gso ? '1' : '0', host];
  const cmd = ns ? ['ip', ['netns', 'exec', ns, process.execPath, ...args]] as const : [process.execPath, args] as const;
  const r = spawnSync(cmd[0], [...cmd[1]], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`fixture exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Result;
}

t.test('without GSO: every datagram of the batch arrives, intact and in order', async (t) => {
  const r = run(false);
  t.equal(r.gso, 'off');
  t.equal(r.sent, SIZES.length, 'sendBatch reports every datagram taken');
  t.same(r.lens, SIZES, 'the receiver sees the same datagram sizes, in order');
  t.ok(r.intact, 'and the same bytes');
});

t.test('with GSO: runs of same-size datagrams leave as one send and arrive as the same datagrams', async (t) => {
  const r = run(true);
  t.equal(r.gso, 'on', 'loopback takes segmentation offload');
  t.equal(r.sent, SIZES.length, 'sendBatch counts datagrams, not runs');
  t.same(r.lens, SIZES, 'the kernel cut the runs back into the original datagrams, in order');
  t.ok(r.intact, 'and the same bytes');
});

t.test('with GSO over IPv6 (::1): the same datagrams arrive', async (t) => {
  const r = run(true, undefined, '::1');
  t.equal(r.gso, 'on');
  t.same(r.lens, SIZES, 'every datagram, in order');
  t.ok(r.intact);
});

t.test('with GSO from a dual-stack socket ([::]) to an IPv4 peer, as the server sends by default', async (t) => {
  const r = run(true, undefined, 'dual');
  t.equal(r.gso, 'on');
  t.equal(r.sent, SIZES.length);
  t.same(r.lens, SIZES, 'every datagram, in order');
  t.ok(r.intact);
});

t.test('with GSO on a route that refuses it (MTU below the datagram size): plain sends, nothing lost', async (t) => {
  execFileSync('ip', ['netns', 'add', NS]);
  t.teardown(() => { spawnSync('ip', ['netns', 'del', NS]); });
  // Segments larger than the MTU make the kernel refuse the GSO send (EINVAL); plain
  // datagrams that size are still sent, as IP fragments.
  execFileSync('ip', ['-n', NS, 'link', 'set', 'lo', 'mtu', '1000', 'up']);
  const r = run(true, NS);
  t.equal(r.gso, 'refused by the route', 'the socket says why GSO is off');
  t.equal(r.sent, SIZES.length, 'every datagram was still sent');
  t.same(r.lens, SIZES, 'and arrived, in order');
  t.ok(r.intact);
});
