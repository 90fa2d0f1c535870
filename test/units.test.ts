// The systemd units in scripts/systemd: systemd-analyze verifies them, and their ExecStart and
// ExecReload lines run in the namespace lab exactly as written (specifiers pointing into a
// temporary root, "minivpn" on PATH as npm install -g puts it there): the server starts from
// /etc/minivpn/server.json, a client starts from /etc/minivpn/alice.conf and brings the
// tunnel up, and a reload disconnects a client no longer authorized.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { withLab, uniquePrefix, ADDR } from '../src/lab/topology';
import { writeLabPki } from '../src/pki/pki';
import { exited } from './helpers/vpn';
import { commandLine, expandSpecifiers, readUnit, value } from './helpers/unit-file';

const ROOT = path.resolve(__dirname, '..', '..');
const UNITS = path.join(ROOT, 'scripts', 'systemd');
const BIN = path.join(ROOT, 'bin', 'minivpn.js');
const SERVER_UNIT = path.join(UNITS, 'minivpn-server.service');
const CLIENT_UNIT = path.join(UNITS, 'minivpn-client@.service');

/** systemd-analyze, installed if missing (Debian package "systemd"; PID 1 need not be systemd). */
function systemdAnalyze(): string {
  const have = () => spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
  if (!have()) {
    const r = spawnSync('sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd'], { encoding: 'utf8', timeout: 300_000 });
    if (r.status !== 0) throw new Error(`systemd-analyze is missing and apt-get install systemd failed: ${r.stderr}`);
  }
  return have();
}

t.test('systemd-analyze verify accepts both units, without a warning', async (t) => {
  const sa = systemdAnalyze();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-units-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.copyFileSync(CLIENT_UNIT, path.join(dir, 'minivpn-client@.service'));
  // The template, and an instance of it (the name systemctl would be given).
  for (const unit of [SERVER_UNIT, path.join(dir, 'minivpn-client@.service'), path.join(dir, 'minivpn-client@alice.service')]) {
    const r = spawnSync(sa, ['verify', unit], { encoding: 'utf8' });
    t.equal(r.status, 0, `${path.basename(unit)}: exit 0`);
    t.equal(r.stderr.trim(), '', `${path.basename(unit)}: no warning`);
  }
});

t.test('the units ask for the sandbox and restart policy a VPN service should have', async (t) => {
  for (const file of [SERVER_UNIT, CLIENT_UNIT]) {
    const u = readUnit(file);
    const name = path.basename(file);
    t.equal(value(u, 'Service', 'ProtectSystem'), 'strict', `${name}: ProtectSystem=strict`);
    t.equal(value(u, 'Service', 'ProtectHome'), 'yes', `${name}: ProtectHome`);
    t.equal(value(u, 'Service', 'PrivateTmp'), 'yes', `${name}: PrivateTmp`);
    t.equal(value(u, 'Service', 'Restart'), 'on-failure', `${name}: Restart=on-failure`);
    t.equal(value(u, 'Service', 'RestartPreventExitStatus'), '2', `${name}: no restart loop on a configuration error`);
    t.match(value(u, 'Service', 'RuntimeDirectory'), /^minivpn/, `${name}: a RuntimeDirectory`);
    const caps = value(u, 'Service', 'CapabilityBoundingSet').split(/\s+/);
    t.ok(caps.includes('CAP_NET_ADMIN'), `${name}: CAP_NET_ADMIN bounded in`);
    t.notOk(caps.some((c) => c === 'CAP_SYS_ADMIN' || c.startsWith('~')), `${name}: nothing broad`);
  }
  t.equal(value(readUnit(SERVER_UNIT), 'Service', 'RuntimeDirectory'), 'minivpn');
});

t.test('ExecStart and ExecReload run as written', { timeout: 180_000 }, async (t) => {
  // A temporary root for systemd's directories: %E=/etc, %S=/var/lib, %t=/run.
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-units-root-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const spec = { E: path.join(root, 'etc'), S: path.join(root, 'var/lib'), t: path.join(root, 'run') };
  const server = readUnit(SERVER_UNIT);
  const client = readUnit(CLIENT_UNIT);
  // What systemd makes before ExecStart: ConfigurationDirectory, StateDirectory, RuntimeDirectory.
  for (const [base, key, u, i] of [[spec.E, 'ConfigurationDirectory', server], [spec.S, 'StateDirectory', server],
    [spec.t, 'RuntimeDirectory', server], [spec.t, 'RuntimeDirectory', client, 'alice']] as const) {
    fs.mkdirSync(path.join(base, expandSpecifiers(value(u, 'Service', key), { ...spec, i })), { recursive: true, mode: 0o700 });
  }
  const etc = path.join(spec.E, 'minivpn');
  await writeLabPki(path.join(etc, 'pki'), { clients: ['alice'], serverName: 'server.minivpn.test', days: 30 });
  fs.writeFileSync(path.join(etc, 'server.json'), JSON.stringify({
    listen: `${ADDR.server}:1194`, routes: ['10.9.0.0/24'], keepaliveSec: 1, timeoutSec: 5,
  }));
  const exp = spawnSync(process.execPath, [BIN, 'pki', 'export', 'alice', '--server', `${ADDR.server}:1194`,
    '--set', 'reconnect-max-sec=2', '--output', 'alice.conf'], { cwd: etc, encoding: 'utf8' });
  t.equal(exp.status, 0, exp.stderr);

  // "minivpn" on PATH, as npm install -g puts it; node for its #! line. systemd's own PATH after.
  const bin = path.join(root, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(BIN, path.join(bin, 'minivpn'));
  const env = { ...process.env, PATH: `${bin}:${path.dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin` };

  await withLab({ prefix: uniquePrefix('unit'), clients: 1 }, async (lab) => {
    const serverCmd = commandLine(value(server, 'Service', 'ExecStart'), spec, {});
    t.same(serverCmd.slice(0, 3), ['/usr/bin/env', 'minivpn', 'server']);
    const cwd = expandSpecifiers(value(server, 'Service', 'WorkingDirectory'), spec);
    const srv = lab.spawn('server', serverCmd, { cwd, env });
    await lab.waitForLine(srv, /listening on udp/, 15000);
    t.ok(fs.existsSync(path.join(spec.t, 'minivpn', 'minivpn.sock')), 'the status socket is in the RuntimeDirectory');

    // systemd starts a service in / unless told otherwise: the client unit must not need a directory.
    t.notOk(client.get('Service')!.has('WorkingDirectory'));
    const clientCmd = commandLine(value(client, 'Service', 'ExecStart'), { ...spec, i: 'alice' }, {});
    t.same(clientCmd.slice(0, 3), ['/usr/bin/env', 'minivpn', 'client']);
    const cli = lab.spawn('client1', clientCmd, { cwd: '/', env });
    await lab.waitForLine(cli, /tunnel up: /, 15000);
    const ping = await lab.exec('client1', ['ping', '-c', '1', '-W', '2', ADDR.lan]);
    t.equal(ping.code, 0, 'the LAN behind the server answers through the tunnel');
    t.ok(fs.existsSync(path.join(spec.S, 'minivpn', 'leases.json')), 'the leases are in the StateDirectory');
    const st = spawnSync(process.execPath, [BIN, 'status', '--socket', path.join(spec.t, 'minivpn', 'minivpn.sock')], { encoding: 'utf8' });
    t.match(st.stdout, /^alice\s+10\.8\.0\.\d+/m, 'minivpn status lists alice');

    // systemctl reload: ExecReload with $MAINPID, in the server's namespace.
    fs.rmSync(path.join(etc, 'pki', 'authorized', 'alice'));
    const reload = commandLine(value(server, 'Service', 'ExecReload'), spec, { MAINPID: String(srv.pid) });
    const r = await lab.exec('server', reload, { env });
    t.equal(r.code, 0, `${reload.join(' ')}: exit 0 ${r.stderr}`);
    await lab.waitForLine(srv, /authorized clients reloaded .*removed=alice/, 10000);
    await lab.waitForLine(cli, /not authorized/, 15000);
    t.equal(await exited(cli, 15000), 1, 'the client no longer authorized gives up (exit 1: systemd would restart it)');
    t.equal(srv.exitCode, null, 'the server keeps running after a reload');
    srv.kill('SIGTERM');
    t.equal(await exited(srv, 15000), 0, 'SIGTERM (systemctl stop) stops the server cleanly');
  });
});
