// The `minivpn` command: every program behind one name, from the clone (npx minivpn) and
// through the npm scripts, with --version, help and a clear word for a mistyped command.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import os from 'node:os';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'minivpn.js');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const COMMANDS = ['server', 'client', 'status', 'pki', 'lab', 'demo', 'doctor'];

const minivpn = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });

t.test('npx minivpn runs the project\'s own command', { timeout: 290_000 }, async (t) => {
  t.ok(fs.statSync(BIN).mode & 0o111, 'bin/minivpn.js is executable');
  // A cache of its own: npx installs the project itself into its cache the first time (the
  // addon is built then: install work, a minute or two on a loaded machine), and a half-made
  // entry there (an npx killed at the wrong moment) would fail every later run on this machine.
  const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-npx-'));
  t.teardown(() => fs.rmSync(cache, { recursive: true, force: true }));
  const r = spawnSync('npx', ['--no-install', 'minivpn', '--version'], { cwd: ROOT, encoding: 'utf8', timeout: 280_000, env: { ...process.env, npm_config_cache: cache } });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, `minivpn ${VERSION} (Node.js ${process.version}, OpenSSL ${process.versions.openssl})\n`);
});

t.test('help: the commands, and each command\'s options', { timeout: 120_000 }, async (t) => {
  const none = minivpn([]);
  t.equal(none.status, 2, 'no command: exit 2');
  for (const c of COMMANDS) t.match(none.stderr, new RegExp(`^  ${c} +\\S`, 'm'), `the overview lists ${c}`);
  const help = minivpn(['help']);
  t.equal(help.status, 0);
  t.equal(help.stdout, none.stderr, 'help prints the same overview');
  for (const c of COMMANDS) {
    const h = minivpn(['help', c]);
    t.equal(h.status, 0, `help ${c}: exit 0`);
    t.match(h.stdout, new RegExp(`usage: (sudo )?minivpn ${c}`), `help ${c}: its usage`);
    t.equal(minivpn([c, '--help']).stdout, h.stdout, `${c} --help is the same`);
  }
  t.match(minivpn(['help', 'client']).stdout, /--profile FILE +one-file profile from "minivpn pki export"/);
  t.match(minivpn(['help', 'pki']).stdout, /minivpn pki export NAME --server HOST:PORT > NAME\.conf/);
});

t.test('a mistyped command or option is an error that says what to do', async (t) => {
  const r = minivpn(['serve']);
  t.equal(r.status, 2);
  t.equal(r.stderr, 'minivpn: unknown command "serve" (did you mean server?); the commands: minivpn help\n');
  const d = minivpn(['demo', '--kep']);
  t.equal(d.status, 2);
  t.match(d.stderr, /minivpn demo: unknown option "--kep"/);
  const s = minivpn(['server', '--pool', '10.8.0/24']);
  t.equal(s.status, 2, 'a server config error: exit 2, as before');
  t.match(s.stderr, /config: "pool": expected an IPv4 CIDR like 10\.8\.0\.0\/24, got "10\.8\.0\/24" \(flag --pool\)/);
  const st = minivpn(['status', '--socket', '/nonexistent/x.sock']);
  t.equal(st.status, 1, 'status without a server: exit 1');
});

t.test('the npm scripts call the command', { timeout: 120_000 }, async (t) => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> };
  t.same(pkg.bin, { minivpn: 'bin/minivpn.js' });
  for (const c of ['server', 'client', 'status', 'pki', 'doctor']) t.equal(pkg.scripts[c], `node bin/minivpn.js ${c}`, `npm run ${c}`);
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('npm_')) delete env[k];
  const r = spawnSync('npm', ['run', '--silent', 'server', '--', '--help'], { cwd: ROOT, encoding: 'utf8', env, timeout: 60_000 });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^usage: minivpn server \[options\] \[-- PROG ARGS...\] +\(or: npm run server -- \[options\] \[-- PROG ARGS...\]\)/);
});
