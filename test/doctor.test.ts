// `minivpn doctor`: every check passes on the lab's server namespace, and each one, broken
// for real (a hidden /dev/net/tun, a capability dropped, a read-only /proc/sys, a smaller
// underlay MTU, a busy port, an expired certificate...), fails with its advice.
import t, { Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { withLab, uniquePrefix, ADDR, Lab } from '../src/lab/topology';
import { issueCert, makeCA } from '../src/pki/pki';
import { vpnFixture, serverArgs, exited, VpnFixture } from './helpers/vpn';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'minivpn.js');
const SERVER_CHECKS = ['/dev/net/tun', 'CAP_NET_ADMIN', 'ip_forward', 'iptables', 'MTU', 'UDP port', 'clock', 'certificate chain', 'key pair', 'authorized dir'];

interface Report { code: number; lines: Map<string, string>; out: string }

/** Runs the doctor in `host`, behind `wrap` (a command that runs its arguments), with `args`. */
async function doctor(lab: Lab, host: string, args: string[], o: { wrap?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<Report> {
  const r = await lab.exec(host, [...(o.wrap ?? []), process.execPath, BIN, 'doctor', ...args], { env: o.env, timeoutMs: 30_000 });
  const lines = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const m = /^(?:ok  |FAIL)  (.{17}) /.exec(line);
    if (m) lines.set(m[1].trim(), line);
  }
  return { code: r.code, lines, out: r.stdout + r.stderr };
}

/** `name` fails with advice matching `advice`; with othersPass, every other check passes. */
function failsWith(t: Test, rep: Report, name: string, detail: RegExp, advice: RegExp, othersPass = true): void {
  t.equal(rep.code, 1, `${name}: exit status 1`);
  const line = rep.lines.get(name) ?? '';
  t.match(line, new RegExp(`^FAIL  ${name.replace(/[/]/g, '\\/')}\\s+`), `${name} fails`);
  t.match(line, detail, `${name}: what is wrong`);
  t.match(line, new RegExp(`-> fix: .*${advice.source}`), `${name}: how to fix it`);
  if (othersPass) {
    const others = [...rep.lines].filter(([k, l]) => k !== name && !l.startsWith('ok  '));
    t.same(others, [], `${name}: every other check passes`);
  }
}

/** A copy of the fixture's PKI with the server's certificate (and key) replaced. */
function variant(f: VpnFixture, name: string, cert: string, key: string): string[] {
  const dir = path.join(f.dir, name);
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'server.crt'), cert);
  fs.writeFileSync(path.join(dir, 'server.key'), key, { mode: 0o600 });
  return ['--cert', path.join(dir, 'server.crt'), '--key', path.join(dir, 'server.key')];
}

t.test('minivpn doctor', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  const args = ['server', ...serverArgs(f)];
  const ca = { certPem: fs.readFileSync(`${f.pki}/ca.crt`, 'utf8'), keyPem: fs.readFileSync(`${f.pki}/ca.key`, 'utf8') };
  const day = 86_400_000;
  const server = (o: { notBefore?: Date; notAfter?: Date } = {}) => issueCert(ca, { cn: 'server.minivpn.test', kind: 'server', ...o });

  await withLab({ prefix: uniquePrefix('doc'), clients: 1 }, async (lab) => {
    await t.test('every check passes on the lab\'s server namespace', async (t) => {
      const rep = await doctor(lab, 'server', args);
      t.equal(rep.code, 0, rep.out);
      t.same([...rep.lines.keys()], SERVER_CHECKS, 'one line per check, in order');
      for (const [k, l] of rep.lines) t.match(l, /^ok  /, k);
      t.match(rep.out, /doctor: all 10 checks pass \(server\)/);
      t.match(rep.lines.get('MTU')!, /tunnel MTU 1434 fits: eth0 \(has 198\.51\.100\.2\) has MTU 1500/);
    });

    await t.test('and for a client with its profile', async (t) => {
      const profile = path.join(f.dir, 'alice.conf');
      const exp = spawnSync(process.execPath, [BIN, 'pki', 'export', 'alice', '--out', f.pki, '--server', `${ADDR.server}:1194`, '--output', profile], { encoding: 'utf8' });
      t.equal(exp.status, 0, exp.stderr);
      const rep = await doctor(lab, 'client1', ['client', '--profile', profile]);
      t.equal(rep.code, 0, rep.out);
      t.same([...rep.lines.keys()], ['/dev/net/tun', 'CAP_NET_ADMIN', 'clock', 'certificate chain', 'key pair']);
    });

    await t.test('/dev/net/tun missing', async (t) => {
      // A private mount namespace where /dev/net is an empty tmpfs (as in a container without the device).
      const wrap = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs none /dev/net && exec "$@"', 'sh'];
      failsWith(t, await doctor(lab, 'server', args, { wrap }), '/dev/net/tun', /\/dev\/net\/tun is missing \(ENOENT\)/, /modprobe tun; in a container, pass the device/);
    });

    await t.test('CAP_NET_ADMIN missing', async (t) => {
      const wrap = ['setpriv', '--bounding-set', '-net_admin', '--'];
      // (iptables then fails too: it needs the capability as well.)
      failsWith(t, await doctor(lab, 'server', args, { wrap }), 'CAP_NET_ADMIN', /lacks it/, /run as root \(sudo minivpn \.\.\.\); in a container: --cap-add NET_ADMIN/, false);
    });

    await t.test('ip_forward off and not settable', async (t) => {
      t.equal((await lab.exec('server', ['sysctl', '-qw', 'net.ipv4.ip_forward=0'])).code, 0);
      const settable = await doctor(lab, 'server', args);
      t.match(settable.lines.get('ip_forward')!, /^ok .*off now; the server turns it on when it starts/);
      // /proc/sys read-only, as in a container.
      const wrap = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
        'mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$@"', 'sh'];
      failsWith(t, await doctor(lab, 'server', args, { wrap }), 'ip_forward', /off, and the server cannot turn it on \(.*EROFS\)/,
        /sysctl -w net\.ipv4\.ip_forward=1/);
    });

    await t.test('iptables missing, or not working', async (t) => {
      failsWith(t, await doctor(lab, 'server', args, { env: { ...process.env, IPTABLES: 'iptables-nonexistent' } }),
        'iptables', /iptables-nonexistent not found/, /apt-get install iptables/);
      failsWith(t, await doctor(lab, 'server', args, { env: { ...process.env, IPTABLES: '/bin/false' } }),
        'iptables', /\/bin\/false does not work here/, /modprobe nf_tables/);
    });

    await t.test('the underlay MTU is smaller than the tunnel needs', async (t) => {
      t.equal((await lab.exec('server', ['ip', 'link', 'set', 'eth0', 'mtu', '1400'])).code, 0);
      try {
        failsWith(t, await doctor(lab, 'server', args), 'MTU', /tunnel MTU 1434 is too large: eth0 \(has 198\.51\.100\.2\) has MTU 1400, which fits a tunnel MTU of 1334 at most/,
          /tell the server: --underlay-mtu 1400/);
      } finally {
        await lab.exec('server', ['ip', 'link', 'set', 'eth0', 'mtu', '1500']);
      }
      failsWith(t, await doctor(lab, 'server', [...args, '--mtu', '1480']), 'MTU', /tunnel MTU 1480 is too large/, /lower it: --mtu 1434/);
    });

    await t.test('the UDP port is taken, or not an address of this host', async (t) => {
      const holder = lab.spawn('server', [process.execPath, '-e',
        `const s=require('dgram').createSocket('udp4'); s.bind(1194, '${ADDR.server}', () => console.log('bound'))`]);
      await lab.waitForLine(holder, /bound/, 10000);
      try {
        failsWith(t, await doctor(lab, 'server', args), 'UDP port', /UDP 198\.51\.100\.2:1194 is in use by another program/, /stop it .*or choose another port: --listen/);
      } finally {
        holder.kill('SIGTERM');
        await exited(holder, 5000);
      }
      // (Not an address here: the MTU check cannot find its interface either.)
      failsWith(t, await doctor(lab, 'server', [...args, '--listen', '198.51.100.9:1194']), 'UDP port',
        /198\.51\.100\.9 is not an address of this machine/, /--listen \[::\]:1194/, false);
    });

    await t.test('the clock against the certificates', async (t) => {
      const expired = await server({ notBefore: new Date(Date.now() - 9 * day), notAfter: new Date(Date.now() - day) });
      failsWith(t, await doctor(lab, 'server', [...args, ...variant(f, 'expired', expired.certPem, expired.keyPem)]), 'clock',
        /server\.crt expired on \d{4}-\d\d-\d\dT[\d:]+Z \(this machine's clock says/, /if the clock is right, get new certificates: minivpn pki/);
      const early = await server({ notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 9 * day) });
      failsWith(t, await doctor(lab, 'server', [...args, ...variant(f, 'early', early.certPem, early.keyPem)]), 'clock',
        /server\.crt is not valid before .*and this machine's clock says/, /set the clock: timedatectl set-ntp true/);
    });

    await t.test('the certificate chain', async (t) => {
      const other = await makeCA({ cn: 'some other CA' });
      const rogue = await issueCert(other, { cn: 'server.minivpn.test', kind: 'server' });
      failsWith(t, await doctor(lab, 'server', [...args, ...variant(f, 'rogue', rogue.certPem, rogue.keyPem)]), 'certificate chain',
        /server\.crt was not signed by .*ca\.crt \(it belongs to another CA: issued by "CN=some other CA"\)/, /use the CA that signed it/);
    });

    await t.test('the key pair', async (t) => {
      const fresh = await server();
      failsWith(t, await doctor(lab, 'server', [...args, ...variant(f, 'mismatch', fs.readFileSync(`${f.pki}/server.crt`, 'utf8'), fresh.keyPem)]), 'key pair',
        /server\.key does not match .*server\.crt/, /give the key made with the certificate/);
    });

    await t.test('the authorized clients directory', async (t) => {
      failsWith(t, await doctor(lab, 'server', [...args, '--authorized-dir', path.join(f.dir, 'nowhere')]), 'authorized dir',
        /nowhere does not exist/, /mkdir -p .*nowhere; touch .*nowhere\/NAME/);
      // The server reads it again after dropping to --user (on SIGHUP): the test dir is 0700 root.
      failsWith(t, await doctor(lab, 'server', [...args, '--user', 'nobody']), 'authorized dir',
        /user nobody cannot read it, and the server runs as nobody after it starts/, /chmod 755 /);
    });
  });
});
