// A tiny certificate authority for the lab: one CA, one server certificate, one per client.
//
// Keys are ECDSA P-256, signatures ECDSA with SHA-256: small, fast, and what OpenSSL's DTLS
// accepts everywhere. Certificates are built with @peculiar/x509 on Node's WebCrypto; keys are
// written as PKCS#8 PEM ("BEGIN PRIVATE KEY"), which OpenSSL 3 loads directly.
//
// Layout written by writeLabPki(dir):
//   ca.crt ca.key                  the CA (the key signs everything else; keep it safe)
//   server.crt server.key          the server, SAN DNS:<serverName>, extendedKeyUsage serverAuth
//   clients/<cn>.crt clients/<cn>.key   one per client, SAN DNS:<cn>, extendedKeyUsage clientAuth
//   authorized/<cn>                an empty file per client the server lets in
// Private keys are mode 0600 and the directories holding them 0700.

import * as fs from 'node:fs';
import * as net from 'node:net';
import * as nodePath from 'node:path';
import { createPrivateKey, KeyObject, randomBytes, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import { clientNameProblem, isHostname } from '../config';

// @peculiar/x509 uses tsyringe, which needs the Reflect metadata API: load its polyfill first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface Issued { certPem: string; keyPem: string }

export interface ValidityOpts { days?: number; notBefore?: Date; notAfter?: Date }

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
// Certificates start a little in the past so that a lab machine whose clock is a few minutes
// behind still accepts a certificate made just now.
const BACKDATE_MS = 5 * 60_000;

type KeyPair = webcrypto.CryptoKeyPair;

async function newKeyPair(): Promise<KeyPair> {
  return webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']) as Promise<KeyPair>;
}

function keyToPem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Loads a PEM private key (PKCS#8 or the older "EC PRIVATE KEY") as a WebCrypto signing key. */
async function pemToSigningKey(pem: string): Promise<webcrypto.CryptoKey> {
  const ko = createPrivateKey(pem);
  if (ko.asymmetricKeyType !== 'ec' || ko.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('the CA key must be an ECDSA P-256 key');
  }
  const der = ko.export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, EC_KEY, false, ['sign']);
}

/** A random positive 128-bit serial (RFC 5280 allows up to 20 octets; the top bit clear keeps it positive). */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  if (b[0] === 0) b[0] = 1; // no leading zero octet: DER would drop it
  return b.toString('hex');
}

function validity(opts: ValidityOpts): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  const notBefore = opts.notBefore ?? new Date(now - BACKDATE_MS);
  let notAfter = opts.notAfter;
  if (!notAfter) {
    const days = opts.days ?? 365;
    if (!Number.isFinite(days) || days <= 0) throw new Error(`days: expected a positive number, got ${days}`);
    notAfter = new Date(now + days * DAY_MS);
  }
  if (notAfter.getTime() <= notBefore.getTime()) throw new Error('notAfter must be later than notBefore');
  return { notBefore, notAfter };
}

function certToPem(cert: x509.X509Certificate): string {
  return cert.toString('pem').replace(/\r\n/g, '\n').trimEnd() + '\n';
}

/** A self-signed CA: basicConstraints CA:true (critical, pathlen 0: no intermediate CAs), keyCertSign + cRLSign. */
export async function makeCA(opts: { cn?: string } & ValidityOpts = {}): Promise<Issued> {
  const keys = await newKeyPair();
  const { notBefore, notAfter } = validity(opts);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: [{ CN: [opts.cn ?? 'minivpn lab CA'] }],
    notBefore,
    notAfter,
    keys: keys as unknown as x509.X509CertificateCreateSelfSignedParams['keys'],
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  });
  return { certPem: certToPem(cert), keyPem: keyToPem(keys.privateKey) };
}

/**
 * A leaf certificate signed by `ca`: basicConstraints CA:false, keyUsage digitalSignature,
 * extendedKeyUsage serverAuth or clientAuth, and subjectAltName. Without dnsNames/ipAddresses
 * the SAN is the CN (as an IP address entry if the CN is an IP address).
 */
export async function issueCert(
  ca: Issued,
  opts: { cn: string; kind: 'server' | 'client'; dnsNames?: string[]; ipAddresses?: string[] } & ValidityOpts,
): Promise<Issued> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const bc = caCert.getExtension(x509.BasicConstraintsExtension);
  if (!bc || !bc.ca) throw new Error(`issueCert: "${caCert.subject}" is not a CA certificate`);
  const caKey = await pemToSigningKey(ca.keyPem);
  if (!new NodeX509(ca.certPem).checkPrivateKey(createPrivateKey(ca.keyPem))) {
    throw new Error('issueCert: the CA key does not belong to the CA certificate');
  }
  if (!opts.cn) throw new Error('issueCert: cn is required');

  let dns = opts.dnsNames ?? [];
  let ips = opts.ipAddresses ?? [];
  if (!opts.dnsNames && !opts.ipAddresses) {
    if (net.isIP(opts.cn)) ips = [opts.cn];
    else dns = [opts.cn];
  }
  const san: x509.JsonGeneralNames = [
    ...dns.map((value) => ({ type: 'dns' as const, value })),
    ...ips.map((value) => ({ type: 'ip' as const, value })),
  ];

  // The authority key identifier must equal the CA's subject key identifier, so that
  // verifiers can find the issuer even when several CAs share a name.
  const caSki = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = caSki
    ? new x509.AuthorityKeyIdentifierExtension(caSki.keyId)
    : await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey);

  const keys = await newKeyPair();
  const { notBefore, notAfter } = validity(opts);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: [{ CN: [opts.cn] }],
    issuer: caCert.subjectName,
    notBefore,
    notAfter,
    publicKey: keys.publicKey as never,
    signingKey: caKey as never,
    signingAlgorithm: SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([opts.kind === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(san),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
      aki,
    ],
  });
  return { certPem: certToPem(cert), keyPem: keyToPem(keys.privateKey) };
}

// ---------------------------------------------------------------------------------------------
// The lab layout on disk.

/**
 * Writes via a temporary file, fsync and rename, so a crash (or a power cut) never leaves half
 * a key; mode set explicitly (umask may mask it).
 */
function writeFileAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx', mode);
    fs.fchmodSync(fd, mode);
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  // The rename itself, durable too (best effort: not every filesystem allows a directory fsync).
  try {
    const dfd = fs.openSync(nodePath.dirname(file), 'r');
    try { fs.fsyncSync(dfd); } finally { fs.closeSync(dfd); }
  } catch { /* see above */ }
}

/** Creates `dir` if needed and sets its mode. Refuses shared sticky directories such as /tmp. */
function ensureDir(dir: string, mode: number): void {
  fs.mkdirSync(dir, { recursive: true, mode });
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (st.mode & 0o1000) throw new Error(`${dir} is a shared (sticky) directory; put the PKI in a subdirectory of it`);
  fs.chmodSync(dir, mode);
}

function exists(file: string): boolean {
  return fs.existsSync(file);
}

/**
 * Why the cert/key pair on disk cannot be kept, or null if it is fine: it must parse, the key
 * must match, it must be signed by `caPem` and not be expired.
 */
function pairProblem(certFile: string, keyFile: string, caPem: string): string | null {
  try {
    const cert = new NodeX509(fs.readFileSync(certFile));
    if (!cert.checkPrivateKey(createPrivateKey(fs.readFileSync(keyFile)))) return 'its key does not match';
    if (!cert.verify(new NodeX509(caPem).publicKey)) return 'it was not signed by this CA';
    if (new Date(cert.validTo).getTime() <= Date.now()) return 'it has expired';
    return null;
  } catch (err) {
    return `it cannot be read (${(err as Error).message})`;
  }
}

export interface LabPkiOpts {
  clients: string[];
  serverName: string;
  days: number;
  authorize?: boolean;               // default true: write authorized/<cn> for each client
  force?: boolean;                   // start over: new CA, server and client certificates
  progress?: (line: string) => void; // one line per step, e.g. "CA created: pki/ca.crt"
}

/** Validates the options; throws an Error naming the bad value. */
function checkLabOpts(opts: LabPkiOpts): void {
  for (const cn of opts.clients) {
    const p = clientNameProblem(cn);
    if (p) throw new Error(`bad client name ${JSON.stringify(cn)}: ${p}`);
  }
  if (typeof opts.serverName !== 'string' || !(net.isIP(opts.serverName) || isHostname(opts.serverName))) {
    throw new Error(`bad server name ${JSON.stringify(opts.serverName)}: expected a DNS name like server.minivpn.test or an IP address`);
  }
  if (!Number.isInteger(opts.days) || opts.days < 1 || opts.days > 36500) {
    throw new Error(`bad days ${JSON.stringify(opts.days)}: expected an integer from 1 to 36500`);
  }
}

/**
 * Creates (or completes) the lab PKI in `dir`. An existing CA is kept, so running again with
 * new client names only issues those; existing valid certificates are kept too. With `force`,
 * the old CA, server and client certificates are deleted and everything is issued anew.
 */
export async function writeLabPki(dir: string, opts: LabPkiOpts): Promise<void> {
  checkLabOpts(opts);
  const say = opts.progress ?? (() => {});
  const at = (...p: string[]) => nodePath.join(dir, ...p);
  const clients = [...new Set(opts.clients)];

  ensureDir(dir, 0o700);
  ensureDir(at('clients'), 0o700);
  if (opts.force) removeOldPki(dir, say);

  const ca = await keepOrMakeCA(dir, opts.days, say);
  const caNotAfter = new Date(new NodeX509(ca.certPem).validTo);
  // A leaf valid for `days`, but never beyond the CA.
  const leafValidity = (): ValidityOpts => {
    const want = new Date(Date.now() + opts.days * DAY_MS);
    return { notAfter: want < caNotAfter ? want : caNotAfter };
  };

  const serverSan = net.isIP(opts.serverName) ? { ipAddresses: [opts.serverName] } : { dnsNames: [opts.serverName] };
  await ensureLeaf('server certificate', at('server.crt'), at('server.key'), ca, say, () =>
    issueCert(ca, { cn: opts.serverName, kind: 'server', ...serverSan, ...leafValidity() }));
  // A kept server certificate may carry another name than asked for: say so rather than
  // silently replacing a certificate clients may already be checking.
  const serverCert = new NodeX509(fs.readFileSync(at('server.crt')));
  if (!(net.isIP(opts.serverName) ? serverCert.checkIP(opts.serverName) : serverCert.checkHost(opts.serverName))) {
    say(`note: ${at('server.crt')} is for ${serverCert.subjectAltName}, not ${opts.serverName}; use --force to reissue everything`);
  }

  for (const cn of clients) {
    await ensureLeaf(`client ${cn}`, at('clients', `${cn}.crt`), at('clients', `${cn}.key`), ca, say, () =>
      issueCert(ca, { cn, kind: 'client', ...leafValidity() }));
  }

  if (opts.authorize ?? true) {
    // Not secret (no keys), but only root should change who may connect.
    ensureDir(at('authorized'), 0o755);
    for (const cn of clients) {
      const f = at('authorized', cn);
      if (!exists(f)) {
        writeFileAtomic(f, '', 0o644);
        say(`authorized: ${f}`);
      }
    }
  }
}

/** --force: removes the CA, server and client certificates and keys in `dir`. */
function removeOldPki(dir: string, say: (line: string) => void): void {
  const at = (...p: string[]) => nodePath.join(dir, ...p);
  // Everything signed by the old CA becomes useless with a new one; remove it so that
  // clients/ only ever holds certificates that verify. Authorizations are policy: kept.
  let n = 0;
  for (const f of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) if (exists(at(f))) { fs.rmSync(at(f)); n++; }
  for (const f of fs.readdirSync(at('clients'))) {
    if (/\.(crt|key)$/.test(f)) { fs.rmSync(at('clients', f)); n++; }
  }
  if (n > 0) say(`--force: removed the old CA and certificates (${n} files)`);
}

/** The CA in `dir`, checked, if there is one; otherwise a new one, written there. */
async function keepOrMakeCA(dir: string, days: number, say: (line: string) => void): Promise<Issued> {
  const caCrt = nodePath.join(dir, 'ca.crt');
  const caKey = nodePath.join(dir, 'ca.key');
  if (exists(caCrt) || exists(caKey)) {
    if (!exists(caCrt) || !exists(caKey)) {
      throw new Error(`${exists(caCrt) ? caKey : caCrt} is missing but ${exists(caCrt) ? caCrt : caKey} exists; restore it, or use --force to make a new CA`);
    }
    const ca = { certPem: fs.readFileSync(caCrt, 'utf8'), keyPem: fs.readFileSync(caKey, 'utf8') };
    const cert = new NodeX509(ca.certPem);
    if (!cert.ca) throw new Error(`${caCrt} is not a CA certificate; use --force to make a new CA`);
    if (!cert.checkPrivateKey(createPrivateKey(ca.keyPem))) throw new Error(`${caKey} does not belong to ${caCrt}; use --force to make a new CA`);
    if (new Date(cert.validTo).getTime() <= Date.now()) throw new Error(`the CA ${caCrt} expired on ${cert.validTo}; use --force to make a new CA`);
    fs.chmodSync(caKey, 0o600);
    say(`CA kept: ${caCrt} (expires ${new Date(cert.validTo).toISOString().slice(0, 10)})`);
    return ca;
  }
  // The CA outlives the certificates it signs, so that clients can be added later.
  const ca = await makeCA({ days: Math.max(days, 3650) });
  writeFileAtomic(caKey, ca.keyPem, 0o600);
  writeFileAtomic(caCrt, ca.certPem, 0o644);
  say(`CA created: ${caCrt}`);
  return ca;
}

/** Keeps a valid certificate and key pair signed by `ca`, or issues one with `make`. */
async function ensureLeaf(
  label: string, crt: string, key: string, ca: Issued, say: (line: string) => void, make: () => Promise<Issued>,
): Promise<void> {
  let problem: string | null = null;
  if (exists(crt) && exists(key)) {
    problem = pairProblem(crt, key, ca.certPem);
    if (problem === null) {
      fs.chmodSync(key, 0o600);
      say(`${label} kept: ${crt}`);
      return;
    }
  }
  const issued = await make();
  writeFileAtomic(key, issued.keyPem, 0o600);
  writeFileAtomic(crt, issued.certPem, 0o644);
  say(problem === null ? `${label} created: ${crt}` : `${label} reissued: ${crt} (${problem})`);
}
