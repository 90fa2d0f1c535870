// Integration test of scripts/server-init.sh and scripts/client-init.sh, run inside lab
// namespaces (needs root) on a TUN device made with "ip tuntap", no VPN needed.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { ADDR, Lab, scriptPath, uniquePrefix, withLab } from '../src/lab/topology';

const TUN = 'tun-t';
const TAG = `minivpn:${TUN}`;

function script(lab: Lab, host: string, name: string, action: string, env: Record<string, string>) {
  return lab.exec(host, ['bash', scriptPath(name), action], { env: { ...process.env, ...env } });
}

async function iptablesSave(lab: Lab, host: string): Promise<string> {
  const r = await lab.exec(host, ['iptables-save']);
  if (r.code !== 0) throw new Error(`iptables-save failed: ${r.stderr}`);
  return r.stdout;
}

const tagged = (rules: string) => rules.split('\n').filter((l) => l.includes(`"${TAG}"`));

t.test('server-init.sh: address, forwarding, tagged NAT and MSS rules; down removes exactly those', async (t) => {
  await withLab({ prefix: uniquePrefix('s') }, async (lab) => {
    t.equal((await lab.exec('server', ['ip', 'tuntap', 'add', 'mode', 'tun', 'name', TUN])).code, 0, 'tun device created');
    // A rule that is not ours: down must leave it alone.
    const other = ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth1', '-j', 'MASQUERADE'];
    t.equal((await lab.exec('server', ['iptables', ...other])).code, 0);

    const env = { TUN, ADDR: '10.8.0.1/24', MTU: '1400', POOL: '10.8.0.0/24', NAT_OUT: 'eth0', MSS_CLAMP: '1' };
    const up = await script(lab, 'server', 'server-init.sh', 'up', env);
    t.equal(up.code, 0, `up succeeds ${up.stderr}`);
    t.match(up.stdout, /^server-init: ip link set dev tun-t mtu 1400$/m, 'prints each action');
    t.match(up.stdout, /^server-init: iptables .*MASQUERADE$/m);

    const link = await lab.exec('server', ['ip', '-o', 'link', 'show', 'dev', TUN]);
    t.match(link.stdout, /mtu 1400/, 'MTU set');
    t.match(link.stdout, /[<,]UP[,>]/, 'link up');
    t.match((await lab.exec('server', ['ip', '-4', '-o', 'addr', 'show', 'dev', TUN])).stdout, 'inet 10.8.0.1/24', 'address set');
    t.equal((await lab.exec('server', ['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim(), '1', 'forwarding on');

    let rules = tagged(await iptablesSave(lab, 'server'));
    t.equal(rules.length, 3, 'three tagged rules');
    t.ok(rules.some((r) => /-A POSTROUTING -s 10\.8\.0\.0\/24 -o eth0 .*-j MASQUERADE/.test(r)), 'masquerade pool out of eth0');
    t.ok(rules.some((r) => /-A FORWARD -i tun-t -p tcp .*SYN,RST SYN .*-j TCPMSS --clamp-mss-to-pmtu/.test(r)), 'MSS clamp from the tunnel');
    t.ok(rules.some((r) => /-A FORWARD -o tun-t -p tcp .*SYN,RST SYN .*-j TCPMSS --clamp-mss-to-pmtu/.test(r)), 'MSS clamp into the tunnel');

    const up2 = await script(lab, 'server', 'server-init.sh', 'up', env);
    t.equal(up2.code, 0, 'second up succeeds');
    t.match(up2.stdout, /already present/);
    t.equal(tagged(await iptablesSave(lab, 'server')).length, 3, 'second up adds no duplicates');

    const down = await script(lab, 'server', 'server-init.sh', 'down', { TUN });
    t.equal(down.code, 0, `down succeeds ${down.stderr}`);
    const after = await iptablesSave(lab, 'server');
    t.same(tagged(after), [], 'every tagged rule is gone');
    t.match(after, /-A POSTROUTING -o eth1 -j MASQUERADE/, 'the rule that is not ours is still there');
    const down2 = await script(lab, 'server', 'server-init.sh', 'down', { TUN });
    t.equal(down2.code, 0, 'down again is fine');
    t.match(down2.stdout, /nothing to remove/);

    // No NAT, no clamping: no rules at all.
    const bare = await script(lab, 'server', 'server-init.sh', 'up', { ...env, NAT_OUT: '', MSS_CLAMP: '0' });
    t.equal(bare.code, 0);
    t.same(tagged(await iptablesSave(lab, 'server')), [], 'NAT_OUT empty and MSS_CLAMP=0 add no rules');

    // The root namespace never sees any of this.
    t.notMatch(execFileSync('iptables-save', { encoding: 'utf8' }), TAG, 'root namespace has no minivpn rules');

    // Bad input: non-zero exit, message naming the field.
    const cases: [Record<string, string>, RegExp][] = [
      [{ ...env, TUN: 'nosuchtun' }, /device 'nosuchtun' does not exist/],
      [{ ...env, TUN: '' }, /TUN must be/],
      [{ ...env, ADDR: '10.8.0.1' }, /ADDR must be/],
      [{ ...env, MTU: 'big' }, /MTU must be/],
      [{ ...env, POOL: '' }, /POOL must be/],
      [{ ...env, NAT_OUT: 'nosuch0' }, /NAT_OUT interface 'nosuch0' does not exist/],
    ];
    for (const [e, re] of cases) {
      const r = await script(lab, 'server', 'server-init.sh', 'up', e);
      t.not(r.code, 0, `refused: ${re}`);
      t.match(r.stderr, re);
    }
    const noAction = await script(lab, 'server', 'server-init.sh', 'sideways', env);
    t.not(noAction.code, 0);
    t.match(noAction.stderr, /usage/);
  });
});

t.test('client-init.sh: full and split tunnel routes, restored exactly by down', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-client-init-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  await withLab({ prefix: uniquePrefix('c') }, async (lab) => {
    t.equal((await lab.exec('client1', ['ip', 'tuntap', 'add', 'mode', 'tun', 'name', TUN])).code, 0, 'tun device created');
    const routes = async () => (await lab.exec('client1', ['ip', 'route', 'show'])).stdout;
    const routeGet = async (dst: string) => (await lab.exec('client1', ['ip', 'route', 'get', dst])).stdout;
    const before = await routes();

    const STATE_DIR = path.join(stateDir, 'full');
    const full = { TUN, ADDR: '10.8.0.2/24', MTU: '1400', ROUTES: '10.9.0.0/24', REDIRECT_GATEWAY: '1', SERVER_IP: ADDR.server, DNS: '10.8.0.1', STATE_DIR };
    const up = await script(lab, 'client1', 'client-init.sh', 'up', full);
    t.equal(up.code, 0, `full-tunnel up succeeds ${up.stderr}`);
    t.match(up.stdout, /^client-init: ip route add 198\.51\.100\.2\/32 via 192\.0\.2\.1 dev eth0$/m, 'prints each action');
    t.match(up.stdout, /DNS pushed by the server: 10\.8\.0\.1 \(not applied/, 'DNS only printed');

    t.match(await routeGet(ADDR.web), /dev tun-t/, 'internet traffic goes into the tunnel');
    t.match(await routeGet(ADDR.lan), /dev tun-t/, 'LAN traffic goes into the tunnel');
    t.match(await routeGet(ADDR.server), /via 192\.0\.2\.1 dev eth0/, 'the server itself is still reached via the old gateway');
    const now = await routes();
    t.match(now, /^198\.51\.100\.2 via 192\.0\.2\.1 dev eth0/m, 'host route to the server');
    t.match(now, /^0\.0\.0\.0\/1 dev tun-t/m);
    t.match(now, /^128\.0\.0\.0\/1 dev tun-t/m);
    t.match(now, /^default via 192\.0\.2\.1 dev eth0/m, 'the default route is untouched');
    t.match((await lab.exec('client1', ['ip', '-o', 'link', 'show', 'dev', TUN])).stdout, /mtu 1400/);

    const again = await script(lab, 'client1', 'client-init.sh', 'up', full);
    t.equal(again.code, 0, 'second up succeeds');
    t.equal((await routes()).split('\n').filter((l) => l.includes('tun-t')).length, now.split('\n').filter((l) => l.includes('tun-t')).length,
      'second up adds nothing twice');

    const down = await script(lab, 'client1', 'client-init.sh', 'down', full);
    t.equal(down.code, 0, `down succeeds ${down.stderr}`);
    t.equal(await routes(), before, 'routes are exactly as before');
    t.notMatch((await lab.exec('client1', ['ip', '-4', 'addr', 'show', 'dev', TUN])).stdout, '10.8.0.2', 'address removed');
    const down2 = await script(lab, 'client1', 'client-init.sh', 'down', full);
    t.equal(down2.code, 0, 'down again is fine');
    t.match(down2.stdout, /already down/);

    // Split tunnel: only the pushed network goes through the tunnel.
    const split = { TUN, ADDR: '10.8.0.2/24', MTU: '1400', ROUTES: '10.9.0.0/24', REDIRECT_GATEWAY: '0', STATE_DIR: path.join(stateDir, 'split') };
    t.equal((await script(lab, 'client1', 'client-init.sh', 'up', split)).code, 0, 'split-tunnel up succeeds');
    t.match(await routeGet(ADDR.lan), /dev tun-t/, 'LAN through the tunnel');
    t.match(await routeGet(ADDR.web), /via 192\.0\.2\.1 dev eth0/, 'internet directly');
    t.equal((await script(lab, 'client1', 'client-init.sh', 'down', split)).code, 0);
    t.equal(await routes(), before, 'routes are exactly as before');

    // Down after the TUN vanished (the VPN closed it): still fine, host route removed.
    t.equal((await script(lab, 'client1', 'client-init.sh', 'up', full)).code, 0);
    await lab.exec('client1', ['ip', 'link', 'del', TUN]);
    const late = await script(lab, 'client1', 'client-init.sh', 'down', full);
    t.equal(late.code, 0, `down after the device is gone succeeds ${late.stderr}`);
    t.notMatch(await routes(), /198\.51\.100\.2/, 'host route to the server removed');
    await lab.exec('client1', ['ip', 'tuntap', 'add', 'mode', 'tun', 'name', TUN]);
    t.equal(await routes(), before);

    // A route that is already there (and not ours) is refused, and nothing is left half-done.
    const clash = { ...split, ROUTES: '10.9.0.0/24 192.0.2.0/24' };
    const bad = await script(lab, 'client1', 'client-init.sh', 'up', clash);
    t.not(bad.code, 0, 'refuses to take over an existing route');
    t.match(bad.stderr, /could not add route 192\.0\.2\.0\/24.*File exists/);
    t.equal((await script(lab, 'client1', 'client-init.sh', 'down', clash)).code, 0);
    t.equal(await routes(), before, 'down after a failed up restores the routes');

    // Bad input: non-zero exit, message naming the field.
    const cases: [Record<string, string>, RegExp][] = [
      [{ ...full, REDIRECT_GATEWAY: '1', SERVER_IP: '' }, /SERVER_IP must be/],
      [{ ...full, REDIRECT_GATEWAY: 'yes' }, /REDIRECT_GATEWAY must be 0 or 1/],
      [{ ...full, ROUTES: '10.9.0.0' }, /ROUTES: '10\.9\.0\.0' is not an IPv4 network/],
      [{ ...full, ADDR: 'x' }, /ADDR must be/],
      [{ ...full, TUN: 'nosuchtun' }, /device 'nosuchtun' does not exist/],
      [{ ...full, DNS: 'dns.example' }, /DNS: 'dns\.example'/],
    ];
    for (const [e, re] of cases) {
      const r = await script(lab, 'client1', 'client-init.sh', 'up', e);
      t.not(r.code, 0, `refused: ${re}`);
      t.match(r.stderr, re);
    }
    t.equal(await routes(), before, 'refused input changed nothing');
  });
});

t.test('server-init.sh with TOPOLOGY=p2p: rules for every link by wildcard, link-up per link, down removes them', async (t) => {
  await withLab({ prefix: uniquePrefix('s') }, async (lab) => {
    const P2P_TAG = 'minivpn:mvt+';
    const env = {
      TOPOLOGY: 'p2p', TUN: 'mvt+', POOL: '10.8.0.0/24', NAT_OUT: '', MSS_CLAMP: '1', CLIENT_TO_CLIENT: '0',
      ADDR6: 'fd6d:7670:6e00::1/64', POOL6: 'fd6d:7670:6e00::/64',
    };
    const up = await script(lab, 'server', 'server-init.sh', 'up', env);
    t.equal(up.code, 0, `up succeeds without a TUN yet: ${up.stderr}`);
    const save = async (cmd: string) => (await lab.exec('server', [cmd])).stdout.split('\n').filter((l) => l.includes(`"${P2P_TAG}"`));
    const v4 = await save('iptables-save');
    t.ok(v4.some((r) => /-A FORWARD -i mvt\+ -o mvt\+ .*-j DROP/.test(r)), 'no forwarding from link to link (CLIENT_TO_CLIENT=0)');
    t.ok(v4.some((r) => /-A FORWARD -i mvt\+ -p tcp .*TCPMSS/.test(r)), 'MSS clamp on every link');
    const v6 = await save('ip6tables-save');
    t.ok(v6.some((r) => /-A PREROUTING -i mvt\+ -m rpfilter --invert .*-j DROP/.test(r)), 'IPv6 reverse-path filter on every link');

    for (const dev of ['mvt0', 'mvt1']) t.equal((await lab.exec('server', ['ip', 'tuntap', 'add', 'mode', 'tun', 'name', dev])).code, 0, `link device ${dev}`);
    // Two links in one run, and two that fail: a device that is not there, a bad line.
    const links = ['mvt0 10.8.0.2 fd6d:7670:6e00::2', 'nosuch0 10.8.0.3 fd6d:7670:6e00::3', 'mvt9 10.8.0.5/24 fd6d:7670:6e00::5', 'mvt1 10.8.0.4 fd6d:7670:6e00::4'];
    const link = { TOPOLOGY: 'p2p', LINKS: links.join('\n'), ADDR: '10.8.0.1', MTU: '1400', ADDR6: 'fd6d:7670:6e00::1' };
    const lu = await script(lab, 'server', 'server-init.sh', 'link-up', link);
    t.equal(lu.code, 0, `link-up succeeds: ${lu.stderr}`);
    t.match(lu.stdout, /^server-init: link-up done for mvt0$/m);
    t.match(lu.stdout, /^server-init: link-up failed for nosuch0: device 'nosuch0' does not exist/m, 'a missing device fails alone');
    t.match(lu.stdout, /^server-init: link-up failed for mvt9: not a link line/m, 'a bad line fails alone');
    t.match(lu.stdout, /^server-init: link-up done for mvt1$/m, 'the link after them is done');
    const addrs = (await lab.exec('server', ['ip', '-o', 'addr', 'show', 'dev', 'mvt0'])).stdout;
    t.match(addrs, /inet 10\.8\.0\.1 peer 10\.8\.0\.2\/32/, 'a /32 pair');
    t.match(addrs, /inet6 fd6d:7670:6e00::1 peer fd6d:7670:6e00::2\/128/, 'and for IPv6');
    t.match((await lab.exec('server', ['ip', '-o', 'link', 'show', 'dev', 'mvt0'])).stdout, /mtu 1400/, 'the MTU');
    t.equal((await lab.exec('server', ['sysctl', '-n', 'net.ipv4.conf.mvt0.rp_filter'])).stdout.trim(), '1', 'rp_filter on the link');
    const again = await script(lab, 'server', 'server-init.sh', 'link-up', { ...link, LINKS: links[0] });
    t.match(again.stdout, /^server-init: link-up done for mvt0$/m, 'link-up twice does no harm');
    const bad = await script(lab, 'server', 'server-init.sh', 'link-up', { ...link, ADDR: '10.8.0.1/24' });
    t.not(bad.code, 0, "the server's address with a prefix length is refused");
    t.match(bad.stderr, /ADDR must be the server's IPv4 address/);
    const badUp = await script(lab, 'server', 'server-init.sh', 'up', { ...env, TUN: 'mvt0' });
    t.match(badUp.stderr, /TUN must be the links' wildcard/, 'up with TOPOLOGY=p2p wants the wildcard');

    const down = await script(lab, 'server', 'server-init.sh', 'down', { TOPOLOGY: 'p2p', TUN: 'mvt+' });
    t.equal(down.code, 0, `down succeeds: ${down.stderr}`);
    t.same([...await save('iptables-save'), ...await save('ip6tables-save')], [], 'every rule of the links is gone');
  });
});
