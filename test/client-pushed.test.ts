// The client trusts no pushed config blindly (src/client/pushed.ts): what would cut it off its
// own network or swallow the tunnel is refused before anything is applied, and the user's
// --route-nopull and --pull-filter come first. Unit tests, then a fake server in the lab that
// pushes each bad value: the client refuses, names it, and its routes are as they were.
import t from 'tap';
import path from 'node:path';
import { checkPushed, LocalView } from '../src/client/pushed';
import { ConfigMsg } from '../src/wire/control';
import { parseCidr } from '../src/wire/ip';
import { withLab, uniquePrefix, ADDR } from '../src/lab/topology';
import { CLIENT_MAIN, exited } from './helpers/vpn';

const good: ConfigMsg = {
  type: 'config', v: 1, address: '10.8.0.2', prefix: 24, gateway: '10.8.0.1', mtu: 1400, routes: ['10.9.0.0/24'],
  redirectGateway: false, dns: ['10.8.0.1'], keepaliveSec: 10, timeoutSec: 60,
};
const local: LocalView = { serverIp: '198.51.100.2', lans: [parseCidr('192.0.2.0/24'), parseCidr('127.0.0.0/8')] };
const none = { routeNopull: false, pullFilters: [] };

t.test('checkPushed: a sound config passes unchanged', async (t) => {
  t.same(checkPushed(good, local, none), { ok: true, config: good, ignored: [] });
});

t.test('checkPushed: what would cut the client off is refused, naming the field', async (t) => {
  const refused = (c: Partial<ConfigMsg>) => {
    const r = checkPushed({ ...good, ...c }, local, none);
    return r.ok ? 'accepted' : r.reason;
  };
  t.match(refused({ routes: ['198.51.100.0/24'] }), /^routes: 198\.51\.100\.0\/24 covers the server's own address 198\.51\.100\.2/);
  t.match(refused({ routes: ['0.0.0.0/1'] }), /^routes: 0\.0\.0\.0\/1 overlaps this host's network 127\.0\.0\.0\/8/, 'half the internet takes the loopback net too');
  t.match(refused({ routes: ['192.0.2.128/25'] }), /^routes: 192\.0\.2\.128\/25 overlaps this host's network 192\.0\.2\.0\/24/, 'a route inside a LAN');
  t.match(refused({ routes: ['192.0.0.0/8'] }), /^routes: 192\.0\.0\.0\/8 overlaps this host's network 192\.0\.2\.0\/24/, 'a route around a LAN');
  t.match(refused({ address: '192.0.2.200', gateway: '192.0.2.1' }), /^address: the tunnel subnet 192\.0\.2\.0\/24 overlaps this host's network/);
  t.match(refused({ address: '198.51.100.7', gateway: '198.51.100.1' }), /^address: the tunnel subnet 198\.51\.100\.0\/24 contains the server's own address/);
  t.match(refused({ routes: Array.from({ length: 65 }, (_, i) => `10.${100 + (i >> 8)}.${i & 255}.0/24`) }), /^routes: 65 pushed, more than 64/);
  t.match(refused({ dns: ['10.8.0.1', '10.8.0.2', '10.8.0.3', '10.8.0.4', '10.8.0.5'] }), /^dns: 5 pushed, more than 4/);
  t.equal(refused({ redirectGateway: true }), 'accepted', 'the full tunnel covers the server too: client-init.sh keeps a host route to it');
});

t.test('checkPushed: --route-nopull and --pull-filter', async (t) => {
  let r = checkPushed({ ...good, redirectGateway: true }, local, { routeNopull: true, pullFilters: [] });
  t.ok(r.ok);
  if (r.ok) {
    t.same(r.config.routes, [], 'no pushed routes');
    t.equal(r.config.redirectGateway, false, 'no redirect');
    t.same(r.config.dns, ['10.8.0.1'], 'DNS stays');
    t.same(r.ignored, ['routes (--route-nopull)']);
  }
  r = checkPushed({ ...good, routes: ['10.9.0.0/24', '10.10.0.0/16'] }, local, { routeNopull: false, pullFilters: [{ action: 'ignore', text: 'route 10.10.' }, { action: 'ignore', text: 'dns ' }] });
  t.ok(r.ok);
  if (r.ok) {
    t.same(r.config.routes, ['10.9.0.0/24'], 'the filtered route is ignored, the other kept');
    t.same(r.config.dns, [], 'DNS ignored');
    t.same(r.ignored, ['route 10.10.0.0/16', 'dns 10.8.0.1']);
  }
  r = checkPushed(good, local, { routeNopull: false, pullFilters: [{ action: 'accept', text: 'route 10.9.' }, { action: 'reject', text: 'route ' }] });
  t.ok(r.ok, 'first match wins: accepted before the reject');
  r = checkPushed({ ...good, redirectGateway: true }, local, { routeNopull: false, pullFilters: [{ action: 'reject', text: 'redirect-gateway' }] });
  t.same(r, { ok: false, reason: '"redirect-gateway" is rejected by --pull-filter' });
  r = checkPushed(good, local, { routeNopull: false, pullFilters: [{ action: 'reject', text: 'mtu 14' }] });
  t.same(r, { ok: false, reason: '"mtu 1400" is rejected by --pull-filter' });
});

const FAKE = path.join(__dirname, 'fixtures', 'fake-server.js');

t.test('a client refuses each bad pushed value before applying anything: its routes stay byte-identical', { timeout: 180_000 }, async (t) => {
  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a route over the server', { routes: ['198.51.100.0/24'] }, /refused the server's config: routes: 198\.51\.100\.0\/24 covers the server's own address/],
    ['a route over the client LAN', { routes: ['192.0.2.0/25'] }, /refused the server's config: routes: 192\.0\.2\.0\/25 overlaps this host's network 192\.0\.2\.0\/24/],
    ['a tunnel subnet over the client LAN', { address: '192.0.2.99', gateway: '192.0.2.98' }, /refused the server's config: address: the tunnel subnet 192\.0\.2\.0\/24 overlaps/],
    ['an absurd MTU', { mtu: 70000 }, /refused the server's config: config\.mtu: /],
    // (70 routes still fit one datagram; a list that does not cannot arrive at all.)
    ['a long route list', { routes: Array.from({ length: 70 }, (_, i) => `10.100.${i}.0/24`) }, /refused the server's config: routes: 70 pushed, more than 64/],
  ];
  await withLab({ prefix: uniquePrefix('push'), clients: 1 }, async (lab) => {
    const routes = async () => (await lab.exec('client1', ['ip', 'route', 'show', 'table', 'all'])).stdout + (await lab.exec('client1', ['ip', 'addr'])).stdout;
    const before = await routes();
    for (const [what, over, want] of bad) {
      const fake = lab.spawn('server', [process.execPath, FAKE], { env: { ...process.env, FAKE_CONFIG: JSON.stringify({ ...good, ...over }), FAKE_HOST: ADDR.server } });
      try {
        await lab.waitForLine(fake, /fake server listening/, 10_000);
        const c = lab.spawn('client1', [process.execPath, CLIENT_MAIN, '--server', `${ADDR.server}:1194`, '--insecure-plaintext',
          '--plaintext-cn', 'alice', '--state-dir', `/tmp/${lab.prefix}-state`]);
        const code = await exited(c, 20_000);
        t.equal(code, 1, `${what}: the client stops (exit 1)`);
        t.match(lab.output(c), want, `${what}: it names what it refused`);
        t.notMatch(lab.output(c), /tunnel up/, `${what}: no tunnel`);
        t.equal(await routes(), before, `${what}: routes and addresses byte-identical`);
      } finally {
        fake.kill('SIGTERM');
        await exited(fake, 5000).catch(() => undefined);
      }
    }
  });
});
