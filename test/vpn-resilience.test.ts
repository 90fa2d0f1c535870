// The VPN when things go wrong or get locked down: network loss and dead-peer detection,
// privileges dropped after setup, pushed DNS.
import t from 'tap';
import fs from 'node:fs';
import { withLab, uniquePrefix, ADDR } from '../src/lab/topology';
import path from 'node:path';
import { vpnFixture, startServer, startClient, spawnClient, exited, logTime, serverArgs, SERVER_MAIN } from './helpers/vpn';
import { issueCert } from '../src/pki/pki';

const CLOCK_STEP = path.join(__dirname, 'fixtures', 'clock-step.js');

t.test('network loss: both ends notice the dead peer; the client comes back with its address', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('loss'), clients: 1 }, async (lab) => {
    const server = await startServer(lab, f); // keepalive 1 s, timeout 5 s
    const c = await startClient(lab, f, 1, 'alice');
    // The "internet" router drops everything from and to the client for 8 s.
    const block = ['-s', '192.0.2.11', '-j', 'DROP'];
    const unblock = ['-d', '192.0.2.11', '-j', 'DROP'];
    await lab.exec('inet', ['iptables', '-I', 'FORWARD', ...block]);
    await lab.exec('inet', ['iptables', '-I', 'FORWARD', ...unblock]);
    const t0 = Date.now();
    const clientSaw = await lab.waitForLine(c.proc, /no traffic from the server for \d+s/, 30_000);
    t.ok(logTime(clientSaw) - t0 < 9000, `client noticed in ${logTime(clientSaw) - t0} ms: ${clientSaw.replace(/^\S+ /, '')}`);
    const serverSaw = await lab.waitForLine(server, /client disconnected cn=alice .*dead peer/, 30_000);
    t.match(serverSaw, /address=10\.8\.0\.2/, 'server dropped the silent session');
    await new Promise((r) => setTimeout(r, Math.max(0, 8000 - (Date.now() - t0))));
    await lab.exec('inet', ['iptables', '-D', 'FORWARD', ...block]);
    await lab.exec('inet', ['iptables', '-D', 'FORWARD', ...unblock]);
    const back = await lab.waitForLine(c.proc, /tunnel up: /, 40000);
    t.match(back, new RegExp(`tunnel up: ${c.address.replace(/\./g, '\\.')}/`), 'same address after the outage');
    const ping = await lab.exec('client1', ['ping', '-c', '1', '-W', '10', '10.8.0.1']);
    t.equal(ping.code, 0, 'traffic flows again');
    c.proc.kill('SIGTERM');
    await exited(c.proc, 30_000);
    server.kill('SIGTERM');
    await exited(server, 30_000);
  });
});

// Timeouts run on the event loop's monotonic clock (src/clock.ts). A wall clock stepped back
// an hour during an outage made "now - lastSeen" negative with Date.now(): the dead peer was
// never noticed. Stepped forward an hour, every live peer looked dead at once.
t.test('a stepped wall clock changes nothing: a live tunnel stays, a dead peer is noticed', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  const step = (ms: number) => ({ nodeArgs: ['--require', CLOCK_STEP], env: { ...process.env, CLOCK_STEP_MS: String(ms) } });
  await withLab({ prefix: uniquePrefix('clock'), clients: 1 }, async (lab) => {
    // Forward: the server's clock jumps an hour ahead while the tunnel is idle but alive.
    const server = await startServer(lab, f, [], step(3_600_000)); // keepalive 1 s, timeout 5 s
    const c = await startClient(lab, f, 1, 'alice', [], step(-3_600_000));
    server.kill('SIGUSR2');
    await lab.waitForLine(server, /clock-step: wall clock stepped by 3600s/, 30_000);
    await new Promise((r) => setTimeout(r, 2500)); // two ticks of dead-peer checks
    const ping = await lab.exec('client1', ['ping', '-c', '1', '-W', '10', '10.8.0.1']);
    t.equal(ping.code, 0, "the tunnel still carries traffic after the server's clock jumped ahead");
    t.notMatch(lab.output(server), /client disconnected/, 'the server dropped no session');
    t.notMatch(lab.output(c.proc), /reconnecting/, 'the client did not reconnect');
    // Back: the outage starts, then the client's clock steps back an hour.
    const block = ['-s', '192.0.2.11', '-j', 'DROP'];
    const unblock = ['-d', '192.0.2.11', '-j', 'DROP'];
    await lab.exec('inet', ['iptables', '-I', 'FORWARD', ...block]);
    await lab.exec('inet', ['iptables', '-I', 'FORWARD', ...unblock]);
    const t0 = Date.now();
    c.proc.kill('SIGUSR2');
    await lab.waitForLine(c.proc, /clock-step: wall clock stepped by -3600s/, 30_000);
    const clientSaw = await lab.waitForLine(c.proc, /no traffic from the server for \d+s/, 30_000);
    t.ok(Date.now() - t0 < 9000, `client noticed in ${Date.now() - t0} ms: ${clientSaw.replace(/^\S+ /, '')}`);
    const serverSaw = await lab.waitForLine(server, /client disconnected cn=alice .*dead peer/, 30_000);
    t.match(serverSaw, /address=10\.8\.0\.2/, 'server dropped the silent session');
    await lab.exec('inet', ['iptables', '-D', 'FORWARD', ...block]);
    await lab.exec('inet', ['iptables', '-D', 'FORWARD', ...unblock]);
    c.proc.kill('SIGTERM');
    await exited(c.proc, 30_000);
    server.kill('SIGTERM');
    await exited(server, 30_000);
  });
});

t.test('privileges dropped after setup; pushed DNS reaches the client', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  // The unprivileged server must still be able to save its leases.
  const leases = `${f.dir}/leases`;
  fs.mkdirSync(leases, { mode: 0o777 });
  fs.chmodSync(leases, 0o777);
  fs.chmodSync(f.dir, 0o755);
  await withLab({ prefix: uniquePrefix('priv'), clients: 1 }, async (lab) => {
    const server = await startServer(lab, f, ['--user', 'nobody', '--group', 'nogroup', '--leases-file', `${leases}/leases.json`, '--dns', '10.9.0.53']);
    t.match(lab.output(server), /dropped privileges user=nobody group=nogroup uid=65534 gid=65534 groups=65534\n/);
    const status = fs.readFileSync(`/proc/${server.pid}/status`, 'utf8');
    t.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m, 'the server runs as nobody');
    t.match(status, /^Gid:\s+65534\s+65534\s+65534\s+65534$/m, 'in group nogroup');
    t.match(status, /^Groups:\s*65534\s*$/m, "and none of root's supplementary groups");
    const c = await startClient(lab, f, 1, 'alice');
    t.match(lab.output(c.proc), /DNS.*10\.9\.0\.53/, 'the client was told the DNS server');
    const ping = await lab.exec('client1', ['ping', '-c', '2', '-W', '10', '10.8.0.1']);
    t.equal(ping.code, 0, 'the tunnel works after the privilege drop');
    t.ok(fs.existsSync(`${leases}/leases.json`), 'leases saved by the unprivileged server');
    c.proc.kill('SIGTERM');
    await exited(c.proc, 30_000);
    server.kill('SIGTERM');
    t.equal(await exited(server, 30_000), 0, 'exits 0');
    // --user alone: the user's own primary group, not root's group 0.
    const alone = await startServer(lab, f, ['--user', 'nobody', '--leases-file', `${leases}/leases.json`]);
    const st2 = fs.readFileSync(`/proc/${alone.pid}/status`, 'utf8');
    t.match(st2, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m, '--user alone: nobody');
    t.match(st2, /^Gid:\s+65534\s+65534\s+65534\s+65534$/m, "in nobody's primary group (nogroup), not root's");
    t.match(st2, /^Groups:\s*65534\s*$/m, "with nobody's groups only");
    alone.kill('SIGTERM');
    t.equal(await exited(alone, 30_000), 0, 'exits 0');
  });
});

t.test('a certificate whose CN cannot be a client name is refused; the server carries on', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  // Signed by the server's own CA, so the handshake succeeds: only the name is wrong.
  const ca = { certPem: fs.readFileSync(`${f.pki}/ca.crt`, 'utf8'), keyPem: fs.readFileSync(`${f.pki}/ca.key`, 'utf8') };
  const long = await issueCert(ca, { cn: 'a'.repeat(100), kind: 'client', dnsNames: ['long.minivpn.test'] });
  fs.writeFileSync(`${f.pki}/clients/longcn.crt`, long.certPem);
  fs.writeFileSync(`${f.pki}/clients/longcn.key`, long.keyPem, { mode: 0o600 });
  await withLab({ prefix: uniquePrefix('cn'), clients: 2 }, async (lab) => {
    const server = await startServer(lab, f);
    const bad = spawnClient(lab, f, 2, 'longcn');
    const line = await lab.waitForLine(bad, /refused by the server/, 30_000);
    t.match(line, /the certificate CN is not a valid client name/, 'the client is told why');
    t.equal(await exited(bad, 30_000), 1);
    t.match(lab.output(server), new RegExp(`refused client: its certificate CN is not a valid client name cn=a{100} `));
    const alice = await startClient(lab, f, 1, 'alice');
    t.equal(alice.address, '10.8.0.2', 'the server still serves the next client');
    alice.proc.kill('SIGTERM');
    await exited(alice.proc, 30_000);
    server.kill('SIGTERM');
    t.equal(await exited(server, 30_000), 0, 'and exits 0');
  });
});

t.test('a server that cannot bind its address undoes its setup and exits 1', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('bind'), clients: 1 }, async (lab) => {
    // 203.0.113.9 is not an address of the server's host: the bind fails after server-init.sh
    // has added its rules (MSS clamping, NAT) and the TUN exists.
    const args = serverArgs(f, ['--nat-out', 'eth0']).map((a) => (a === `${ADDR.server}:1194` ? '203.0.113.9:1194' : a));
    const p = lab.spawn('server', [process.execPath, SERVER_MAIN, ...args]);
    t.equal(await exited(p, 20000), 1, 'exits 1');
    t.match(lab.output(p), /cannot start: .*(EADDRNOTAVAIL|cannot assign)/i, 'and says why');
    t.match(lab.output(p), /server-init\.sh down/, 'after running the init script\'s "down"');
    const rules = await lab.exec('server', ['iptables-save']);
    t.equal(rules.code, 0);
    t.notMatch(rules.stdout, /minivpn:/, 'no firewall rule of ours is left');
    const link = await lab.exec('server', ['ip', 'link', 'show', 'mvpn0']);
    t.not(link.code, 0, 'and no TUN');
  });
});

t.test('pool exhausted: the next client is refused with the reason', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'bob']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('pool'), clients: 2 }, async (lab) => {
    // A /30 has one address for a client: .1 is the server, .0 and .3 are network and broadcast.
    const server = await startServer(lab, f, ['--pool', '10.8.0.0/30']);
    const alice = await startClient(lab, f, 1, 'alice');
    t.equal(alice.address, '10.8.0.2');
    const bob = spawnClient(lab, f, 2, 'bob');
    const line = await lab.waitForLine(bob, /refused by the server/, 30_000);
    t.match(line, /address pool 10\.8\.0\.0\/30 exhausted/, 'bob is told why');
    t.equal(await exited(bob, 30_000), 1);
    t.match(lab.output(server), /refused client: address pool exhausted cn=bob/);
    alice.proc.kill('SIGTERM');
    await exited(alice.proc, 30_000);
    server.kill('SIGTERM');
    await exited(server, 30_000);
  });
});
