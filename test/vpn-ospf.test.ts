// OSPF over the VPN (issue: the point-to-point topology): BIRD 2 on the server and on a
// client, OSPFv2 on the tunnel link. With --topology p2p each client is a point-to-point link
// the kernel routes, multicast included, so the routers form an adjacency and the server
// learns the network behind the client. With the default subnet topology they do not: the
// server's internal router has no multicast. First the BIRD configuration on a plain veth
// link, so that a failure further down is the VPN's and not the configuration's.
import t from 'tap';
import { Lab, withLab, uniquePrefix } from '../src/lab/topology';
import { vpnFixture, startServer, startClient, exited, STATUS_MAIN } from './helpers/vpn';
import { Bird, birdOspfConf, routeMonitor, addStubNetwork } from './helpers/bird';

const SERVER_ID = '10.255.0.1';
const CLIENT_ID = '10.255.0.11';
const BEHIND = '10.99.1.0/24';   // the network behind the client
const BEHIND_HOST = '10.99.1.1'; // the client's address on it

/** Both routers: OSPF on every interface named "mvp*" (the server's and the client's TUNs). */
function confs(): { server: string; client: string } {
  return {
    server: birdOspfConf({ routerId: SERVER_ID, links: ['mvp*'] }),
    client: birdOspfConf({ routerId: CLIENT_ID, links: ['mvp*'], stubs: ['lan0'] }),
  };
}

/** Starts BIRD on the server and on client1 (the client's lan0 already there); stops both after fn. */
async function withBirds<T>(lab: Lab, dir: string, fn: (server: Bird, client: Bird) => Promise<T>): Promise<T> {
  const c = confs();
  const birds: Bird[] = [];
  try {
    birds.push(await Bird.start(lab, 'server', dir, 'bird-server', c.server));
    birds.push(await Bird.start(lab, 'client1', dir, 'bird-client', c.client));
    return await fn(birds[0], birds[1]);
  } finally {
    for (const b of birds) await b.stop();
  }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

t.test('the BIRD configuration forms an OSPF adjacency over a plain point-to-point veth link', { timeout: 120_000 }, async (t) => {
  const f = await vpnFixture([]);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('ospv'), pair: true }, async (lab) => {
    // The shape of a p2p tunnel link without the VPN: server mvp0 10.8.0.1 peer 10.8.0.2.
    const link = await lab.exec('server', ['ip', 'link', 'add', 'mvp0', 'type', 'veth', 'peer', 'name', 'mvpn1', 'netns', lab.ns('client1')]);
    t.equal(link.code, 0, `a veth pair between server and client1 ${link.stderr.trim()}`);
    for (const [host, dev, local, peer] of [['server', 'mvp0', '10.8.0.1', '10.8.0.2'], ['client1', 'mvpn1', '10.8.0.2', '10.8.0.1']]) {
      await lab.exec(host, ['ip', 'addr', 'add', local, 'peer', `${peer}/32`, 'dev', dev]);
      await lab.exec(host, ['ip', 'link', 'set', dev, 'up']);
    }
    await addStubNetwork(lab, 'client1', 'lan0', `${BEHIND_HOST}/24`);
    const routes = await routeMonitor(lab, 'server');
    await withBirds(lab, f.dir, async (server, client) => {
      await server.waitNeighborState(CLIENT_ID, 'Full', 30_000);
      await client.waitNeighborState(SERVER_ID, 'Full', 30_000);
      t.pass('both routers reached Full');
      const line = await lab.waitForLine(routes, new RegExp(`^${escape(BEHIND)} via 10\\.8\\.0\\.2 dev mvp0 proto bird`), 30_000);
      t.ok(line, `the server's kernel learned ${BEHIND}: ${line}`);
      const ping = await lab.exec('server', ['ping', '-c', '1', '-W', '5', BEHIND_HOST]);
      t.equal(ping.code, 0, `the server reaches ${BEHIND_HOST}`);
    });
  });
});

t.test('p2p topology: an OSPF adjacency over the tunnel, the route to the network behind the client, again after a reconnect', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('ospp'), clients: 1 }, async (lab) => {
    await startServer(lab, f, ['--topology', 'p2p']);
    let client = await startClient(lab, f, 1, 'alice');
    t.equal(client.address, '10.8.0.2', 'alice has the first client address');
    await addStubNetwork(lab, 'client1', 'lan0', `${BEHIND_HOST}/24`);
    const routes = await routeMonitor(lab, 'server');
    const learned = new RegExp(`^${escape(BEHIND)} via 10\\.8\\.0\\.2 dev (mvp\\d+) proto bird`);
    await withBirds(lab, f.dir, async (sb, cb) => {
      await sb.waitNeighborState(CLIENT_ID, 'Full', 30_000);
      await cb.waitNeighborState(SERVER_ID, 'Full', 30_000);
      const line = await lab.waitForLine(routes, learned, 30_000);
      t.pass(`adjacent; the server's kernel learned ${line}`);
      const nb = await sb.neighbors();
      t.same(nb.map((n) => [n.routerId, n.state, n.address]), [[CLIENT_ID, 'Full/PtP', '10.8.0.2']], 'birdc: one neighbor, Full on a point-to-point link');
      t.equal(nb[0].iface, learned.exec(line)![1], "on alice's own link");
      const ping = await lab.exec('server', ['ping', '-c', '2', '-i', '0.2', '-W', '5', BEHIND_HOST]);
      t.equal(ping.code, 0, `the server reaches ${BEHIND_HOST}, behind alice, through the tunnel`);

      // The client dies (SIGKILL by PID: no goodbye), its TUN with it. The route goes: BIRD
      // on the server sees the neighbor dead (a "Deleted" line for the route) or the server
      // ends the session and its link goes first; then the kernel flushes the routes through
      // that device without a notification for each (only the link's own addresses show), so
      // the wait is for either, and the check is the routing table itself.
      const iface = learned.exec(line)![1];
      process.kill(client.proc.pid!, 'SIGKILL');
      await exited(client.proc, 30_000);
      const why = await lab.waitForLine(routes, new RegExp(`^Deleted (${escape(BEHIND)} via 10\\.8\\.0\\.2|local 10\\.8\\.0\\.1 dev ${iface} )`), 30_000);
      const table = (await lab.exec('server', ['ip', 'route', 'show', BEHIND])).stdout.trim();
      t.equal(table, '', `the route is gone with the client (${why.startsWith('Deleted local') ? 'its link went' : 'BIRD withdrew it'})`);
      const gone = await lab.exec('server', ['ping', '-c', '1', '-W', '1', BEHIND_HOST]);
      t.not(gone.code, 0, `${BEHIND_HOST} is unreachable meanwhile`);

      client = await startClient(lab, f, 1, 'alice');
      t.equal(client.address, '10.8.0.2', 'alice is back with her address');
      await sb.waitNeighborState(CLIENT_ID, 'Full', 60_000);
      const again = await lab.waitForLine(routes, learned, 60_000);
      t.pass(`adjacent again; the route is back: ${again}`);
      const nb2 = await sb.neighbors();
      t.same(nb2.map((n) => [n.routerId, n.state]), [[CLIENT_ID, 'Full/PtP']], 'birdc: the neighbor is Full again');
      const ping2 = await lab.exec('server', ['ping', '-c', '2', '-i', '0.2', '-W', '5', BEHIND_HOST]);
      t.equal(ping2.code, 0, `the server reaches ${BEHIND_HOST} again`);
    });
  });
});

t.test('subnet topology (the default): the same daemons form no adjacency', { timeout: 180_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('ospn'), clients: 1 }, async (lab) => {
    await startServer(lab, f);
    await startClient(lab, f, 1, 'alice');
    await addStubNetwork(lab, 'client1', 'lan0', `${BEHIND_HOST}/24`);
    // The server's own hellos, as its kernel writes them into the shared TUN (mvpn0).
    const hellos = lab.spawn('server', ['tcpdump', '-i', 'mvpn0', '-n', '-l', 'ip proto 89 and src 10.8.0.1 and dst 224.0.0.5']);
    await lab.waitForLine(hellos, /listening on/, 30_000);
    await withBirds(lab, f.dir, async (sb, cb) => {
      // The client's hellos to 224.0.0.5 do reach the server's kernel: 224.0.0.5 is not a pool
      // address, so the internal router hands it to the TUN like any other destination.
      await sb.waitNeighborState(CLIENT_ID, 'Init', 30_000);
      // The server's hellos do not reach the client: the internal router looks the
      // destination up among the sessions' addresses, finds no session for 224.0.0.5 and
      // drops the packet (counted as no_route). Wait for six of them: longer than the dead
      // interval (4 s), so an adjacency that could form would have formed.
      for (let i = 0; i < 6; i++) await lab.waitForLine(hellos, /> 224\.0\.0\.5: OSPFv2, Hello/, 30_000);
      const clientSees = await cb.neighbors();
      t.same(clientSees, [], 'the client never heard the server: no neighbor at all');
      const serverSees = await sb.neighbors();
      t.same(serverSees.map((n) => [n.routerId, n.state.split('/')[0]]), [[CLIENT_ID, 'Init']],
        'the server heard the client, but the client never lists the server in its hellos: Init, never 2-Way');
      t.notMatch(sb.log() + cb.log(), /changed state from \S+ to (2-Way|ExStart|Exchange|Loading|Full)/, 'no router went past Init');
      const st = JSON.parse((await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket, '--json'])).stdout);
      t.ok(st.drops.no_route >= 6, `the server's hellos were dropped by its router (no_route=${st.drops.no_route})`);
      const route = await lab.exec('server', ['ip', 'route', 'get', BEHIND_HOST]);
      t.notMatch(route.stdout, /dev mvpn0/, `no route to ${BEHIND} through the tunnel: ${route.stdout.trim()}`);
    });
  });
});
