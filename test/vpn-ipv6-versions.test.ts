// Mixed protocol versions, with real processes (issue 24, point 2): a client from before IPv6
// inside the tunnel still gets IPv4 service from a new server, next to a new client that gets
// both; and a new client works with a server from before IPv6. "From before IPv6" is this
// build with its control messages checked or written as then (test/fixtures/before-ipv6.ts,
// on the frozen old check in test/fixtures/control-before-ipv6.ts).
import t from 'tap';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { withLab, uniquePrefix, Lab } from '../src/lab/topology';
import { vpnFixture, startServer, startClient, exited } from './helpers/vpn';

const BEFORE = path.join(__dirname, 'fixtures', 'before-ipv6.js');
const before = (role: 'client' | 'server') => ({ nodeArgs: ['--require', BEFORE], env: { ...process.env, MINIVPN_BEFORE_IPV6: role } });
const POOL6 = 'fd6d:7670:6e00::';

async function ping(lab: Lab, host: string, dst: string): Promise<number> {
  return (await lab.exec(host, ['ping', dst.includes(':') ? '-6' : '-4', '-c', '2', '-i', '0.2', '-W', '2', dst])).code;
}

async function stopAll(procs: ChildProcess[]): Promise<Array<number | null>> {
  for (const p of procs) p.kill('SIGTERM');
  return Promise.all(procs.map((p) => exited(p, 10_000)));
}

t.test('mixed protocol versions, both ways', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['old', 'new']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('ve'), clients: 2 }, async (lab) => {
    await t.test('a client from before IPv6 and a new server: IPv4 service, next to a new client with both', async (t) => {
      const server = await startServer(lab, f);
      const old = await startClient(lab, f, 1, 'old', [], before('client'));
      t.match(lab.output(old.proc), /this client speaks the control protocol from before IPv6/, 'the old check is in place');
      t.match(lab.output(old.proc), /tunnel up: .*ipv6=none/, 'the old client took the IPv4 config and ignored the IPv6 fields');
      const neu = await startClient(lab, f, 2, 'new');
      t.match(lab.output(neu.proc), new RegExp(`tunnel up: .*address6=${POOL6}3/64`), 'the new client got its IPv6 address too');
      t.equal(await ping(lab, 'client1', '10.8.0.1'), 0, 'old client -> server over IPv4');
      t.equal(await ping(lab, 'client1', neu.address), 0, 'old client -> new client over IPv4');
      t.equal(await ping(lab, 'client2', `${POOL6}1`), 0, 'new client -> server over IPv6');
      t.same(await stopAll([old.proc, neu.proc, server]), [0, 0, 0], 'all stopped cleanly');
    });

    await t.test('a new client and a server from before IPv6: IPv4 service', async (t) => {
      const server = await startServer(lab, f, [], before('server'));
      t.match(lab.output(server), /this server speaks the control protocol from before IPv6/, 'the old config is in place');
      const neu = await startClient(lab, f, 1, 'new');
      t.match(lab.output(neu.proc), /tunnel up: .*ipv6=none/, 'no IPv6 fields: the new client sets up IPv4 only');
      t.notMatch(lab.output(neu.proc), /refused|error/i, 'and finds nothing wrong with the config');
      t.equal(await ping(lab, 'client1', '10.8.0.1'), 0, 'new client -> server over IPv4');
      const r = await lab.exec('client1', ['ip', '-6', 'addr', 'show', 'dev', 'mvpn1', 'scope', 'global']);
      t.equal(r.stdout.trim(), '', 'no IPv6 address on the client\'s TUN');
      t.same(await stopAll([neu.proc, server]), [0, 0], 'all stopped cleanly');
    });
  });
});
