// One-file client profiles (src/profile): the format, the checks a profile must pass before
// the client sends anything, `minivpn pki export` (mode 0600, also through a redirect) and
// its QR code. The tunnel brought up by a profile: profile-vpn.test.ts.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { issueCert, makeCA, writeLabPki } from '../src/pki/pki';
import { formatProfile, parseProfile, ProfileError } from '../src/profile/format';
import { loadProfile } from '../src/profile/load';
import { drawQr, qrFor, qrModules } from '../src/profile/qr';
import { parseClientArgs } from '../src/config';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'minivpn.js');

function tmpdir(t: { teardown(fn: () => void): unknown }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-profile-t-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/** `minivpn ARGS` in `cwd` through a shell, umask 022 (a redirect then makes 0644 files). */
function sh(cmd: string, cwd: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync('sh', ['-c', `umask 022; ${cmd}`], { cwd, encoding: 'utf8', env: { ...process.env, MINIVPN: `${process.execPath} ${BIN}`, ...env } });
}

async function pkiIn(dir: string) {
  await writeLabPki(path.join(dir, 'pki'), { clients: ['alice', 'bob'], serverName: 'vpn.example.test', days: 30 });
  return path.join(dir, 'pki');
}

const modeOf = (f: string) => (fs.statSync(f).mode & 0o777).toString(8);

t.test('pki export writes one 0600 file that the client reads back', async (t) => {
  const dir = tmpdir(t);
  await pkiIn(dir);
  const r = sh('$MINIVPN pki export alice --server 198.51.100.2:1194 --set reconnect-max-sec=5 --set udp-gso > alice.conf', dir);
  t.equal(r.status, 0, r.stderr);
  const file = path.join(dir, 'alice.conf');
  t.equal(modeOf(file), '600', 'the file the shell created for the redirect was made 0600');
  const text = fs.readFileSync(file, 'utf8');
  t.match(text, /^# minivpn client profile for alice/);
  t.match(text, /^server 198\.51\.100\.2:1194$/m);
  t.match(text, /^server-name vpn\.example\.test$/m, 'the server name comes from pki/server.crt');
  t.match(text, /^<key>\n-----BEGIN PRIVATE KEY-----\n/m);
  t.equal(text.match(/-----BEGIN CERTIFICATE-----/g)!.length, 2, 'the CA and the certificate');

  const loaded = loadProfile(['--profile', file, '--tun-name', 'mv9'])!;
  t.teardown(() => loaded.cleanup());
  const cfg = parseClientArgs(loaded.argv, {});
  t.same(cfg.server, { host: '198.51.100.2', port: 1194 });
  t.equal(cfg.serverName, 'vpn.example.test');
  t.equal(cfg.reconnectMaxSec, 5);
  t.equal(cfg.udpGso, true);
  t.equal(cfg.tunName, 'mv9', 'flags after the profile override it');
  t.equal(fs.readFileSync(cfg.key, 'utf8'), fs.readFileSync(path.join(dir, 'pki/clients/alice.key'), 'utf8'), 'the key, as written');
  t.equal(modeOf(cfg.key), '600');
  t.equal(modeOf(path.dirname(cfg.key)), '700');
  loaded.cleanup();
  t.notOk(fs.existsSync(path.dirname(cfg.key)), 'cleanup removes the temporary credentials');

  const o = sh('$MINIVPN pki export alice --server vpn.example.test --output out/alice.conf', dir);
  t.not(o.status, 0, 'a missing directory is an error');
  fs.mkdirSync(path.join(dir, 'out'));
  const o2 = sh('$MINIVPN pki export alice --server vpn.example.test --output out/alice.conf', dir);
  t.equal(o2.status, 0, o2.stderr);
  t.equal(modeOf(path.join(dir, 'out/alice.conf')), '600', '--output makes a 0600 file');
  t.match(o2.stderr, /written: out\/alice\.conf \(mode 0600\)/);
});

t.test('pki export refuses what would not work, and says why', async (t) => {
  const dir = tmpdir(t);
  await pkiIn(dir);
  fs.rmSync(path.join(dir, 'pki/authorized/bob'));
  const cases: [string, RegExp][] = [
    ['$MINIVPN pki export alice', /--server HOST:PORT is required/],
    ['$MINIVPN pki export carol --server 192.0.2.1', /no certificate for carol in pki\/clients: make one with: minivpn pki --out pki --clients carol/],
    ['$MINIVPN pki export alice --server 192.0.2.1 --set bogus=1', /the profile's options: unknown flag --bogus/],
    ['$MINIVPN pki export alice --server 192.0.2.1:99999', /"server": expected an address like/],
    ['$MINIVPN pki export alice --server 192.0.2.1 --set key=/etc/shadow', /"key" is not allowed in a profile/],
    ['$MINIVPN pki export ../alice --server 192.0.2.1', /bad client name/],
    ['$MINIVPN pki export alice --server 192.0.2.1 --set "reconnect-max-sec=5\nkeylog /tmp/k"', /a value may not hold control characters/],
  ];
  for (const [cmd, re] of cases) {
    const r = sh(`${cmd} > /dev/null`, dir);
    t.not(r.status, 0, cmd);
    t.match(r.stderr, re, cmd);
  }
  const bob = sh('$MINIVPN pki export bob --server 192.0.2.1 > /dev/null', dir);
  t.equal(bob.status, 0, 'a client not yet authorized gets a profile...');
  t.match(bob.stderr, /bob is not in pki\/authorized; the server refuses bob until: touch pki\/authorized\/bob/, '...and a note');
});

/** A valid profile's parts, and a way to write variants of it. */
async function parts() {
  const ca = await makeCA();
  const alice = await issueCert(ca, { cn: 'alice', kind: 'client' });
  return { ca, alice, text: (o: { ca?: string; cert?: string; key?: string; extra?: string } = {}) => formatProfile({
    comments: ['test'],
    options: [{ flag: 'server', value: '192.0.2.1:1194' }, { flag: 'name', value: 'alice' }],
    ca: o.ca ?? ca.certPem, cert: o.cert ?? alice.certPem, key: o.key ?? alice.keyPem,
  }) + (o.extra ?? '') };
}

t.test('a bad profile is refused before anything is sent, with the reason', async (t) => {
  const dir = tmpdir(t);
  const p = await parts();
  const other = await makeCA({ cn: 'another CA' });
  const day = 86_400_000;
  const expired = await issueCert(p.ca, { cn: 'alice', kind: 'client', notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) });
  const future = await issueCert(p.ca, { cn: 'alice', kind: 'client', notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 10 * day) });
  const rogue = await issueCert(other, { cn: 'alice', kind: 'client' });
  const bob = await issueCert(p.ca, { cn: 'bob', kind: 'client' });
  const cases: [string, string, RegExp][] = [
    ['mismatch', p.text({ key: bob.keyPem }), /refused: its key does not match its certificate/],
    ['expired', p.text({ cert: expired.certPem, key: expired.keyPem }), /refused: its certificate expired on \d{4}-\d\d-\d\dT[\d:]+Z \(this machine's clock says/],
    ['not-yet', p.text({ cert: future.certPem, key: future.keyPem }), /refused: its certificate is not valid before \d{4}-\d\d-\d\dT[\d:]+Z, and this machine's clock says/],
    ['other-ca', p.text({ cert: rogue.certPem, key: rogue.keyPem }), /refused: its certificate was not signed by its CA \(it belongs to another CA: issued by "CN=another CA"\)/],
    ['ca-not-ca', p.text({ ca: bob.certPem }), /refused: its CA is not a CA certificate/],
  ];
  const tmpBefore = new Set(fs.readdirSync(os.tmpdir()));
  for (const [name, text, re] of cases) {
    const file = path.join(dir, `${name}.conf`);
    fs.writeFileSync(file, text, { mode: 0o600 });
    t.throws(() => loadProfile(['--profile', file]), re, name);
    // And through the command, as root would run it: exit 2, nothing started.
    const r = spawnSync(process.execPath, [BIN, 'client', '--profile', file], { encoding: 'utf8', timeout: 20_000 });
    t.equal(r.status, 2, `${name}: exit 2`);
    t.match(r.stderr, re, `${name}: the reason`);
    t.notMatch(r.stdout + r.stderr, /connecting to/, `${name}: no connection attempt`);
  }
  const left = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith('minivpn-profile-') && !tmpBefore.has(f));
  t.same(left, [], 'no credentials were written for a refused profile');
});

t.test('the format: errors name the line and say what was expected', async (t) => {
  const p = await parts();
  const good = p.text();
  t.ok(parseProfile(good, 'x'), 'the valid profile parses');
  const cases: [string, RegExp][] = [
    [good.replace('</cert>\n', ''), /line \d+: <cert> is not closed by <\/cert>/],
    [good.replace('<ca>', '<cacert>'), /line \d+: unknown block <cacert> \(expected <ca>, <cert> or <key>\)/],
    [good + '<ca>\n' + p.ca.certPem + '</ca>\n', /line \d+: a second <ca> block \(the first is on line \d+\)/],
    [good.replace('server 192.0.2.1:1194\n', ''), /no "server" line/],
    [good.replace(/<key>[^]*<\/key>\n/, ''), /no <key> block/],
    [good.replace('name alice', 'name alice\nname bob'), /line 4: "name" is given twice \(first on line 3\)/],
    [good.replace('name alice', 'cert /etc/ssl/x.crt'), /line 3: "cert" is not allowed in a profile: the certificate goes in a <cert> block/],
    [good.replace('name alice', 'config other.json'), /"config" is not allowed in a profile/],
    [good.replace('name alice', '--name alice'), /line 3: expected an option like "server 192\.0\.2\.1:1194"/],
    [good.replace(/-----BEGIN CERTIFICATE-----\n/, '-----BEGIN CERTIFICATE-----\n***\n'), /the <ca> block does not hold one PEM block/],
    ['x'.repeat(70_000), /more than a profile can be/],
  ];
  for (const [text, re] of cases) t.throws(() => parseProfile(text, 'bad.conf'), re);
  t.throws(() => parseProfile('', 'x'), ProfileError, 'a ProfileError (a ConfigError: exit status 2)');

  // Option values go through the client's parser; the error names the profile's line.
  const dir = tmpdir(t);
  const write = (name: string, text: string) => { const f = path.join(dir, name); fs.writeFileSync(f, text, { mode: 0o600 }); return f; };
  t.throws(() => loadProfile(['--profile', write('a.conf', good.replace('name alice', 'reconnect-max-sec 0'))]),
    /profile .*a\.conf line 3: "reconnectMaxSec": expected a number of seconds from 0\.1 to 3600, got 0$/);
  t.throws(() => loadProfile(['--profile', write('b.conf', good.replace('name alice', 'tun-nam mvx'))]),
    /b\.conf line 3: unknown flag --tun-nam \(did you mean --tun-name\?\)$/);
  t.throws(() => loadProfile(['--profile', write('c.conf', good), '--cert', 'x.crt']), /--cert cannot be used with --profile/);
  t.throws(() => loadProfile(['--profile', path.join(dir, 'missing.conf')]), /missing\.conf: cannot read it: ENOENT/);
  const open = loadProfile(['--profile', write('d.conf', good)])!;
  open.cleanup();
  t.same(open.warnings, [], 'a 0600 profile: no warning');
  fs.chmodSync(path.join(dir, 'd.conf'), 0o644);
  const loose = loadProfile(['--profile', path.join(dir, 'd.conf')])!;
  loose.cleanup();
  t.match(loose.warnings[0], /can be read by others \(mode 0644\); it holds a private key: chmod 600/);
  t.equal(loadProfile(['--server', '192.0.2.1']), null, 'no --profile: nothing to do');
});

t.test('--qr prints the profile as a QR code only if it fits', async (t) => {
  const dir = tmpdir(t);
  await pkiIn(dir);
  const wide = sh('$MINIVPN pki export alice --server 198.51.100.2:1194 --qr', dir, { COLUMNS: '300' });
  t.equal(wide.status, 0, wide.stderr);
  t.match(wide.stderr, /as a QR code \(version \d+, (\d+) columns\)/);
  const columns = Number(/(\d+) columns/.exec(wide.stderr)![1]);
  const narrow = sh('$MINIVPN pki export alice --server 198.51.100.2:1194 --qr', dir, { COLUMNS: String(columns - 1) });
  t.equal(narrow.status, 1);
  t.match(narrow.stderr, new RegExp(`no QR code: it needs a terminal ${columns} columns wide, this one has ${columns - 1}`));
  t.equal(narrow.stdout, '', 'nothing half-drawn');

  // What was drawn is the code of the (comment-free) profile: read the modules back.
  // eslint-disable-next-line no-control-regex
  const lines = wide.stdout.replace(/\x1b\[[0-9;]*m/g, '').split('\n').filter((l) => l !== '');
  const size = lines[0].length;
  const dark = (r: number, c: number) => { const ch = lines[r >> 1][c]; return ch === '█' || (r % 2 === 0 ? ch === '▀' : ch === '▄'); };
  t.ok(size > 100, `a large code (${size} columns)`);
  // Re-encode the same text the command encoded: the profile without comments.
  const loaded = sh('$MINIVPN pki export alice --server 198.51.100.2:1194', dir).stdout.split('\n').filter((l) => !l.startsWith('#') && l !== '').join('\n') + '\n';
  const q = qrModules(loaded);
  let same = q.size + 4 === size;
  for (let r = 0; same && r < q.size; r++) for (let c = 0; c < q.size; c++) if (q.dark(r, c) !== dark(r + 2, c + 2)) { same = false; break; }
  t.ok(same, 'the terminal shows exactly the modules of the profile\'s QR code');

  const tooBig = qrFor('x'.repeat(3000), null);
  t.equal(tooBig.ok, false);
  t.match(!tooBig.ok && tooBig.why, /too large for a QR code/);
  t.equal(drawQr({ size: 1, dark: () => true }).join('\n'), '     \n  ▀  \n     ', 'half blocks: one dark module with its quiet zone');
});
