// IPv6 inside the tunnel (issue 24), for real: the lab's namespaces with an IPv6 underlay
// too (lab.sh up --ipv6: the documentation prefix 2001:db8::/32 only), a server with its IPv6 pool, two
// clients. Dual stack end to end, NAT66 to the "internet" host, client to client, anti-
// spoofing, link-local chatter counted, Packet Too Big, and the leak block of a full-tunnel
// client whose server offers no IPv6.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { withLab, uniquePrefix, scriptPath, ADDR6, Lab } from '../src/lab/topology';
import { readPcap } from '../src/lab/pcap';
import { vpnFixture, startServer, startClient, spawnClient, exited, capture, STATUS_MAIN, VpnFixture } from './helpers/vpn';

const POOL6 = 'fd6d:7670:6e00::';
const WEB6 = ADDR6.web;
const SERVER6 = ADDR6.server;

async function status(lab: Lab, f: VpnFixture): Promise<any> {
  return JSON.parse((await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket, '--json'])).stdout);
}

/** IPv6 packets to `dst` that tcpdump on client1's eth0 saw while `during` ran. */
async function leaked(lab: Lab, f: VpnFixture, file: string, during: () => Promise<void>): Promise<number> {
  const buf = await capture(lab, 'client1', 'eth0', `ip6 and dst host ${WEB6}`, path.join(f.dir, file), during);
  return readPcap(buf).records.length;
}

function address6Of(line: string): string {
  const m = /address6=([0-9a-f:]+)\/64/.exec(line);
  if (!m) throw new Error(`no address6 in: ${line}`);
  return m[1];
}

t.test('IPv6 inside the tunnel', { timeout: 300_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'bob']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('i6'), clients: 2, underlay: 'dual' }, async (lab) => {
    t.equal((await lab.exec('client1', ['ping', '-6', '-c', '1', '-W', '2', WEB6])).code, 0, 'the IPv6 underlay works (client1 -> web directly)');

    let server = await startServer(lab, f, ['--nat-out', 'eth0', '--mtu', '1420', '--routes6', '2001:db8:300::/64']);
    t.match(lab.output(server), new RegExp(`pool6=${POOL6}/64 server6=${POOL6}1`), 'the server logs its IPv6 pool');
    const alice = spawnClient(lab, f, 1, 'alice');
    const a6 = address6Of(await lab.waitForLine(alice, /tunnel up: /, 15000));
    const bob = spawnClient(lab, f, 2, 'bob');
    const b6 = address6Of(await lab.waitForLine(bob, /tunnel up: /, 15000));
    t.equal(a6, `${POOL6}2`, 'alice got the first IPv6 client address');
    t.equal(b6, `${POOL6}3`, 'bob the next one');

    await t.test('ping -6 to the server, to the internet host through NAT66, and client to client', async (t) => {
      for (const [dst, what] of [[`${POOL6}1`, 'the server'], [WEB6, 'web (NAT66)'], [b6, 'bob (client to client)']]) {
        const r = await lab.exec('client1', ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '2', dst]);
        t.equal(r.code, 0, `alice -> ${what}: ${r.stdout.split('\n').slice(-3).join(' ')}`);
      }
      // NAT66: web sees the server's underlay address, and the packets crossed the tunnel.
      const seen = await capture(lab, 'web', 'eth0', `icmp6 and src host ${SERVER6}`, path.join(f.dir, 'nat66.pcap'), async () => {
        t.equal((await lab.exec('client1', ['ping', '-6', '-c', '2', '-i', '0.2', '-W', '2', WEB6])).code, 0);
      });
      t.ok(readPcap(seen).records.length >= 2, 'web saw the pings from the server\'s address (masqueraded)');
      const r = await lab.exec('client1', ['ip', '-6', 'route', 'get', WEB6]);
      t.match(r.stdout, /dev mvpn1/, 'the pushed IPv6 route goes into the tunnel');
    });

    await t.test('iperf3 -6 through the tunnel', async (t) => {
      const srv = lab.spawn('server', ['iperf3', '-s', '-1', '--forceflush', '-B', `${POOL6}1`]);
      await lab.waitForLine(srv, /Server listening/, 10000);
      // The tunnel's own datagrams (IPv4 underlay) while it runs: not one of them a fragment.
      let r = { code: 1, stdout: '', stderr: '' };
      const frags = await capture(lab, 'client1', 'eth0', 'ip and (ip[6:2] & 0x3fff != 0)', path.join(f.dir, 'frag.pcap'), async () => {
        r = await lab.exec('client1', ['iperf3', '-6', '-c', `${POOL6}1`, '-t', '2', '-J'], { timeoutMs: 30000 });
      });
      t.equal(r.code, 0, `iperf3 ran: ${r.stderr.slice(0, 200)}`);
      const bps = JSON.parse(r.stdout).end.sum_received.bits_per_second as number;
      t.ok(bps > 1e6, `IPv6 TCP through the tunnel: ${(bps / 1e6).toFixed(0)} Mbit/s`);
      t.equal(readPcap(frags).records.length, 0, 'without outer fragments');
      await exited(srv, 10000);
    });

    await t.test('status shows the IPv6 addresses', async (t) => {
      const st = await status(lab, f);
      t.equal(st.pool6, `${POOL6}/64`);
      t.same(st.clients.map((c: any) => c.address6).sort(), [a6, b6]);
      const table = await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket]);
      t.match(table.stdout, /LAST SEEN\s+ADDRESS6/, 'the table has an ADDRESS6 column');
      t.match(table.stdout, new RegExp(`alice\\s+10\\.8\\.0\\.2\\s.*ago\\s+${a6}`), 'with alice\'s IPv6 address');
      const leases = JSON.parse(fs.readFileSync(path.join(f.dir, 'leases.json'), 'utf8'));
      t.same(leases.leases.map((l: any) => `${l.cn} ${l.address6}`).sort(), [`alice ${a6}`, `bob ${b6}`], 'the leases file keeps both');
    });

    await t.test('a spoofed IPv6 source is dropped and counted; link-local chatter is counted, not logged', async (t) => {
      const before = await status(lab, f);
      await lab.exec('client1', ['ip', '-6', 'addr', 'add', `${POOL6}99/128`, 'dev', 'mvpn1', 'nodad']);
      const r = await lab.exec('client1', ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '1', '-I', `${POOL6}99`, `${POOL6}1`]);
      await lab.exec('client1', ['ip', '-6', 'addr', 'del', `${POOL6}99/128`, 'dev', 'mvpn1']);
      t.not(r.code, 0, 'the spoofed ping gets no answer');
      const st = await status(lab, f);
      t.ok(st.drops.spoofed_source - before.drops.spoofed_source >= 3, `spoofed_source +${st.drops.spoofed_source - before.drops.spoofed_source}`);
      // The server's own TUN: the kernel's router solicitations and MLD reports, from a link-local source.
      await lab.exec('server', ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '1', 'ff02::1%mvpn0']);
      let now = await status(lab, f);
      for (let i = 0; i < 50 && now.drops.ipv6_link_local - before.drops.ipv6_link_local < 3; i++) now = await status(lab, f);
      t.ok(now.drops.ipv6_link_local - before.drops.ipv6_link_local >= 3, `ipv6_link_local +${now.drops.ipv6_link_local - before.drops.ipv6_link_local}`);
      t.notMatch(lab.output(server), /fe80|ff02|link.local/i, 'no log line about them');
    });

    await t.test('a 1500-byte IPv6 packet into the 1420 tunnel: Packet Too Big with mtu 1420', async (t) => {
      // Routed: inet knows the pool is behind the server (the ping comes from web, unmasqueraded).
      await lab.exec('inet', ['ip', '-6', 'route', 'add', `${POOL6}/64`, 'via', SERVER6]);
      // 1. The server's kernel drops it at mvpn0 (MTU 1420) and answers.
      let r = await lab.exec('web', ['ping', '-6', '-c', '1', '-W', '2', '-M', 'do', '-s', '1452', a6]);
      t.match(r.stdout + r.stderr, /[Pp]acket too big.*mtu=1420/, `the server's kernel: ${r.stdout.split('\n')[1]}`);
      // 2. The TUN's MTU raised behind the server's back: the server process drops it and answers.
      await lab.exec('web', ['ip', '-6', 'route', 'flush', 'cache']);
      await lab.exec('server', ['ip', 'link', 'set', 'mvpn0', 'mtu', '1500']);
      const before = await status(lab, f);
      r = await lab.exec('web', ['ping', '-6', '-c', '1', '-W', '2', '-M', 'do', '-s', '1452', a6]);
      await lab.exec('server', ['ip', 'link', 'set', 'mvpn0', 'mtu', '1420']);
      t.match(r.stdout + r.stderr, /[Pp]acket too big.*mtu=1420/, `the server process: ${r.stdout.split('\n')[1]}`);
      t.ok((await status(lab, f)).drops.too_big > before.drops.too_big, 'counted as too_big');
      // 3. The same at the client: its process drops a packet over the tunnel MTU and answers.
      await lab.exec('client1', ['ip', 'link', 'set', 'mvpn1', 'mtu', '1500']);
      r = await lab.exec('client1', ['ping', '-6', '-c', '1', '-W', '2', '-M', 'do', '-s', '1452', WEB6]);
      await lab.exec('client1', ['ip', 'link', 'set', 'mvpn1', 'mtu', '1420']);
      await lab.exec('client1', ['ip', '-6', 'route', 'flush', 'cache']);
      t.match(r.stdout + r.stderr, /[Pp]acket too big.*mtu=1420/, `the client process: ${r.stdout.split('\n')[1]}`);
      await lab.exec('inet', ['ip', '-6', 'route', 'del', `${POOL6}/64`]);
    });

    for (const c of [alice, bob]) c.kill('SIGTERM');
    for (const c of [alice, bob]) t.equal(await exited(c, 10000), 0);
    server.kill('SIGTERM');
    t.equal(await exited(server, 10000), 0);
    for (const table of ['nat', 'mangle']) {
      const r = await lab.exec('server', ['ip6tables', '-t', table, '-S']);
      t.notMatch(r.stdout, /minivpn:/, `the server removed its ip6tables ${table} rules`);
    }

    // ---- a server without IPv6 (what a server from before IPv6 sends, too) and a full tunnel
    server = await startServer(lab, f, ['--no-ipv6', '--redirect-gateway', '--nat-out', 'eth0']);
    const ping6 = () => lab.exec('client1', ['ping', '-6', '-c', '2', '-i', '0.2', '-W', '1', WEB6]);
    const chain = async () => (await lab.exec('client1', ['ip6tables', '-S'])).stdout.includes('mvleak-mvpn1');

    await t.test('leak block: no IPv6 leaves the client while the full tunnel is up', async (t) => {
      const { proc, address } = await startClient(lab, f, 1, 'alice');
      t.match(lab.output(proc), /tunnel up: .*ipv6=none/, 'IPv4 only: the server sent no IPv6 fields');
      t.match(lab.output(proc), /IPv6 on the other interfaces is blocked/);
      t.equal((await lab.exec('client1', ['ping', '-c', '2', '-W', '2', '10.8.0.1'])).code, 0, `IPv4 service (${address})`);
      let code = 0;
      const n = await leaked(lab, f, 'leak1.pcap', async () => { code = (await ping6()).code; });
      t.not(code, 0, 'the IPv6 ping to the outside host fails');
      t.equal(n, 0, 'tcpdump on the LAN interface saw none of it');
      proc.kill('SIGTERM');
      t.equal(await exited(proc, 10000), 0);
      t.notOk(await chain(), 'the block is gone after the client stops');
      t.equal((await ping6()).code, 0, 'IPv6 works again');
    });

    await t.test('--allow-ipv6-leak: the same ping leaves by the LAN (so the test above can fail)', async (t) => {
      const { proc } = await startClient(lab, f, 1, 'alice', ['--allow-ipv6-leak']);
      t.match(lab.output(proc), /IPv6 goes around the tunnel/);
      t.notOk(await chain(), 'no block');
      let code = 1;
      const n = await leaked(lab, f, 'leak2.pcap', async () => { code = (await ping6()).code; });
      t.equal(code, 0, 'the IPv6 ping goes around the tunnel');
      t.ok(n >= 2, `tcpdump saw it leave (${n} packets)`);
      proc.kill('SIGTERM');
      t.equal(await exited(proc, 10000), 0);
    });

    await t.test('after a crash, the undo list restores IPv6', async (t) => {
      const { proc } = await startClient(lab, f, 1, 'alice');
      t.ok(await chain(), 'blocked while up');
      proc.kill('SIGKILL');
      await exited(proc, 10000);
      t.ok(await chain(), 'a crashed client leaves the block (fail closed)');
      const r = await lab.exec('client1', ['bash', scriptPath('client-init.sh'), 'down'],
        { env: { ...process.env, TUN: 'mvpn1', STATE_DIR: path.join(f.dir, 'state-1', 'client-mvpn1') } });
      t.equal(r.code, 0, `client-init.sh down: ${r.stderr}`);
      t.notOk(await chain(), 'the block is gone');
      t.equal((await ping6()).code, 0, 'IPv6 works again');
    });

    server.kill('SIGTERM');
    t.equal(await exited(server, 10000), 0);
  });
});
