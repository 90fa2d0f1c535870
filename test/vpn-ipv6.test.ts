// The IPv6 underlay: a dual-stack server ('::') takes a DTLS client over IPv6.
// Inside the lab's server namespace, over the loopback [::1] (nothing leaves it).
import t from 'tap';
import path from 'node:path';
import { withLab, uniquePrefix } from '../src/lab/topology';
import { vpnFixture, startServer, exited, STATUS_MAIN } from './helpers/vpn';

t.test('a client over an IPv6 underlay', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('v6'), clients: 1 }, async (lab) => {
    // The lab turns IPv6 off everywhere; allow it on the server host's loopback only.
    await lab.exec('server', ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=0', 'net.ipv6.conf.lo.disable_ipv6=0']);
    const server = await startServer(lab, f, ['--listen', '[::]:1194']);
    t.match(lab.output(server), /listening on udp \[::\]:1194/, 'dual-stack socket');
    const r = await lab.exec('server', [process.execPath, path.join(__dirname, 'fixtures', 'ipv6-client.js'), f.pki], { timeoutMs: 60000 });
    t.equal(r.code, 0, `client ran (stderr: ${r.stderr.slice(0, 300)})`);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!);
    t.equal(res.ramp.up, 1, 'the session came up over IPv6');
    t.ok(res.ping.received > 5 && res.ping.lost === 0, `pings through the tunnel: ${res.ping.received}/${res.ping.sent}`);
    t.match(lab.output(server), /client connected cn=alice address=10\.8\.0\.2 remote=\[::1\]:\d+ mode=dtls address6=fd6d:7670:6e00::2/, 'the log shows the IPv6 remote');
    server.kill('SIGTERM');
    t.equal(await exited(server, 30_000), 0);
  });
});
