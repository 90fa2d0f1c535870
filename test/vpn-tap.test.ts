// --dev tap: Ethernet frames through the tunnel, in the namespace lab, with real processes.
// The server runs one shared TAP (the subnet topology); the kernel on each side handles ARP,
// neighbour discovery and broadcasts as on any Ethernet link.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ChildProcess } from 'node:child_process';
import { Lab, withLab, uniquePrefix } from '../src/lab/topology';
import { vpnFixture, startServer, startClient, spawnClient, exited, STATUS_MAIN, VpnFixture } from './helpers/vpn';

const UDPB = path.join(__dirname, 'fixtures', 'udp-broadcast.js');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function status(lab: Lab, f: VpnFixture): Promise<any> {
  return JSON.parse((await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket, '--json'])).stdout);
}

async function mac(lab: Lab, host: string, dev: string): Promise<string> {
  const r = await lab.exec(host, ['ip', '-j', 'link', 'show', 'dev', dev]);
  return JSON.parse(r.stdout)[0].address as string;
}

/** The link-layer address `host` has for `addr` on `dev` ('' for none). */
async function neighbour(lab: Lab, host: string, dev: string, addr: string): Promise<string> {
  const fam = addr.includes(':') ? '-6' : '-4';
  const r = await lab.exec(host, ['ip', fam, '-j', 'neigh', 'show', 'to', addr, 'dev', dev]);
  const list = JSON.parse(r.stdout || '[]') as { lladdr?: string }[];
  return list[0]?.lladdr ?? '';
}

async function ping(lab: Lab, host: string, addr: string, args: string[] = ['-c', '3', '-i', '0.2']): Promise<{ code: number; sent: number; received: number; out: string }> {
  const r = await lab.exec(host, ['ping', ...(addr.includes(':') ? ['-6'] : []), '-W', '2', ...args, addr], { timeoutMs: 60_000 });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  return { code: r.code, sent: m ? Number(m[1]) : 0, received: m ? Number(m[2]) : 0, out: r.stdout + r.stderr };
}

// subnet: the server's one shared TAP. p2p: a TAP per client on the server, each a port of
// the bridge br7, which has the server's addresses; the kernel's bridge switches.
for (const topology of ['subnet', 'p2p'] as const) {
const p2p = topology === 'p2p';
const title = p2p ? 'TAP, p2p: two clients, each with its own TAP on the server, on one bridge' : "TAP: two clients on the server's shared TAP";
t.test(title, { timeout: 300_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'bob', 'carol']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix(p2p ? 'tapp' : 'tap'), clients: 3 }, async (lab) => {
    const server = await startServer(lab, f, ['--dev', 'tap', '--mac-limit', '2', '--broadcast-per-sec', '50', ...(p2p ? ['--topology', 'p2p', '--bridge', 'br7'] : [])]);
    const sdev = p2p ? 'br7' : 'mvpn0'; // where the server's addresses are
    if (p2p) t.match(lab.output(server), /topology p2p: a TAP per client template=mvp%d mtu=1420 bridge=br7/, 'the server will open a TAP per client, MTU 1500-20-8-37-1-14 = 1420');
    else t.match(lab.output(server), /TAP device open dev=mvpn0 mtu=1420/, 'the server opened a TAP, MTU 1500-20-8-37-1-14 = 1420');
    const a = await startClient(lab, f, 1, 'alice', ['--dev', 'tap']);
    const b = await startClient(lab, f, 2, 'bob', ['--dev', 'tap']);
    t.match(lab.output(a.proc), /tunnel up: 10\.8\.0\.\d+\/24 on mvpn1 .*mtu=1420 dev=tap/, 'alice is up on a TAP');
    if (p2p) {
      const ports = JSON.parse((await lab.exec('server', ['ip', '-j', 'link', 'show', 'master', 'br7'])).stdout || '[]') as { ifname: string }[];
      t.same(ports.map((l) => l.ifname).sort(), ['mvp0', 'mvp1'], "each client's own TAP is a port of the bridge");
    }
    const serverMac = await mac(lab, 'server', sdev);
    const aliceMac = await mac(lab, 'client1', 'mvpn1');
    const bobMac = await mac(lab, 'client2', 'mvpn1');

    await t.test('ARP resolves across the tunnel; pings both ways', async (t) => {
      const p1 = await ping(lab, 'client1', '10.8.0.1');
      t.equal(p1.received, 3, `alice -> server: ${p1.out.split('\n').slice(-3).join(' ')}`);
      t.equal(await neighbour(lab, 'client1', 'mvpn1', '10.8.0.1'), serverMac, "alice's ARP table has the server's TAP MAC");
      const p2 = await ping(lab, 'server', b.address);
      t.equal(p2.received, 3, 'server -> bob');
      t.equal(await neighbour(lab, 'server', sdev, b.address), bobMac, "the server's ARP table has bob's MAC");
      const p3 = await ping(lab, 'server', a.address);
      t.equal(p3.received, 3, 'server -> alice');
      t.equal(await neighbour(lab, 'server', sdev, a.address), aliceMac, "the server's ARP table has alice's MAC");
      if (!p2p) return;
      const c2c = await ping(lab, 'client1', b.address);
      t.equal(c2c.received, 3, 'alice -> bob, client to client through the bridge');
      t.equal(await neighbour(lab, 'client1', 'mvpn1', b.address), bobMac, "alice's ARP table has bob's MAC: ARP crossed both tunnels");
      t.equal((await ping(lab, 'client2', a.address)).received, 3, 'bob -> alice');
    });

    await t.test('IPv6 neighbour discovery works', async (t) => {
      const p = await ping(lab, 'client2', 'fd6d:7670:6e00::1');
      t.equal(p.received, 3, `bob -> server over IPv6: ${p.out.split('\n').slice(-3).join(' ')}`);
      t.equal(await neighbour(lab, 'client2', 'mvpn1', 'fd6d:7670:6e00::1'), serverMac, "bob's neighbour table has the server's MAC (by neighbour solicitation)");
      if (!p2p) return;
      const a6 = /address6=(fd6d:7670:6e00::\d+)/.exec(lab.output(a.proc))![1];
      t.equal((await ping(lab, 'client2', a6)).received, 3, `bob -> alice over IPv6 (${a6})`);
      t.equal(await neighbour(lab, 'client2', 'mvpn1', a6), aliceMac, "bob's neighbour table has alice's MAC");
    });

    await t.test(p2p ? 'a broadcast from the server reaches both clients; one from alice reaches bob and the server' : 'a broadcast from the server reaches both clients', async (t) => {
      const la = lab.spawn('client1', [process.execPath, UDPB, 'listen', '9999']);
      const lb = lab.spawn('client2', [process.execPath, UDPB, 'listen', '9999']);
      try {
        await lab.waitForLine(la, /listening/, 10_000);
        await lab.waitForLine(lb, /listening/, 10_000);
        const s = await lab.exec('server', [process.execPath, UDPB, 'send', '10.8.0.255', '9999', 'hello-all']);
        t.equal(s.code, 0, `sent (${s.stderr.trim()})`);
        t.match(await lab.waitForLine(la, /got/, 10_000), /got hello-all from 10\.8\.0\.1/, 'alice got it');
        t.match(await lab.waitForLine(lb, /got/, 10_000), /got hello-all from 10\.8\.0\.1/, 'bob got it');
        if (p2p) {
          const ls = lab.spawn('server', [process.execPath, UDPB, 'listen', '9999']);
          try {
            await lab.waitForLine(ls, /listening/, 10_000);
            t.equal((await lab.exec('client1', [process.execPath, UDPB, 'send', '10.8.0.255', '9999', 'from-alice'])).code, 0);
            t.match(await lab.waitForLine(lb, /got from-alice/, 10_000), new RegExp(`from ${a.address.replace(/\./g, '\\.')}`), "bob got alice's broadcast (the bridge flooded it)");
            t.match(await lab.waitForLine(ls, /got from-alice/, 10_000), /from-alice/, 'the server got it');
          } finally {
            ls.kill('SIGTERM');
          }
        }
      } finally {
        la.kill('SIGTERM');
        lb.kill('SIGTERM');
      }
    });

    await t.test('a broadcast flood from alice: bob\'s pings lose under 1 %', async (t) => {
      const before = await status(lab, f);
      // (p2p: the bridge floods what alice's guard lets through to bob: he counts it.)
      const heard = p2p ? lab.spawn('client2', [process.execPath, UDPB, 'listen', '9998']) : null;
      if (heard) await lab.waitForLine(heard, /listening/, 10_000);
      const flood = lab.spawn('client1', [process.execPath, UDPB, 'flood', '10.8.0.255', '9998', '4000', '6']);
      try {
        // Wait until the flood is on (the server drops its frames), then ping through it.
        for (let i = 0; i < 100 && (await status(lab, f)).drops.broadcast_limit - before.drops.broadcast_limit < 100; i++) {
          await new Promise((r) => setTimeout(r, 50)); // (polling a counter, not a fixed wait)
        }
        const p = await ping(lab, 'client2', '10.8.0.1', ['-c', '300', '-i', '0.01']);
        const loss = (p.sent - p.received) / p.sent;
        t.ok(p.sent === 300 && loss < 0.01, `bob's loss during the flood ${(loss * 100).toFixed(2)} % (${p.received}/${p.sent})`);
        await lab.waitForLine(flood, /flood: sent \d+/, 30_000);
        if (heard) {
          await lab.waitForLine(heard, /got/, 10_000);
          const n = lab.output(heard).split('\n').filter((l) => l.startsWith('got')).length;
          // 50 a second for 6 s and a burst of 100 at most, of the 24,000 alice sent.
          t.ok(n > 0 && n <= 50 * 7 + 100, `bob received ${n} of alice's broadcasts: the rate the guard allows, not the storm`);
        }
      } finally {
        flood.kill('SIGTERM');
        heard?.kill('SIGTERM');
      }
      const after = await status(lab, f);
      const limited = after.drops.broadcast_limit - before.drops.broadcast_limit;
      t.ok(limited > 1000, `the flood was rate-limited at the server: broadcast_limit +${limited}`);
    });

    await t.test('source MACs beyond the limit are dropped and counted', async (t) => {
      // A second MAC is within --mac-limit 2; a third is not; bob may not take alice's.
      const setMac = (host: string, m: string) => lab.exec(host, ['ip', 'link', 'set', 'dev', 'mvpn1', 'address', m]);
      await setMac('client1', '02:00:00:00:aa:02');
      await lab.exec('client1', ['ip', 'neigh', 'flush', 'dev', 'mvpn1']);
      t.equal((await ping(lab, 'client1', '10.8.0.1')).received, 3, 'a second MAC: carried');
      const before = await status(lab, f);
      await setMac('client1', '02:00:00:00:aa:03');
      t.equal((await ping(lab, 'client1', '10.8.0.1', ['-c', '3', '-i', '0.2'])).received, 0, 'a third MAC: nothing gets through');
      const mid = await status(lab, f);
      t.ok(mid.drops.spoofed_mac - before.drops.spoofed_mac >= 3, `counted: spoofed_mac +${mid.drops.spoofed_mac - before.drops.spoofed_mac}`);
      const alice = mid.clients.find((c: { cn: string }) => c.cn === 'alice');
      t.same(alice.macs, [aliceMac, '02:00:00:00:aa:02'], 'status lists the MACs alice holds');
      const table = (await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket])).stdout;
      t.match(table, new RegExp(`^alice .* ${aliceMac},02:00:00:00:aa:02 *$`, 'm'), 'and so does its table (MACS column)');
      t.match(table, /drops: .*spoofed_mac=\d+/, 'with the drops by reason');
      await setMac('client2', aliceMac);
      await lab.exec('client2', ['ip', 'neigh', 'flush', 'dev', 'mvpn1']);
      t.equal((await ping(lab, 'client2', '10.8.0.1')).received, 0, "bob sending from alice's MAC: nothing gets through");
      t.ok((await status(lab, f)).drops.spoofed_mac > mid.drops.spoofed_mac, 'counted as spoofed_mac');
      await setMac('client2', bobMac);
      await setMac('client1', aliceMac);
    });

    await t.test('a client without --dev tap is refused with the reason', async (t) => {
      const c = spawnClient(lab, f, 3, 'carol');
      t.equal(await exited(c, 30_000), 1, 'it stops (exit status 1)');
      t.match(lab.output(c), /refused by the server: this server carries Ethernet frames \(dev tap\): start the client with --dev tap/, 'and says why');
    });

    const procs: ChildProcess[] = [a.proc, b.proc, server];
    for (const p of procs) p.kill('SIGTERM');
    for (const p of procs) t.equal(await exited(p, 30_000), 0, 'exits cleanly');
    if (p2p) t.not((await lab.exec('server', ['ip', 'link', 'show', 'dev', 'br7'])).code, 0, 'the bridge is gone after exit');
  });
});
}

for (const topology of ['subnet', 'p2p'] as const) {
const p2p = topology === 'p2p';
t.test(`TAP on a bridge (${topology}), and DHCP: dnsmasq on the server's bridge gives a client its lease over the tunnel`, { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix(p2p ? 'dhcpp' : 'dhcp'), clients: 1 }, async (lab) => {
    const server = await startServer(lab, f, ['--dev', 'tap', '--dhcp', '--bridge', 'br7', ...(p2p ? ['--topology', 'p2p', '--no-client-to-client'] : [])]);
    const ports = async () => (JSON.parse((await lab.exec('server', ['ip', '-j', '-d', 'link', 'show', 'master', 'br7'])).stdout || '[]') as { ifname: string }[]).map((l) => l.ifname);
    if (!p2p) t.same(await ports(), ['mvpn0'], 'the init script made bridge br7, with the TAP as its port');
    else t.same(await ports(), [], 'the init script made bridge br7; no client, no port yet');
    t.match((await lab.exec('server', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'br7'])).stdout, /inet 10\.8\.0\.1\/24/, "the server's address is on the bridge");
    // dnsmasq as this test's own process (by PID, its own pid and lease files), DHCP only
    // (port 0: no DNS), bound to the server's bridge alone; no configuration file, no service.
    const leases = path.join(f.dir, 'dnsmasq.leases');
    const dnsmasq = lab.spawn('server', ['dnsmasq', '--keep-in-foreground', '--conf-file=/dev/null', '--port=0', '--no-resolv', '--no-hosts',
      '--interface=br7', '--bind-interfaces', '--dhcp-range=10.8.0.100,10.8.0.150,255.255.255.0,1h', '--dhcp-authoritative',
      `--dhcp-leasefile=${leases}`, `--pid-file=${path.join(f.dir, 'dnsmasq.pid')}`, '--user=root', '--log-dhcp', '--log-facility=-']);
    try {
      await lab.waitForLine(dnsmasq, /DHCP, IP range 10\.8\.0\.100 -- 10\.8\.0\.150/, 10_000);
      const a = await startClient(lab, f, 1, 'alice', ['--dev', 'tap']);
      const line = lab.output(a.proc);
      const m = /tunnel up: (10\.8\.0\.(\d+))\/24 \(by DHCP\) on mvpn1/.exec(line);
      t.ok(m && Number(m[2]) >= 100 && Number(m[2]) <= 150, `the client's address is from dnsmasq's range: ${m?.[1]}`);
      t.match(line, /dhcp-lease: lease 10\.8\.0\.\d+\/24 on mvpn1 from 10\.8\.0\.1/, 'udhcpc took it from the server side');
      t.match(lab.output(dnsmasq), /DHCPACK\(br7\) 10\.8\.0\.\d+ /, 'dnsmasq acknowledged it on the bridge');
      const aliceMac = await mac(lab, 'client1', 'mvpn1');
      t.match(fs.readFileSync(leases, 'utf8'), new RegExp(`${aliceMac} ${m?.[1]} `), "the lease file holds the client's MAC and address");
      const p = await ping(lab, 'server', m![1]);
      t.equal(p.received, 3, 'the server reaches the client at its DHCP address');
      if (p2p) {
        t.same(await ports(), ['mvp0'], "the client's own TAP joined the bridge");
        const port = JSON.parse((await lab.exec('server', ['ip', '-j', '-d', 'link', 'show', 'dev', 'mvp0'])).stdout)[0];
        t.equal(port.linkinfo?.info_slave_data?.isolated, true, '--no-client-to-client: an isolated bridge port (no frames to the other clients)');
      }
      a.proc.kill('SIGTERM');
      t.equal(await exited(a.proc, 30_000), 0, 'the client exits cleanly');
    } finally {
      dnsmasq.kill('SIGTERM');
    }
    server.kill('SIGTERM');
    t.equal(await exited(server, 30_000), 0);
    t.not((await lab.exec('server', ['ip', 'link', 'show', 'dev', 'br7'])).code, 0, 'the bridge it made is gone after exit');
  });
});
}
