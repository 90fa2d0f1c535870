// The benchmark CLIs' flags (bench/args.ts, shared by npm run bench, bench:scale, bench:roam and bench:cost).
import t from 'tap';
import { alternatingSummary, ipv6Line, parseArgs as vpnArgs, turnOrder } from '../bench/vpn';
import { parseArgs as scaleArgs } from '../bench/scale';
import { nextAddress, parseArgs as roamArgs } from '../bench/roam';
import { parseArgs as costArgs } from '../bench/path-cost';
import { wireguardMtu } from '../bench/wireguard';

t.test('npm run bench: defaults and flags', async (t) => {
  t.same(vpnArgs([]), { runs: 3, seconds: 10, altRounds: 8, chart: 'bench-results.svg', udpGso: false, tunGro: true, handoffYield: true });
  t.same(vpnArgs(['--runs', '5', '--seconds', '20', '--alt-rounds', '0', '--json', 'r.json', '--chart', 'c.svg', '--udp-gso', '--no-tun-gro', '--no-handoff-yield']),
    { runs: 5, seconds: 20, altRounds: 0, json: 'r.json', chart: 'c.svg', udpGso: true, tunGro: false, handoffYield: false });
  t.throws(() => vpnArgs(['--alt-rounds', '-1']), /bad --alt-rounds "-1"/);
  t.throws(() => vpnArgs(['--runs', '0']), /bad --runs "0": expected an integer from 1 to 100/);
  t.throws(() => vpnArgs(['--seconds', '1.5']), /bad --seconds "1.5": expected an integer/);
  t.throws(() => vpnArgs(['--json']), /--json needs a value/);
  t.throws(() => vpnArgs(['--bogus']), /unknown option "--bogus"/);
  t.equal(vpnArgs(['--float-check']).floatCheck, true, '--float-check: minivpn-dtls also with --no-float on the server');
  t.equal(vpnArgs([]).floatCheck, undefined);
  // WireGuard's row: its MTU over the same IPv4 underlay as minivpn's 1434 (60 bytes of overhead).
  t.equal(wireguardMtu(), 1440);
  t.equal(wireguardMtu(9000), 8940);
});

t.test('npm run bench:roam: defaults and flags, the addresses moved between', async (t) => {
  t.same(roamArgs([]), { moves: 10, timeoutSec: 60 });
  t.same(roamArgs(['--moves', '20', '--timeout', '30', '--json', 'roam.json']), { moves: 20, timeoutSec: 30, json: 'roam.json' });
  t.throws(() => roamArgs(['--moves', '0']), /bad --moves "0": expected an integer from 1 to 200/);
  t.throws(() => roamArgs(['--timeout', '2.5']), /bad --timeout "2.5": expected an integer/);
  t.throws(() => roamArgs(['--float']), /unknown option "--float"/);
  // From the lab's address to .21, then back and forth between .21 and .31: never to the one it has.
  t.equal(nextAddress('192.0.2.11'), '192.0.2.21');
  t.equal(nextAddress('192.0.2.21'), '192.0.2.31');
  t.equal(nextAddress('192.0.2.31'), '192.0.2.21');
});

t.test('npm run bench:cost: defaults and flags', async (t) => {
  t.same(costArgs([]), { topologies: ['subnet'], packets: 4000, warmup: 4000, batches: [64, 1], size: 1400 });
  t.same(costArgs(['--topology', 'p2p']).topologies, ['p2p']);
  t.same(costArgs(['--topology', 'subnet,p2p']).topologies, ['subnet', 'p2p'], 'both in one run');
  t.throws(() => costArgs(['--topology', 'mesh']), /bad --topology "mesh": expected subnet, p2p or subnet,p2p/);
  t.throws(() => costArgs(['--topology', 'p2p,p2p']), /bad --topology "p2p,p2p"/, 'each once');
  t.throws(() => costArgs(['--child-topology', 'p2p']), /unknown option "--child-topology"/, 'a child option only after --child');
  const o = costArgs(['--baseline', 'old', '--packets', '2000', '--warmup', '0', '--batch', '32', '--size', '100', '--json', 'c.json']);
  t.match(o, { packets: 2000, warmup: 0, batches: [32], size: 100, json: 'c.json' });
  t.ok(o.baseline?.endsWith('/old'), 'the baseline as an absolute path');
  t.throws(() => costArgs(['--batch', '0,64']), /bad --batch: expected integers from 1 to 64/);
  t.throws(() => costArgs(['--batch', 'x']), /bad --batch/);
  t.throws(() => costArgs(['--size', '20']), /bad --size "20": expected an integer from 64 to 1400/);
  t.throws(() => costArgs(['--child-packets', '5']), /unknown option "--child-packets"/, 'the child options only after --child');
});

t.test('npm run bench: the systems pinged in turn', async (t) => {
  // Each system first once per cycle of rounds, and right after each other system once.
  const balanced = (xs: string[], rounds: number) => {
    const orders = Array.from({ length: rounds }, (_, r) => turnOrder(xs, r));
    for (const o of orders) t.same([...o].sort(), [...xs].sort(), 'every system once per round');
    for (const x of xs) t.equal(orders.filter((o) => o[0] === x).length, rounds / xs.length, `${x} first ${rounds / xs.length} time(s)`);
    const pairs = orders.flatMap((o) => o.slice(1).map((x, i) => `${o[i]}>${x}`));
    t.equal(new Set(pairs).size, xs.length * (xs.length - 1), 'each after each other one');
    const counts = new Map<string, number>();
    for (const p of pairs) counts.set(p, (counts.get(p) ?? 0) + 1);
    t.equal(new Set(counts.values()).size, 1, 'equally often');
  };
  const xs = ['raw', 'dtls', 'plain', 'ovpn'];
  t.same(turnOrder(xs, 0), ['raw', 'dtls', 'ovpn', 'plain']);
  t.same(turnOrder(xs, 5), turnOrder(xs, 1), 'the cycle repeats');
  balanced(xs, 4);
  balanced(xs, 8);
  balanced(['a', 'b', 'c'], 6);
  t.same(turnOrder([], 3), []);
  // Medians of all of a system's pings; the added RTT is that minus raw's median.
  const s = alternatingSummary(new Map([
    ['raw', [0.05, 0.07, 0.06]],
    ['minivpn-dtls', [0.5, 0.4, 0.45, 0.9]],
    ['openvpn', [0.42, 0.41, 0.43]],
    ['minivpn-plaintext', []],
  ]));
  t.same(s.get('raw'), { rtt_alt_ms: 0.06, rtt_added_ms: null });
  t.equal(s.get('minivpn-dtls')!.rtt_alt_ms, 0.475);
  t.ok(Math.abs(s.get('minivpn-dtls')!.rtt_added_ms! - 0.415) < 1e-9);
  t.ok(Math.abs(s.get('openvpn')!.rtt_added_ms! - 0.36) < 1e-9);
  t.notOk(s.has('minivpn-plaintext'), 'no pings, no figure');
  // Without raw's pings there is no added RTT.
  t.same(alternatingSummary(new Map([['openvpn', [0.4]]])).get('openvpn'), { rtt_alt_ms: 0.4, rtt_added_ms: null });
});

t.test('npm run bench:scale: defaults and flags', async (t) => {
  const defaults = { clients: 1000, topology: 'both', throughputSec: 5, throughputRounds: 4, concurrency: 64, keepaliveSec: 1, idleSec: 10, runs: 20 };
  t.same(scaleArgs([]), defaults, 'both topologies and the throughput comparison by default');
  const o = scaleArgs(['--clients', '200', '--concurrency', '16', '--keepalive-sec', '0.5', '--idle-sec', '5', '--runs', '3', '--json', 's.json']);
  t.same(o, { ...defaults, clients: 200, concurrency: 16, keepaliveSec: 0.5, idleSec: 5, runs: 3, json: 's.json' });
  t.same(scaleArgs(['--topology', 'p2p', '--throughput-sec', '3', '--throughput-rounds', '0']), { ...defaults, topology: 'p2p', throughputSec: 3, throughputRounds: 0 });
  t.throws(() => scaleArgs(['--topology', 'mesh']), /bad --topology "mesh": expected subnet, p2p or both/);
  t.throws(() => scaleArgs(['--throughput-rounds', '21']), /bad --throughput-rounds "21": expected an integer from 0 to 20/);
  t.throws(() => scaleArgs(['--clients', '2001']), /bad --clients "2001": expected an integer from 1 to 2000/);
  t.throws(() => scaleArgs(['--keepalive-sec', 'x']), /expected a number from 0.1 to 3600/);
  t.throws(() => scaleArgs(['--nope']), /unknown option "--nope"/);
});

t.test('npm run bench: the IPv6 row against IPv4 in the same runs, and the target', async (t) => {
  const s = (fwd: number, rev: number, rtt = 0.3) => ({ fwd_mbps: fwd, rev_mbps: rev, rtt_ms: rtt, rtt_first_ms: rtt, cpu_s_per_mb: null, cpu_us_per_packet: null, rtt_alt_ms: null, rtt_added_ms: null });
  // Per-run ratios 0.5, 1.0, 0.9 up (median 0.9): the drift between runs cancels, the target is not met.
  const runs = [[800, 600, 400, 600], [400, 300, 400, 300], [1000, 500, 900, 500]].map(([f4, r4, f6, r6]) =>
    ({ 'minivpn-dtls': s(f4, r4), 'minivpn-ipv6': s(f6, r6, 0.33) }) as any);
  t.equal(ipv6Line(runs), 'inner IPv6 over inner IPv4 (minivpn-ipv6 / minivpn-dtls, same tunnel, median of per-run ratios): up 0.90, down 1.00, RTT 1.10 (target: throughput >= 0.95 both ways: NOT met)');
  runs[0]['minivpn-ipv6'] = s(800, 600);
  t.match(ipv6Line(runs), /up 1\.00, down 1\.00, .*: met\)$/);
});
