// The benchmark CLIs' flags (bench/args.ts, shared by npm run bench and npm run bench:scale).
import t from 'tap';
import { parseArgs as vpnArgs } from '../bench/vpn';
import { parseArgs as scaleArgs } from '../bench/scale';

t.test('npm run bench: defaults and flags', async (t) => {
  t.same(vpnArgs([]), { runs: 3, seconds: 10, chart: 'bench-results.svg', udpGso: false, tunGro: true, handoffYield: true });
  t.same(vpnArgs(['--runs', '5', '--seconds', '20', '--json', 'r.json', '--chart', 'c.svg', '--udp-gso', '--no-tun-gro', '--no-handoff-yield']),
    { runs: 5, seconds: 20, json: 'r.json', chart: 'c.svg', udpGso: true, tunGro: false, handoffYield: false });
  t.throws(() => vpnArgs(['--runs', '0']), /bad --runs "0": expected an integer from 1 to 100/);
  t.throws(() => vpnArgs(['--seconds', '1.5']), /bad --seconds "1.5": expected an integer/);
  t.throws(() => vpnArgs(['--json']), /--json needs a value/);
  t.throws(() => vpnArgs(['--bogus']), /unknown option "--bogus"/);
});

t.test('npm run bench:scale: defaults and flags', async (t) => {
  t.same(scaleArgs([]), { clients: 1000, concurrency: 64, keepaliveSec: 1, idleSec: 10, runs: 20 });
  const o = scaleArgs(['--clients', '200', '--concurrency', '16', '--keepalive-sec', '0.5', '--idle-sec', '5', '--runs', '3', '--json', 's.json']);
  t.same(o, { clients: 200, concurrency: 16, keepaliveSec: 0.5, idleSec: 5, runs: 3, json: 's.json' });
  t.throws(() => scaleArgs(['--clients', '2001']), /bad --clients "2001": expected an integer from 1 to 2000/);
  t.throws(() => scaleArgs(['--keepalive-sec', 'x']), /expected a number from 0.1 to 3600/);
  t.throws(() => scaleArgs(['--nope']), /unknown option "--nope"/);
});
