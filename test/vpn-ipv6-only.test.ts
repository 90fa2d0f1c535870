// An IPv6-only underlay (issue 24): clients reach the server over IPv6 only (lab.sh up
// --ipv6-only: 2001:db8::/32 on every underlay link, no IPv4 there at all), and the tunnel
// carries both families inside: IPv4 to the private LAN behind the server, IPv6 to the
// "internet" host through NAT66, client to client in both. TCP over either family crosses
// without outer fragments when the tunnel MTU is the one for an IPv6 underlay, and inner IPv6
// TCP is merged on the TUN (GRO) as inner IPv4 is.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { withLab, uniquePrefix, ADDR, ADDR6, Lab } from '../src/lab/topology';
import { readPcap } from '../src/lab/pcap';
import { vpnFixture, startServer, startClient, exited, capture, STATUS_MAIN, VpnFixture } from './helpers/vpn';

const POOL6 = 'fd6d:7670:6e00::';
const SERVER = `[${ADDR6.server}]:1194`;

async function status(lab: Lab, f: VpnFixture): Promise<any> {
  return JSON.parse((await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket, '--json'])).stdout);
}

/** How many packets a capture holds. */
function packets(buf: Buffer): number {
  return readPcap(buf).records.length;
}

t.test('an IPv6-only underlay carries IPv4 and IPv6 inside', { timeout: 300_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'bob']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('u6'), clients: 2, underlay: 'ipv6' }, async (lab) => {
    // The underlay really is IPv6 only.
    t.equal((await lab.exec('client1', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout.trim(), '', 'client1 eth0 has no IPv4 address');
    t.equal((await lab.exec('server', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0'])).stdout.trim(), '', 'server eth0 has no IPv4 address');
    t.equal((await lab.exec('client1', ['ip', '-4', 'route', 'show'])).stdout.trim(), '', 'client1 has no IPv4 route');
    t.equal((await lab.exec('client1', ['ping', '-6', '-c', '1', '-W', '2', ADDR6.server])).code, 0, 'client1 reaches the server over IPv6');

    // No --mtu: on an IPv6 address the server computes 1414 (1500 - 40 IPv6 - 8 UDP - 37 DTLS - 1 frame).
    const server = await startServer(lab, f, ['--listen', SERVER, '--nat-out', 'eth0',
      '--routes', '10.9.0.0/24', '--routes6', '2001:db8:300::/64']);
    t.match(lab.output(server), /listening on udp \[2001:db8:200::2\]:1194/, 'the server listens on its IPv6 address');
    const alice = await startClient(lab, f, 1, 'alice', ['--server', SERVER]);
    const bob = await startClient(lab, f, 2, 'bob', ['--server', SERVER]);
    t.match(lab.output(alice.proc), /tunnel up: 10\.8\.0\.2\/24 on mvpn1 server=\[2001:db8:200::2\]:1194 mtu=1414 .*address6=fd6d:7670:6e00::2\/64/,
      'alice: IPv4 and IPv6 tunnel addresses, over the IPv6 server address, the MTU for an IPv6 underlay');
    t.equal(bob.address, '10.8.0.3');

    await t.test('both families inside, and nothing but IPv6 on the underlay', async (t) => {
      const results: Array<[string, number, string]> = [];
      const pings: Array<[string[], string]> = [
        [['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.8.0.1'], 'IPv4 to the server'],
        [['ping', '-c', '2', '-i', '0.2', '-W', '2', bob.address], 'IPv4 client to client'],
        [['ping', '-6', '-c', '2', '-i', '0.2', '-W', '2', `${POOL6}1`], 'IPv6 to the server'],
        [['ping', '-6', '-c', '2', '-i', '0.2', '-W', '2', `${POOL6}3`], 'IPv6 client to client'],
      ];
      const v4 = await capture(lab, 'client1', 'eth0', 'ip or arp', path.join(f.dir, 'v4.pcap'), async () => {
        const tunnel = await capture(lab, 'client1', 'eth0', `ip6 and udp port 1194 and host ${ADDR6.server}`, path.join(f.dir, 'tunnel.pcap'), async () => {
          for (const [cmd, what] of pings) {
            const r = await lab.exec('client1', cmd);
            results.push([what, r.code, r.stdout.split('\n').filter((l) => /packet loss/.test(l)).join('')]);
          }
          const lan = await lab.exec('client1', ['curl', '-s', '-m', '5', `http://${ADDR.lan}/`]);
          results.push([`IPv4 to the LAN host (it sees ${lan.stdout.trim()})`, lan.stdout.trim() === '10.8.0.2' ? 0 : 1, lan.stderr]);
          const web = await lab.exec('client1', ['curl', '-s', '-m', '5', `http://[${ADDR6.web}]/`]);
          results.push([`IPv6 to the internet host through NAT66 (it sees ${web.stdout.trim()})`, web.stdout.trim() === ADDR6.server ? 0 : 1, web.stderr]);
        });
        t.ok(packets(tunnel) >= 16, `the tunnel's UDP over IPv6 on eth0: ${packets(tunnel)} packets`);
      });
      for (const [what, code, detail] of results) t.equal(code, 0, `${what} ${detail}`);
      t.equal(packets(v4), 0, 'not one IPv4 (or ARP) packet on client1\'s underlay');
    });

    await t.test('TCP over inner IPv4 and inner IPv6: intact, without outer fragments', async (t) => {
      const N = 3_000_000;
      const frags = await capture(lab, 'client1', 'eth0', 'ip6 and ip6[6] == 44', path.join(f.dir, 'frag.pcap'), async () => {
        for (const url of [`http://${ADDR.lan}/bytes/${N}`, `http://[${ADDR6.web}]/bytes/${N}`]) {
          const r = await lab.exec('client1', ['sh', '-c', `curl -s -m 30 ${url} | wc -c`], { timeoutMs: 40_000 });
          t.equal(r.stdout.trim(), String(N), `${url}: all ${N} bytes`);
        }
        // Full-size packets up the tunnel too: the upload direction. The server writes them
        // into its TUN merged (GRO, on by default), for IPv6 as for IPv4.
        const body = path.join(f.dir, 'up.bin');
        fs.writeFileSync(body, Buffer.alloc(3_000_000, 7));
        const before = (await status(lab, f)).groMerged;
        const r = await lab.exec('client1', ['curl', '-s', '-m', '30', '--data-binary', `@${body}`, `http://[${ADDR6.web}]/sha256`], { timeoutMs: 40_000 });
        t.match(r.stdout, / 3000000$/m, 'a 3 MB upload over inner IPv6 arrived');
        const merged = (await status(lab, f)).groMerged - before;
        t.ok(merged > 0, `the server merged IPv6 TCP segments into its TUN writes: ${merged}`);
      });
      t.equal(packets(frags), 0, 'no IPv6 fragment on client1\'s underlay');
    });

    await t.test('status shows the clients\' IPv6 underlay addresses', async (t) => {
      const st = await status(lab, f);
      t.same(st.clients.map((c: any) => c.remote.replace(/:\d+$/, '')).sort(), [`[${ADDR6.client(1)}]`, `[${ADDR6.client(2)}]`]);
      t.same(st.clients.map((c: any) => c.address6).sort(), [`${POOL6}2`, `${POOL6}3`]);
    });

    for (const c of [alice.proc, bob.proc]) c.kill('SIGTERM');
    for (const c of [alice.proc, bob.proc]) t.equal(await exited(c, 10000), 0, 'client stopped cleanly');
    server.kill('SIGTERM');
    t.equal(await exited(server, 10000), 0, 'server stopped cleanly');
  });
});
