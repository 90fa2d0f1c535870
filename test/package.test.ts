// The packed tarball installs into an empty prefix (npm install -g), builds the native addon
// there, and runs: `minivpn server --help`, a profile export (its npm dependencies), the addon.
// Offline: the dependencies come from npm's cache (npm ci filled it); node-gyp takes Node's
// headers from npm's nodedir setting.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const ROOT = path.resolve(__dirname, '..', '..');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

function npmEnv(): NodeJS.ProcessEnv {
  // Not the settings of an npm that may be running this test (npm test): a user's own.
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
  return env;
}

t.test('npm pack, then npm install -g into an empty prefix', { timeout: 420_000 }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-pack-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const env = npmEnv();

  // dist/ is built already (npm ci ran "prepare"); pack it as it is.
  const pack = spawnSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8', env, timeout: 120_000 });
  t.equal(pack.status, 0, pack.stderr);
  const tgz = path.join(dir, `minivpn-${VERSION}.tgz`);
  t.ok(fs.existsSync(tgz), 'the tarball');

  const files = spawnSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).stdout.split('\n').filter((f) => f !== '');
  for (const f of ['bin/minivpn.js', 'dist/src/cli/main.js', 'dist/src/server/main.js', 'binding.gyp', 'native/addon.cc',
    'scripts/server-init.sh', 'scripts/systemd/minivpn-server.service', 'scripts/systemd/minivpn-client@.service', 'labs/README.md', 'README.md']) {
    t.ok(files.includes(`package/${f}`), `it holds ${f}`);
  }
  for (const re of [/^package\/dist\/test\//, /^package\/build\//, /^package\/node_modules\//, /^package\/test\//, /\.map$/, /^package\/pki\//]) {
    t.same(files.filter((f) => re.test(f)), [], `nothing matching ${re}`);
  }

  const prefix = path.join(dir, 'prefix');
  const inst = spawnSync('npm', ['install', '-g', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tgz],
    { cwd: dir, encoding: 'utf8', env, timeout: 360_000 });
  t.equal(inst.status, 0, `npm install -g: ${inst.stderr.slice(-2000)}`);
  const pkgDir = path.join(prefix, 'lib', 'node_modules', 'minivpn');
  t.ok(fs.existsSync(path.join(pkgDir, 'build', 'Release', 'minivpn.node')), 'the addon was built at install');

  const bin = path.join(prefix, 'bin', 'minivpn');
  const run = (args: string[], cwd = dir, extra: NodeJS.ProcessEnv = {}) => spawnSync(bin, args, { cwd, encoding: 'utf8', env: { ...env, ...extra }, timeout: 60_000 });
  const v = run(['--version']);
  t.equal(v.status, 0, v.stderr);
  t.match(v.stdout, new RegExp(`^minivpn ${VERSION.replace(/\./g, '\\.')} `));
  const help = run(['server', '--help']);
  t.equal(help.status, 0, help.stderr);
  t.match(help.stdout, /^usage: minivpn server/);

  const addon = spawnSync(process.execPath, ['-e', `const { addon } = require(${JSON.stringify(path.join(pkgDir, 'dist', 'src', 'native.js'))}); console.log(typeof addon.DtlsContext)`], { encoding: 'utf8' });
  t.equal(addon.stdout.trim(), 'function', `the installed addon loads ${addon.stderr}`);

  // Its dependencies: the certificate library (pki) and the QR code (export --qr).
  t.equal(run(['pki', '--clients', 'alice']).status, 0, 'minivpn pki');
  const qr = run(['pki', 'export', 'alice', '--server', '192.0.2.1:1194', '--qr'], dir, { COLUMNS: '300' });
  t.equal(qr.status, 0, qr.stderr);
  t.match(qr.stdout, /█/, 'a QR code');
});
