import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { spawnSync, SpawnSyncReturns } from 'node:child_process';
import { makeCA, issueCert, writeLabPki } from '../src/pki/pki';

const CLI = path.join(__dirname, '..', 'src', 'pki', 'cli.js');

function tmpdir(t: { teardown(fn: () => void): unknown }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-pki-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function openssl(args: string[], cwd?: string): SpawnSyncReturns<string> {
  return spawnSync('openssl', args, { cwd, encoding: 'utf8' });
}

/** Runs the CLI with umask 000, so the modes we see are the ones the code set explicitly. */
function cli(args: string[], cwd: string): SpawnSyncReturns<string> {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return spawnSync('sh', ['-c', `umask 000; exec "${process.execPath}" "${CLI}" ${quoted}`], { cwd, encoding: 'utf8' });
}

function mode(p: string): number {
  return fs.statSync(p).mode & 0o777;
}

t.test('npm run pki writes the lab set with safe modes, and openssl accepts it', async (t) => {
  const dir = tmpdir(t);
  const r = cli([], dir);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /\[pki\] CA created: pki\/ca\.crt/);
  t.match(r.stdout, /\[pki\] server certificate created: pki\/server\.crt/);
  t.match(r.stdout, /\[pki\] client carol created: pki\/clients\/carol\.crt/);
  const pki = path.join(dir, 'pki');

  for (const f of ['ca.key', 'server.key', 'clients/alice.key', 'clients/bob.key', 'clients/carol.key']) {
    t.equal(mode(path.join(pki, f)).toString(8), '600', `${f} is 0600`);
  }
  t.equal(mode(pki).toString(8), '700', 'pki/ is 0700');
  t.equal(mode(path.join(pki, 'clients')).toString(8), '700', 'pki/clients is 0700');
  t.equal(mode(path.join(pki, 'ca.crt')).toString(8), '644');
  for (const cn of ['alice', 'bob', 'carol']) {
    const f = path.join(pki, 'authorized', cn);
    t.ok(fs.statSync(f).isFile(), `authorized/${cn} exists`);
    t.equal(fs.statSync(f).size, 0, `authorized/${cn} is empty`);
  }

  // Keys load in OpenSSL 3 and are PKCS#8 ECDSA P-256.
  t.match(fs.readFileSync(path.join(pki, 'server.key'), 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
  const pkey = openssl(['pkey', '-in', 'server.key', '-noout', '-text'], pki);
  t.equal(pkey.status, 0, pkey.stderr);
  t.match(pkey.stdout, /NIST CURVE: P-256/);

  const v = openssl(['verify', '-CAfile', 'ca.crt', 'server.crt', 'clients/alice.crt'], pki);
  t.equal(v.status, 0, v.stderr);
  t.match(v.stdout, /server\.crt: OK/);
  t.match(v.stdout, /alice\.crt: OK/);

  // Purposes: the server certificate is for servers only, client certificates for clients only.
  t.equal(openssl(['verify', '-purpose', 'sslserver', '-CAfile', 'ca.crt', 'server.crt'], pki).status, 0);
  t.equal(openssl(['verify', '-purpose', 'sslclient', '-CAfile', 'ca.crt', 'clients/bob.crt'], pki).status, 0);
  const wrong = openssl(['verify', '-purpose', 'sslclient', '-CAfile', 'ca.crt', 'server.crt'], pki);
  t.not(wrong.status, 0, 'server cert is not a client cert');
  t.match(wrong.stdout + wrong.stderr, /(unsuitable|unsupported) certificate purpose/);

  const sExt = openssl(['x509', '-in', 'server.crt', '-noout', '-ext', 'subjectAltName,extendedKeyUsage,basicConstraints,keyUsage'], pki);
  t.equal(sExt.status, 0, sExt.stderr);
  t.match(sExt.stdout, /DNS:server\.minivpn\.test/);
  t.match(sExt.stdout, /TLS Web Server Authentication/);
  t.notMatch(sExt.stdout, /Client Authentication/);
  t.match(sExt.stdout, /CA:FALSE/);
  t.match(sExt.stdout, /Digital Signature/);
  const cExt = openssl(['x509', '-in', 'clients/alice.crt', '-noout', '-ext', 'subjectAltName,extendedKeyUsage'], pki);
  t.match(cExt.stdout, /DNS:alice/);
  t.match(cExt.stdout, /TLS Web Client Authentication/);
  t.notMatch(cExt.stdout, /Server Authentication/);
  const caText = openssl(['x509', '-in', 'ca.crt', '-noout', '-text'], pki).stdout;
  t.match(caText, /Basic Constraints: critical\s+CA:TRUE/);
  t.match(caText, /Certificate Sign, CRL Sign/);
  t.match(caText, /Subject Key Identifier/);
  t.match(caText, /ecdsa-with-SHA256/);
  // The leaf's authority key id is the CA's subject key id.
  const ski = /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(caText)![1];
  const leafText = openssl(['x509', '-in', 'server.crt', '-noout', '-text'], pki).stdout;
  t.match(leafText, new RegExp(`Authority Key Identifier:\\s*\\n\\s*(keyid:)?${ski}`));
  const serial = openssl(['x509', '-in', 'server.crt', '-noout', '-serial'], pki).stdout;
  t.match(serial, /^serial=[0-7][0-9A-F]{31}\n$/, 'random positive 128-bit serial');
});

t.test('the certificates work in a real mutual-TLS handshake (OpenSSL loads the keys)', async (t) => {
  const dir = tmpdir(t);
  await writeLabPki(dir, { clients: ['alice'], serverName: 'server.minivpn.test', days: 30 });
  const rd = (f: string) => fs.readFileSync(path.join(dir, f));
  const server = tls.createServer({
    key: rd('server.key'), cert: rd('server.crt'), ca: rd('ca.crt'), requestCert: true, rejectUnauthorized: true,
  }, (sock) => sock.end(`hello ${(sock.getPeerCertificate() as tls.PeerCertificate).subject.CN}`));
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const reply = await new Promise<string>((res, rej) => {
    const s = tls.connect({
      host: '127.0.0.1', port, servername: 'server.minivpn.test',
      key: rd('clients/alice.key'), cert: rd('clients/alice.crt'), ca: rd('ca.crt'),
    });
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('end', () => res(data));
    s.on('error', rej);
  });
  t.equal(reply, 'hello alice');
});

t.test('expired certificates and certificates from another CA fail openssl verify', async (t) => {
  const dir = tmpdir(t);
  const ca = await makeCA({ cn: 'test CA', days: 30 });
  const expired = await issueCert(ca, {
    cn: 'old', kind: 'client', notBefore: new Date(Date.now() - 10 * 86400_000), notAfter: new Date(Date.now() - 86400_000),
  });
  const other = await makeCA({ cn: 'other CA' });
  const foreign = await issueCert(other, { cn: 'mallory', kind: 'client' });
  const good = await issueCert(ca, { cn: 'good', kind: 'client', days: 1 });
  fs.writeFileSync(path.join(dir, 'ca.crt'), ca.certPem);
  fs.writeFileSync(path.join(dir, 'expired.crt'), expired.certPem);
  fs.writeFileSync(path.join(dir, 'foreign.crt'), foreign.certPem);
  fs.writeFileSync(path.join(dir, 'good.crt'), good.certPem);

  t.equal(openssl(['verify', '-CAfile', 'ca.crt', 'good.crt'], dir).status, 0);
  const e = openssl(['verify', '-CAfile', 'ca.crt', 'expired.crt'], dir);
  t.not(e.status, 0);
  t.match(e.stdout + e.stderr, /certificate has expired/);
  const f = openssl(['verify', '-CAfile', 'ca.crt', 'foreign.crt'], dir);
  t.not(f.status, 0);
  t.match(f.stdout + f.stderr, /unable to get local issuer certificate/);

  await t.rejects(issueCert(good, { cn: 'x', kind: 'client' }), /not a CA certificate/, 'a leaf cannot sign');
  await t.rejects(makeCA({ notBefore: new Date(), notAfter: new Date(Date.now() - 1000) }), /notAfter must be later/);
});

t.test('issueCert: explicit SANs, IP SANs for IP names', async (t) => {
  const dir = tmpdir(t);
  const ca = await makeCA({});
  const s = await issueCert(ca, { cn: 'vpn', kind: 'server', dnsNames: ['vpn.example.test', 'vpn2.example.test'], ipAddresses: ['192.0.2.1'] });
  const ip = await issueCert(ca, { cn: '198.51.100.7', kind: 'server' });
  fs.writeFileSync(path.join(dir, 's.crt'), s.certPem);
  fs.writeFileSync(path.join(dir, 'ip.crt'), ip.certPem);
  const a = openssl(['x509', '-in', 's.crt', '-noout', '-ext', 'subjectAltName'], dir).stdout;
  t.match(a, /DNS:vpn\.example\.test, DNS:vpn2\.example\.test, IP Address:192\.0\.2\.1/);
  t.match(openssl(['x509', '-in', 'ip.crt', '-noout', '-ext', 'subjectAltName'], dir).stdout, /IP Address:198\.51\.100\.7/);
});

t.test('re-running keeps the CA and adds only the new client; --force starts over', async (t) => {
  const dir = tmpdir(t);
  t.equal(cli(['--out', 'p', '--clients', 'alice'], dir).status, 0);
  const p = path.join(dir, 'p');
  const ca1 = fs.readFileSync(path.join(p, 'ca.crt'), 'utf8');
  const alice1 = fs.readFileSync(path.join(p, 'clients', 'alice.crt'), 'utf8');
  const server1 = fs.readFileSync(path.join(p, 'server.crt'), 'utf8');

  const r = cli(['--out', 'p', '--clients', 'dave', '--no-authorize'], dir);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /CA kept: p\/ca\.crt/);
  t.match(r.stdout, /client dave created/);
  t.notMatch(r.stdout, /alice/);
  t.equal(fs.readFileSync(path.join(p, 'ca.crt'), 'utf8'), ca1, 'CA unchanged');
  t.equal(fs.readFileSync(path.join(p, 'server.crt'), 'utf8'), server1, 'server cert unchanged');
  t.equal(fs.readFileSync(path.join(p, 'clients', 'alice.crt'), 'utf8'), alice1, 'alice unchanged');
  t.equal(openssl(['verify', '-CAfile', 'ca.crt', 'clients/dave.crt'], p).status, 0, 'dave signed by the same CA');
  t.notOk(fs.existsSync(path.join(p, 'authorized', 'dave')), '--no-authorize: dave not authorized');
  t.ok(fs.existsSync(path.join(p, 'authorized', 'alice')));

  // A key with loose permissions is tightened when kept.
  fs.chmodSync(path.join(p, 'clients', 'alice.key'), 0o644);
  t.equal(cli(['--out', 'p', '--clients', 'alice'], dir).status, 0);
  t.equal(mode(path.join(p, 'clients', 'alice.key')).toString(8), '600');

  const f = cli(['--out', 'p', '--clients', 'alice', '--force'], dir);
  t.equal(f.status, 0, f.stderr);
  t.match(f.stdout, /CA created/);
  t.not(fs.readFileSync(path.join(p, 'ca.crt'), 'utf8'), ca1, '--force makes a new CA');
  t.notOk(fs.existsSync(path.join(p, 'clients', 'dave.crt')), 'certificates of the old CA are removed');
  t.equal(openssl(['verify', '-CAfile', 'ca.crt', 'server.crt', 'clients/alice.crt'], p).status, 0);
});

t.test('a half-present or mismatched CA is refused rather than overwritten', async (t) => {
  const dir = tmpdir(t);
  await writeLabPki(dir, { clients: [], serverName: 'server.minivpn.test', days: 10 });
  const other = await makeCA({});
  fs.writeFileSync(path.join(dir, 'ca.key'), other.keyPem, { mode: 0o600 });
  await t.rejects(writeLabPki(dir, { clients: ['a'], serverName: 'server.minivpn.test', days: 10 }), /ca\.key does not belong to .*ca\.crt/);
  fs.rmSync(path.join(dir, 'ca.key'));
  await t.rejects(writeLabPki(dir, { clients: ['a'], serverName: 'server.minivpn.test', days: 10 }), /ca\.key is missing/);
});

t.test('bad input is refused with the bad value named', async (t) => {
  const dir = tmpdir(t);
  const r = cli(['--clients', 'alice,.hidden'], dir);
  t.equal(r.status, 2, 'the CLI refuses a bad name');
  t.match(r.stderr, '[pki] error: --clients: bad client name ".hidden": must start with a letter or digit');
  for (const bad of ['.hidden', '-rf', 'a/b', 'x'.repeat(65), 'with space', '']) {
    const err = await writeLabPki(path.join(dir, 'pki'), { clients: ['alice', bad], serverName: 's', days: 1 }).then(() => null, (e: Error) => e);
    t.equal(err?.message.startsWith(`bad client name ${JSON.stringify(bad)}: `), true, `refuses ${JSON.stringify(bad)}: ${err?.message}`);
  }
  t.notOk(fs.existsSync(path.join(dir, 'pki')), 'nothing written');
  await t.rejects(writeLabPki(dir, { clients: ['../evil'], serverName: 's', days: 1 }), /bad client name "\.\.\/evil"/);
  await t.rejects(writeLabPki(dir, { clients: [], serverName: 'bad name', days: 1 }), /bad server name "bad name"/);

  const d = cli(['--days', 'soon'], dir);
  t.equal(d.status, 2);
  t.match(d.stderr, /--days: expected an integer .* got "soon"/);
  const u = cli(['--bogus'], dir);
  t.equal(u.status, 2);
  t.match(u.stderr, /unknown option "--bogus"/);
  const m = cli(['--out'], dir);
  t.not(m.status, 0);
  t.match(m.stderr, /--out needs a value/);
  const h = cli(['--help'], dir);
  t.equal(h.status, 0);
  t.match(h.stdout, /--clients a,b,c/);
});
