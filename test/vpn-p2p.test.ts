// The point-to-point topology (--topology p2p) for real: a TUN per client on the server, each
// a point-to-point link the kernel routes (client to client too), rp_filter as the
// anti-spoofing, multicast on a link, the program per link (PROG ARGS... after "--") on both
// sides, and a link's TUN gone within a second of its client's disconnect or de-authorization.
import t from 'tap';
import fs from 'node:fs';
import { ChildProcess } from 'node:child_process';
import { withLab, uniquePrefix, ADDR, Lab } from '../src/lab/topology';
import { vpnFixture, startServer, startClient, spawnClient, exited, logTime, waitForFile, serverArgs, SERVER_MAIN, STATUS_MAIN, VpnFixture } from './helpers/vpn';

/** The server's status, as JSON. */
async function status(lab: Lab, f: VpnFixture): Promise<any> {
  const r = await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket, '--json']);
  return JSON.parse(r.stdout);
}

/** The TUN of `cn` on the server, from the status (its row names it in p2p mode). */
async function tunOf(lab: Lab, f: VpnFixture, cn: string): Promise<string> {
  const c = (await status(lab, f)).clients.find((x: any) => x.cn === cn);
  if (!c?.tun) throw new Error(`no TUN for ${cn} in the status`);
  return c.tun;
}

/** Whether interface `dev` exists in the server's namespace. */
async function linkExists(lab: Lab, dev: string): Promise<boolean> {
  return (await lab.exec('server', ['ip', 'link', 'show', 'dev', dev])).code === 0;
}

/** Polls until `dev` is gone from the server (every 20 ms, at most `timeoutMs`); resolves with Date.now() then. */
async function linkGone(lab: Lab, dev: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (await linkExists(lab, dev)) {
    if (Date.now() > deadline) throw new Error(`${dev} still exists after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now();
}

/** The TUN name of a client (its namespace has one). */
async function clientTun(lab: Lab, host: string): Promise<string> {
  return (await lab.exec(host, ['sh', '-c', "ip -o link show type tun | awk -F': ' '{print $2}'"])).stdout.trim();
}

t.test('p2p topology: a TUN per client, routed by the kernel', { timeout: 300_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'bob', 'carol']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('p2p'), clients: 3 }, async (lab) => {
    // The program per link writes its environment to a file per event and client; for carol
    // it fails on "up" (exit 3, with a reason on stderr).
    const prog = `${f.dir}/link-prog.sh`;
    fs.writeFileSync(prog, [
      '#!/bin/sh',
      `env | grep '^TUN_' | sort > "${f.dir}/prog-$1-$TUN_EVENT-$TUN_CLIENT_ID.env"`,
      'if [ "$TUN_CLIENT_ID" = carol ] && [ "$TUN_EVENT" = up ]; then echo "carol is not welcome here" >&2; exit 3; fi',
      '',
    ].join('\n'), { mode: 0o755 });
    // (Started with a low soft limit of open files, which the p2p server raises: a TUN per client.)
    const server = lab.spawn('server', ['prlimit', '--nofile=512:8192', process.execPath, SERVER_MAIN, ...serverArgs(f, ['--topology', 'p2p', '--', prog, 'server'])]);
    await lab.waitForLine(server, /listening on udp/, 30_000);
    const alice = await startClient(lab, f, 1, 'alice', ['--', prog, 'client']);
    const bob = await startClient(lab, f, 2, 'bob');
    const procs: ChildProcess[] = [server, alice.proc, bob.proc];
    t.teardown(() => { for (const p of procs) p.kill('SIGTERM'); });
    t.not(alice.address, bob.address, 'each client got its own address');

    const devA = await tunOf(lab, f, 'alice');
    const devB = await tunOf(lab, f, 'bob');

    await t.test('two TUNs on the server, each a point-to-point link to its client', async (t) => {
      t.not(devA, devB, `alice on ${devA}, bob on ${devB}`);
      for (const [dev, addr] of [[devA, alice.address], [devB, bob.address]]) {
        t.match(dev, /^mvp\d+$/, 'named from the default template mvp%d');
        const link = await lab.exec('server', ['ip', '-d', 'link', 'show', 'dev', dev]);
        t.match(link.stdout, /POINTOPOINT/, `${dev} is a point-to-point interface`);
        t.match(link.stdout, /tun type tun/, `${dev} is a TUN`);
        const a = await lab.exec('server', ['ip', '-4', '-o', 'addr', 'show', 'dev', dev]);
        t.match(a.stdout, new RegExp(`inet 10\\.8\\.0\\.1 peer ${addr.replace(/\./g, '\\.')}/32`), `${dev}: the server's address, the client's as the peer`);
        const rp = await lab.exec('server', ['sysctl', '-n', `net.ipv4.conf.${dev}.rp_filter`]);
        t.equal(rp.stdout.trim(), '1', `${dev}: strict reverse-path filtering`);
      }
      const route = await lab.exec('server', ['ip', 'route', 'get', bob.address]);
      t.match(route.stdout, new RegExp(`dev ${devB}`), 'the kernel routes to bob through his link');
      const st = await status(lab, f);
      t.equal(st.topology, 'p2p');
      const nofile = /^Max open files\s+(\d+)\s+(\d+)/m.exec(fs.readFileSync(`/proc/${server.pid}/limits`, 'utf8'));
      t.same(nofile?.slice(1), ['8192', '8192'], "the server's open-file limit was raised from 512 to its hard limit (a TUN per client)");
      const table = await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket]);
      t.match(table.stdout, new RegExp(`alice\\s+${alice.address.replace(/\./g, '\\.')}.*${devA}`), 'the status table shows each TUN');
      const ctun = await lab.exec('client1', ['ip', '-4', '-o', 'addr', 'show', 'dev', await clientTun(lab, 'client1')]);
      t.match(ctun.stdout, new RegExp(`inet ${alice.address.replace(/\./g, '\\.')} peer 10\\.8\\.0\\.1/24`), "the client's end is a point-to-point link too, the pool behind it");
    });

    await t.test('pings both ways, and client to client through the kernel', async (t) => {
      for (const [host, dst] of [['client1', '10.8.0.1'], ['client2', '10.8.0.1'], ['server', alice.address], ['server', bob.address],
        ['client1', bob.address], ['client2', alice.address]]) {
        const r = await lab.exec(host, ['ping', '-c', '1', '-W', '10', dst]);
        t.equal(r.code, 0, `${host} -> ${dst}`);
      }
      const six = await lab.exec('client1', ['ping', '-6', '-c', '1', '-W', '10', 'fd6d:7670:6e00::1']);
      t.equal(six.code, 0, 'IPv6: alice -> the server');
      // Link-local IPv6 crosses the link too: all-nodes on alice's link, she answers from fe80::.
      const ll = await lab.exec('server', ['ping', '-6', '-c', '1', '-W', '10', `ff02::1%${devA}`]);
      t.equal(ll.code, 0, `IPv6 link-local: the server pings ff02::1 on ${devA}: ${ll.stdout.split('\n')[1] ?? ''}`);
      t.match(ll.stdout, /from fe80:/, 'answered from a link-local address');
    });

    await t.test("a spoofed source is dropped by the kernel's reverse-path filter", async (t) => {
      // Alice sends as bob: his address is routed to his link, not hers, so strict reverse-path
      // filtering drops it (counted in the server's IPReversePathFilter). IPv6 has no
      // rp_filter: the rpfilter rule of server-init.sh counts its drops.
      const tun = await clientTun(lab, 'client1');
      const rpf = async (): Promise<number> => Number(/IPReversePathFilter\s+(\d+)/.exec((await lab.exec('server', ['nstat', '-az', 'TcpExtIPReversePathFilter'])).stdout)?.[1] ?? NaN);
      const rule6 = async (): Promise<number> => {
        const out = (await lab.exec('server', ['ip6tables', '-w', '-t', 'raw', '-L', 'PREROUTING', '-v', '-n', '-x'])).stdout;
        const line = out.split('\n').find((l) => /rpfilter/.test(l) && /minivpn:mvp\+/.test(l));
        return line ? Number(line.trim().split(/\s+/)[0]) : NaN;
      };
      const before = await rpf(), before6 = await rule6();
      await lab.exec('client1', ['ip', 'addr', 'add', `${bob.address}/32`, 'dev', tun]);
      await lab.exec('client1', ['ip', '-6', 'addr', 'add', '2001:db8:77::2/64', 'dev', tun, 'nodad']);
      t.teardown(async () => {
        await lab.exec('client1', ['ip', 'addr', 'del', `${bob.address}/32`, 'dev', tun]);
        await lab.exec('client1', ['ip', '-6', 'addr', 'del', '2001:db8:77::2/64', 'dev', tun]);
      });
      const r = await lab.exec('client1', ['ping', '-c', '3', '-i', '0.2', '-W', '1', '-I', bob.address, '10.8.0.1']);
      t.not(r.code, 0, "alice's ping as bob gets no answer");
      const after = await rpf();
      t.ok(after - before >= 3, `the server's reverse-path filter dropped them (IPReversePathFilter ${before} -> ${after})`);
      const r6 = await lab.exec('client1', ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '1', '-I', '2001:db8:77::2', 'fd6d:7670:6e00::1']);
      t.not(r6.code, 0, 'an IPv6 ping from a foreign source gets no answer');
      const after6 = await rule6();
      t.ok(after6 - before6 >= 3, `the IPv6 rpfilter rule dropped them (${before6} -> ${after6})`);
      const ok = await lab.exec('client1', ['ping', '-c', '1', '-W', '10', '10.8.0.1']);
      t.equal(ok.code, 0, 'her own address still works');
    });

    await t.test('a multicast datagram to 224.0.0.5 on the link arrives at that client, and back', async (t) => {
      // Receiver in alice's namespace: joins 224.0.0.5 on her TUN, prints the first datagram.
      const recv = lab.spawn('client1', ['python3', '-u', '-c', [
        'import socket, struct',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
        's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
        "s.bind(('224.0.0.5', 5405))",
        `s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack('4s4s', socket.inet_aton('224.0.0.5'), socket.inet_aton('${alice.address}')))`,
        "print('joined', flush=True)",
        'data, src = s.recvfrom(2048)',
        "print('got', data.decode(), 'from', src[0], flush=True)",
      ].join('\n')]);
      procs.push(recv);
      await lab.waitForLine(recv, /joined/, 30_000);
      // Sender on the server, bound to alice's link (all links share the server's address).
      const send = await lab.exec('server', ['python3', '-c', [
        'import socket',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
        `s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'${devA}')`,
        's.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)',
        "s.sendto(b'hello-ospf', ('224.0.0.5', 5405))",
      ].join('\n')]);
      t.equal(send.code, 0, `sent: ${send.stderr}`);
      const line = await lab.waitForLine(recv, /^got /, 10_000);
      t.match(line, /got hello-ospf from 10\.8\.0\.1/, 'alice got the multicast datagram from the server');
      await exited(recv, 10_000);

      // And back: alice to 224.0.0.5 on her TUN, received on the server's link to her.
      const recv2 = lab.spawn('server', ['python3', '-u', '-c', [
        'import socket, struct',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
        's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
        `s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'${devA}')`,
        "s.bind(('224.0.0.5', 5406))",
        `s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack('4s4si', socket.inet_aton('224.0.0.5'), bytes(4), socket.if_nametoindex('${devA}')))`,
        "print('joined', flush=True)",
        'data, src = s.recvfrom(2048)',
        "print('got', data.decode(), 'from', src[0], flush=True)",
      ].join('\n')]);
      procs.push(recv2);
      await lab.waitForLine(recv2, /joined/, 30_000);
      const send2 = await lab.exec('client1', ['python3', '-c', [
        'import socket',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
        `s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton('${alice.address}'))`,
        "s.sendto(b'hello-back', ('224.0.0.5', 5406))",
      ].join('\n')]);
      t.equal(send2.code, 0, `sent: ${send2.stderr}`);
      const line2 = await lab.waitForLine(recv2, /^got /, 10_000);
      t.match(line2, new RegExp(`got hello-back from ${alice.address.replace(/\./g, '\\.')}`), "the server got alice's multicast datagram on her link");
      await exited(recv2, 10_000);
    });

    await t.test("the link program's environment, on the server and on the client", async (t) => {
      const up = await waitForFile(`${f.dir}/prog-server-up-alice.env`, /TUN_REMOTE=/, 30_000);
      t.match(up, new RegExp(`^TUN_DEV_NAME=${devA}$`, 'm'));
      t.match(up, /^TUN_CLIENT_ID=alice$/m);
      t.match(up, /^TUN_EVENT=up$/m);
      t.match(up, /^TUN_LOCAL_ADDRESS=10\.8\.0\.1$/m);
      t.match(up, new RegExp(`^TUN_PEER_ADDRESS=${alice.address.replace(/\./g, '\\.')}$`, 'm'));
      t.match(up, /^TUN_LOCAL_ADDRESS6=fd6d:7670:6e00::1$/m);
      t.match(up, /^TUN_PEER_ADDRESS6=fd6d:7670:6e00::\d+$/m);
      t.match(up, new RegExp(`^TUN_REMOTE=${ADDR.client(1).replace(/\./g, '\\.')}:\\d+$`, 'm'));
      const cl = await waitForFile(`${f.dir}/prog-client-up-alice.env`, /TUN_REMOTE=/, 30_000);
      t.match(cl, new RegExp(`^TUN_DEV_NAME=${await clientTun(lab, 'client1')}$`, 'm'));
      t.match(cl, /^TUN_CLIENT_ID=alice$/m);
      t.match(cl, new RegExp(`^TUN_LOCAL_ADDRESS=${alice.address.replace(/\./g, '\\.')}$`, 'm'));
      t.match(cl, /^TUN_PEER_ADDRESS=10\.8\.0\.1$/m);
      t.match(cl, new RegExp(`^TUN_REMOTE=${ADDR.server.replace(/\./g, '\\.')}:1194$`, 'm'));
    });

    await t.test('a failing link program closes that link with its reason; the others are served', async (t) => {
      const carol = spawnClient(lab, f, 3, 'carol');
      procs.push(carol);
      const line = await lab.waitForLine(server, /client (disconnected|gone before its link was up) cn=carol/, 30_000);
      t.match(line, /reason="?link program failed on up: exit 3 \(carol is not welcome here\)/, `logged: ${line}`);
      t.match(lab.output(server), /link program failed on up dev=mvp\d+ cn=carol/);
      const told = await lab.waitForLine(carol, /server said bye: link program failed/, 30_000);
      t.ok(told, 'carol was told why');
      t.equal(server.exitCode, null, 'the server runs on');
      const r = await lab.exec('client1', ['ping', '-c', '1', '-W', '10', bob.address]);
      t.equal(r.code, 0, 'alice still reaches bob');
      carol.kill('SIGTERM');
      await exited(carol, 30_000).catch(() => null);
    });

    await t.test("a client's TUN goes within a second of its disconnect, and the program's down runs", async (t) => {
      t.ok(await linkExists(lab, devB), `${devB} is there`);
      bob.proc.kill('SIGTERM');
      const line = await lab.waitForLine(server, /client disconnected cn=bob/, 30_000);
      const gone = await linkGone(lab, devB, 5_000);
      const ms = gone - logTime(line);
      t.ok(ms < 1000, `${devB} gone ${ms} ms after the server saw bob leave`);
      const down = await waitForFile(`${f.dir}/prog-server-down-bob.env`, /TUN_EVENT=down/, 30_000);
      t.match(down, new RegExp(`^TUN_DEV_NAME=${devB}$`, 'm'));
      await exited(bob.proc, 30_000);
    });

    await t.test('SIGHUP after removing a CN: its TUN goes within a second', async (t) => {
      fs.rmSync(`${f.pki}/authorized/alice`);
      server.kill('SIGHUP');
      const reloaded = await lab.waitForLine(server, /authorized clients reloaded .*removed=alice/, 30_000);
      const gone = await linkGone(lab, devA, 5_000);
      const ms = gone - logTime(reloaded);
      t.ok(ms < 1000, `${devA} gone ${ms} ms after the reload`);
      await lab.waitForLine(alice.proc, /server said bye: no longer authorized/, 30_000);
      const st = await status(lab, f);
      t.same(st.clients.map((c: any) => c.cn), [], 'no client left');
      const cl = await waitForFile(`${f.dir}/prog-client-down-alice.env`, /TUN_EVENT=down/, 30_000).catch((e: Error) => e.message);
      void cl; // (the client keeps its TUN while it retries; its "down" runs when it stops)
    });

    server.kill('SIGTERM');
    t.equal(await exited(server, 30_000), 0, 'the server exits 0');
    const left = await lab.exec('server', ['sh', '-c', 'ip -o link show type tun | wc -l']);
    t.equal(left.stdout.trim(), '0', 'no TUN left on the server');
    alice.proc.kill('SIGTERM');
    await exited(alice.proc, 30_000).catch(() => null);
    const cdown = await waitForFile(`${f.dir}/prog-client-down-alice.env`, /TUN_EVENT=down/, 10_000).catch((e: Error) => e.message);
    t.match(cdown, /TUN_CLIENT_ID=alice/, "the client's program ran with TUN_EVENT=down when it stopped");
  });
});

t.test('p2p topology: own template, no client to client, a reconnect, and "down" at shutdown', { timeout: 300_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'bob']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('p2q'), clients: 2 }, async (lab) => {
    const prog = `${f.dir}/link-prog.sh`;
    fs.writeFileSync(prog, `#!/bin/sh\necho "$TUN_EVENT $TUN_CLIENT_ID $TUN_DEV_NAME" >> "${f.dir}/events.log"\n`, { mode: 0o755 });
    const server = await startServer(lab, f, ['--topology', 'p2p', '--tun-name', 'vp%d', '--no-client-to-client', '--', prog]);
    let alice = await startClient(lab, f, 1, 'alice');
    const bob = await startClient(lab, f, 2, 'bob');
    const procs: ChildProcess[] = [server, alice.proc, bob.proc];
    t.teardown(() => { for (const p of procs) p.kill('SIGTERM'); });

    const devA = await tunOf(lab, f, 'alice');
    t.match(devA, /^vp\d+$/, `named from --tun-name vp%d: ${devA}`);
    t.equal((await lab.exec('client1', ['ping', '-c', '1', '-W', '10', '10.8.0.1'])).code, 0, 'alice reaches the server');
    t.not((await lab.exec('client1', ['ping', '-c', '2', '-i', '0.2', '-W', '1', bob.address])).code, 0, 'but not bob (--no-client-to-client)');

    // A restarted client: the new session replaces the old one, its link with it.
    const first = alice.address;
    alice.proc.kill('SIGKILL');
    await exited(alice.proc, 30_000).catch(() => null);
    alice = await startClient(lab, f, 1, 'alice');
    procs.push(alice.proc);
    t.equal(alice.address, first, 'alice kept her address (sticky per CN, as in the subnet topology)');
    await lab.waitForLine(server, /client disconnected cn=alice .*replaced by a new connection/, 30_000);
    const tuns = (await lab.exec('server', ['sh', '-c', 'ip -o link show type tun | wc -l'])).stdout.trim();
    t.equal(tuns, '2', 'still one TUN per client');
    t.equal((await lab.exec('client1', ['ping', '-c', '1', '-W', '10', '10.8.0.1'])).code, 0, 'alice reaches the server again');

    const devB = await tunOf(lab, f, 'bob');
    server.kill('SIGTERM');
    t.equal(await exited(server, 30_000), 0, 'the server exits 0');
    const events = fs.readFileSync(`${f.dir}/events.log`, 'utf8');
    t.match(events, new RegExp(`^down bob ${devB}$`, 'm'), 'the program was told "down" for each link before the server exited');
    t.match(events, new RegExp(`^down alice ${devA}$`, 'm'), "and for alice's first link when it was replaced");
    for (const c of [alice.proc, bob.proc]) { c.kill('SIGTERM'); await exited(c, 30_000).catch(() => null); }
  });
});

t.test('p2p topology in plaintext mode (the labs capture the links\' traffic)', { timeout: 300_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('p2r'), clients: 1 }, async (lab) => {
    const prog = `${f.dir}/link-prog.sh`;
    fs.writeFileSync(prog, `#!/bin/sh\nenv | grep '^TUN_' | sort > "${f.dir}/prog-$1-$TUN_EVENT.env"\n`, { mode: 0o755 });
    const server = await startServer(lab, f, ['--topology', 'p2p', '--insecure-plaintext', '--', prog, 'server']);
    const alice = await startClient(lab, f, 1, 'alice', ['--insecure-plaintext', '--', prog, 'client']);
    t.teardown(() => { server.kill('SIGTERM'); alice.proc.kill('SIGTERM'); });
    const dev = await tunOf(lab, f, 'alice');
    t.match((await lab.exec('server', ['ip', '-4', '-o', 'addr', 'show', 'dev', dev])).stdout, new RegExp(`peer ${alice.address.replace(/\./g, '\\.')}/32`), 'a point-to-point link');
    t.equal((await lab.exec('client1', ['ping', '-c', '1', '-W', '10', '10.8.0.1'])).code, 0, 'alice -> server');
    t.match(await waitForFile(`${f.dir}/prog-server-up.env`, /TUN_REMOTE=/, 30_000), /^TUN_CLIENT_ID=alice$/m, 'the claimed name is the client id');
    t.match(await waitForFile(`${f.dir}/prog-client-up.env`, /TUN_REMOTE=/, 30_000), /^TUN_CLIENT_ID=alice$/m, 'on the client too');
    server.kill('SIGTERM');
    t.equal(await exited(server, 30_000), 0);
    alice.proc.kill('SIGTERM');
    await exited(alice.proc, 30_000).catch(() => null);
  });
});
