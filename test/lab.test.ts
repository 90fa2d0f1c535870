// Integration test of scripts/lab.sh through src/lab/topology.ts: builds real network
// namespaces (needs root), checks reachability, and checks that down leaves nothing behind.
import t from 'tap';
import { ChildProcess, spawn, execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import { ADDR, ADDR6, Lab, labScript, scriptPath, uniquePrefix, waitForLine } from '../src/lab/topology';

// Names of this prefix's namespaces that exist now.
function namespaces(prefix: string): string[] {
  const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return out.split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(`${prefix}-`));
}

// Interface names in the root namespace: the lab must never leave (or create) any here.
function rootLinks(): string[] {
  return execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' })
    .split('\n').filter(Boolean).map((l) => l.split(':')[1].trim().split('@')[0]).sort();
}

// Alive = exists and is not a zombie.
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

// Waits until process pid runs the program `comm` (it has exec'd), at most timeoutMs.
async function execed(pid: number, comm: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const now = () => { try { return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return ''; } };
  while (now() !== comm) {
    if (Date.now() > deadline) throw new Error(`pid ${pid} is "${now()}", not "${comm}", after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function pidFile(prefix: string, host: string): number {
  return Number(fs.readFileSync(`/run/minivpn-lab/${prefix}/${host}.pid`, 'utf8').trim());
}

// What /bytes/N must answer: byte i = i % 251.
function expectedBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

t.test('lab up: topology, reachability, services, status; down removes everything', async (t) => {
  const prefix = uniquePrefix('l');
  const linksBefore = rootLinks();
  const lab = await Lab.up({ prefix, clients: 2 });
  let pids: number[] = [];
  let untracked: ChildProcess | undefined;
  try {
    t.equal(lab.prefix, prefix);
    t.equal(lab.ns('client1'), `${prefix}-client1`);
    t.same(namespaces(prefix).sort(), ['client1', 'client2', 'inet', 'lan', 'server', 'web'].map((h) => `${prefix}-${h}`).sort(),
      'one namespace per host');
    t.same(rootLinks(), linksBefore, 'no interface appeared in the root namespace');

    const hosts = await labScript(prefix, ['hosts']);
    t.equal(hosts.code, 0);
    t.same(hosts.stdout.trim().split('\n'), ['inet', 'server', 'web', 'lan', 'client1', 'client2'], 'hosts lists every host');

    // Forwarding: only inet routes; the server waits for server-init.sh.
    t.equal((await lab.exec('inet', ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1', 'inet forwards');
    t.equal((await lab.exec('server', ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '0', 'server does not forward yet');

    // Addresses and default routes.
    const c1 = await lab.exec('client1', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
    t.match(c1.stdout, `inet ${ADDR.client(1)}/24`);
    t.match((await lab.exec('client2', ['ip', 'route', 'show', 'default'])).stdout, `default via ${ADDR.inetClient} dev eth0`);
    t.match((await lab.exec('server', ['ip', '-4', '-o', 'addr', 'show', 'dev', 'eth1'])).stdout, `inet ${ADDR.serverLan}/24`);

    // Reachability across the "internet".
    for (const dst of [ADDR.web, ADDR.server]) {
      const ping = await lab.exec('client1', ['ping', '-c', '1', '-W', '10', dst], { timeoutMs: 30_000 });
      t.equal(ping.code, 0, `client1 pings ${dst}${ping.code ? `: ${ping.stderr || ping.stdout}` : ''}`);
    }
    const me1 = await lab.exec('client1', ['curl', '-s', '--max-time', '5', `http://${ADDR.web}/`]);
    t.equal(me1.stdout, `${ADDR.client(1)}\n`, 'web sees client1 by its own address (no NAT in inet)');
    const me2 = await lab.exec('client2', ['curl', '-s', '--max-time', '5', `http://${ADDR.web}/`]);
    t.equal(me2.stdout, `${ADDR.client(2)}\n`, 'web sees client2 by its own address');

    const hello = await lab.exec('client2', ['curl', '-s', '--max-time', '5', `http://${ADDR.web}/hello`]);
    t.match(hello.stdout, 'minivpn-secret-page', '/hello has the marker string');
    const n = 300_000;
    const sum = await lab.exec('client1', ['sh', '-c', `curl -s --max-time 10 http://${ADDR.web}/bytes/${n} | sha256sum`]);
    t.equal(sum.stdout.split(' ')[0], crypto.createHash('sha256').update(expectedBytes(n)).digest('hex'), `/bytes/${n} is the deterministic pattern`);

    // The private LAN: reachable from the server, not from the internet side.
    const lanFromServer = await lab.exec('server', ['curl', '-s', '--max-time', '5', `http://${ADDR.lan}/`]);
    t.equal(lanFromServer.stdout, `${ADDR.serverLan}\n`, 'server reaches the lan web service');
    const lanFromClient = await lab.exec('client1', ['curl', '-s', '--max-time', '3', `http://${ADDR.lan}/`], { timeoutMs: 10_000 });
    t.not(lanFromClient.code, 0, 'client1 cannot reach the LAN without the VPN');
    const inetRoute = await lab.exec('inet', ['ip', 'route', 'get', ADDR.lan]);
    t.not(inetRoute.code, 0, 'inet has no route to 10.9.0.0/24');

    // status shows hosts, addresses and the services.
    const status = await labScript(prefix, ['status']);
    t.equal(status.code, 0);
    for (const h of ['inet', 'server', 'web', 'lan', 'client1', 'client2']) t.match(status.stdout, new RegExp(`^${h}\\s+${prefix}-${h}`, 'm'));
    t.match(status.stdout, '203.0.113.80/24');
    t.match(status.stdout, /web\s+pid \d+\s+\S*node \S*whatsmyip\.js/);

    // up again is a no-op.
    const again = await labScript(prefix, ['up', '--clients', '2']);
    t.equal(again.code, 0);
    t.match(again.stdout, /already up/);

    // Processes that down must stop: the two web services, one tracked spawn, and one
    // started behind the lab's back (found through "ip netns pids").
    const tracked = lab.spawn('client1', ['sleep', '300']);
    const u = spawn('ip', ['netns', 'exec', lab.ns('client2'), 'sleep', '300'], { stdio: 'ignore' });
    untracked = u;
    const untrackedExit = new Promise((r) => u.once('exit', r));
    // Both are inside their namespaces once "ip netns exec" has become "sleep".
    for (const p of [tracked.pid!, u.pid!]) await execed(p, 'sleep', 30_000);
    pids = [pidFile(prefix, 'web'), pidFile(prefix, 'lan'), tracked.pid!, u.pid!];
    for (const p of pids) t.ok(alive(p), `pid ${p} runs before down`);

    await lab.down();
    await Promise.race([untrackedExit, new Promise((r) => setTimeout(r, 30_000).unref())]);
  } finally {
    await lab.down(); // no-op when already down; cleans up if an assertion threw
  }
  t.same(namespaces(prefix), [], 'no namespace with the prefix is left');
  for (const p of pids) t.notOk(alive(p), `pid ${p} is gone`);
  // If down missed it, do not let it keep this test process alive.
  if (untracked?.pid && alive(untracked.pid)) process.kill(untracked.pid, 'SIGKILL');
  t.notOk(fs.existsSync(`/run/minivpn-lab/${prefix}`), 'state directory removed');
  t.same(rootLinks(), linksBefore, 'root namespace interfaces unchanged');
  const gone = await labScript(prefix, ['down']);
  t.equal(gone.code, 0, 'down with nothing there exits 0');
  t.match(gone.stdout, /nothing to remove/);
  const st = await labScript(prefix, ['status']);
  t.match(st.stdout, /not up/);
});

/** Ends a detached `lab.sh up` and everything it started (its process group), if it still runs. */
async function killGroup(up: ChildProcess, exited: Promise<unknown>): Promise<void> {
  try { process.kill(-up.pid!, 'SIGKILL'); } catch { /* the whole group is gone already */ }
  await exited;
}

t.test('down cleans up after an "up" killed part way; up after a crash rebuilds', async (t) => {
  const linksBefore = rootLinks();
  // Kill points: after every namespace exists, and after the web service is running.
  const stages = [/wiring the client side/, /starting whatsmyip\.js on lan/];
  for (const stage of stages) {
    const prefix = uniquePrefix('k');
    const up = spawn('bash', [scriptPath('lab.sh'), 'up', '--clients', '8'], {
      detached: true, // its own process group, so we can SIGKILL the script and its children at once
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LAB_PREFIX: prefix },
    });
    const exited = new Promise((r) => up.once('exit', r));
    let webPid = 0;
    try {
      await waitForLine(up, stage, 30_000);
      await killGroup(up, exited);
      t.equal(namespaces(prefix).length, 12, `killed at ${stage}: namespaces were left behind (as a crash would)`);
      if (fs.existsSync(`/run/minivpn-lab/${prefix}/web.pid`)) webPid = pidFile(prefix, 'web');
      if (stage.source.includes('lan')) t.ok(webPid > 0 && alive(webPid), 'the web service outlived the killed script');
    } finally {
      await killGroup(up, exited); // (when the stage never came: a running "up" would race "down")
      const down = await labScript(prefix, ['down']);
      t.equal(down.code, 0, `down after kill at ${stage} exits 0`);
    }
    t.same(namespaces(prefix), [], 'no namespace left');
    t.notOk(fs.existsSync(`/run/minivpn-lab/${prefix}`), 'no state directory left');
    if (webPid) t.notOk(alive(webPid), 'web service stopped');
    t.same(rootLinks(), linksBefore, 'nothing left in the root namespace');
  }

  // A half-built lab (killed up) is cleaned and rebuilt by the next up.
  const prefix = uniquePrefix('k');
  const up = spawn('bash', [scriptPath('lab.sh'), 'up', '--clients', '2'], {
    detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LAB_PREFIX: prefix },
  });
  const exited = new Promise((r) => up.once('exit', r));
  try {
    await waitForLine(up, /wiring the server side/, 30_000);
    await killGroup(up, exited);
    const again = await labScript(prefix, ['up', '--clients', '2']);
    t.equal(again.code, 0, 'up after a crash succeeds');
    t.match(again.stdout, /half-built/, 'and says it cleaned the leftovers first');
    const r = await labScript(prefix, ['exec', 'client2', 'curl', '-s', '--max-time', '5', `http://${ADDR.web}/`]);
    t.equal(r.stdout, `${ADDR.client(2)}\n`, 'the rebuilt lab works');
  } finally {
    await killGroup(up, exited);
    await labScript(prefix, ['down']);
  }
  t.same(namespaces(prefix), [], 'no namespace left');
});

t.test('up --pair: client1 and server on one cable, nothing else; down removes it', async (t) => {
  const linksBefore = rootLinks();
  const prefix = uniquePrefix('p');
  try {
    const up = await labScript(prefix, ['up', '--pair']);
    t.equal(up.code, 0, `up --pair exits 0: ${up.stderr}`);
    t.same(namespaces(prefix).sort(), [`${prefix}-client1`, `${prefix}-server`], 'exactly two hosts');
    // One hop: the server answers from its own address, with TTL 64 (no router decremented it).
    const ping = await labScript(prefix, ['exec', 'client1', 'ping', '-c', '1', '-W', '10', ADDR.server]);
    t.equal(ping.code, 0, 'client1 reaches the server');
    t.match(ping.stdout, /ttl=64/, 'directly, not through a router');
    const links = await labScript(prefix, ['exec', 'server', 'ip', '-o', 'link', 'show']);
    t.same(links.stdout.split('\n').filter(Boolean).map((l) => l.split(':')[1].trim().split('@')[0]).sort(), ['eth0', 'lo'], 'the server has one cable');
    const st = await labScript(prefix, ['status']);
    t.match(st.stdout, /up \(pair\)/, 'status names the topology');
    const again = await labScript(prefix, ['up', '--pair']);
    t.match(again.stdout, /already up \(pair/, 'up again is a no-op');
    const full = await labScript(prefix, ['up', '--pair', '--clients', '2']);
    t.not(full.code, 0, '--pair with --clients 2 is refused');
    t.match(full.stderr, /exactly one client/);
  } finally {
    await labScript(prefix, ['down']);
  }
  t.same(namespaces(prefix), [], 'no namespace left');
  t.notOk(fs.existsSync(`/run/minivpn-lab/${prefix}`), 'state directory removed');
  t.same(rootLinks(), linksBefore, 'root namespace interfaces unchanged');
});

t.test('up --ipv6: both families on the underlay, a resolv.conf per client; down removes it all', async (t) => {
  const prefix = uniquePrefix('d');
  const resolv = `/etc/netns/${prefix}-client1/resolv.conf`;
  try {
    const up = await labScript(prefix, ['up', '--ipv6']);
    t.equal(up.code, 0, `up --ipv6 exits 0: ${up.stderr}`);
    for (const [url, what] of [[`http://${ADDR.web}/`, 'web over IPv4'], [`http://[${ADDR6.web}]/`, 'web over IPv6']]) {
      const r = await labScript(prefix, ['exec', 'client1', 'curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', url]);
      t.equal(r.stdout, '200', `client1 reaches ${what}`);
    }
    t.equal((await labScript(prefix, ['exec', 'client1', 'ping', '-c', '1', '-W', '5', ADDR6.server])).code, 0, 'client1 reaches the server over IPv6');
    t.equal(fs.readFileSync(resolv, 'utf8'), 'nameserver 2001:db8:100::1\noptions timeout:1 attempts:1\n', 'client1 has its own resolv.conf');
    const seen = await labScript(prefix, ['exec', 'client1', 'cat', '/etc/resolv.conf']);
    t.match(seen.stdout, /^nameserver 2001:db8:100::1$/m, 'which ip netns exec puts in place of the machine\'s');
    const st = await labScript(prefix, ['status']);
    t.match(st.stdout, /underlay dual/, 'status names the underlay');
    t.match(st.stdout, /client1 .*eth0 192\.0\.2\.11\/24 +eth0 2001:db8:100::11\/64/, 'and shows both addresses');
  } finally {
    await labScript(prefix, ['down']);
  }
  t.same(namespaces(prefix), [], 'no namespace left');
  t.notOk(fs.existsSync(`/etc/netns/${prefix}-client1`), 'the client\'s resolv.conf removed');
});

t.test('bad arguments are refused with a clear message', async (t) => {
  const prefix = uniquePrefix('b');
  const r = await labScript(prefix, ['up', '--clients', '9']);
  t.not(r.code, 0);
  t.match(r.stderr, /--clients must be a number from 1 to 8/);
  const bad = await labScript('no/good', ['down']);
  t.not(bad.code, 0);
  t.match(bad.stderr, /LAB_PREFIX/);
  const host = await labScript(prefix, ['exec', 'nosuchhost', 'true']);
  t.not(host.code, 0);
  t.match(host.stderr, /no host 'nosuchhost'/);
  t.same(namespaces(prefix), []);
  await t.rejects(Lab.up({ prefix: 'bad prefix' }), /prefix/);
  await t.rejects(Lab.up({ prefix, clients: 0 }), /clients/);
  const pair6 = await labScript(prefix, ['up', '--pair', '--ipv6']);
  t.not(pair6.code, 0);
  t.match(pair6.stderr, /--pair is IPv4 only/);
  await t.rejects(Lab.up({ prefix, pair: true, underlay: 'dual' }), /a pair lab is IPv4 only/);
  t.same(namespaces(prefix), []);
});
