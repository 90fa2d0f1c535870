// Checks of a certificate, its key and its CA, done by OpenSSL through Node's crypto before
// anything is sent: a student told "the certificate expired on 2025-03-01" knows what to ask
// for; one told "handshake failed" does not. Used by the client for profiles and by the doctor.
import { X509Certificate, createPrivateKey, KeyObject } from 'node:crypto';

const day = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Parses a PEM certificate; throws an Error saying which one is not one. */
export function parseCert(pem: string | Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new Error(`${what} is not a PEM certificate (${(err as Error).message})`);
  }
}

/** Parses a PEM private key; throws an Error saying which one is not one. */
export function parseKey(pem: string | Buffer, what: string): KeyObject {
  try {
    return createPrivateKey(pem);
  } catch (err) {
    throw new Error(`${what} is not a PEM private key (${(err as Error).message})`);
  }
}

/** Why `key` cannot be used with `cert`, or null. */
export function keyPairProblem(cert: X509Certificate, key: KeyObject, certWhat: string, keyWhat: string): string | null {
  return cert.checkPrivateKey(key) ? null : `${keyWhat} does not match ${certWhat} (they were not made together)`;
}

/** Why `cert` does not chain to `ca`, or null. */
export function chainProblem(cert: X509Certificate, ca: X509Certificate, certWhat: string, caWhat: string): string | null {
  if (!ca.ca) return `${caWhat} is not a CA certificate (basicConstraints CA:FALSE)`;
  // checkIssued compares the names and key identifiers; verify checks the signature itself.
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    return `${certWhat} was not signed by ${caWhat} (it belongs to another CA: issued by "${cert.issuer.trim()}")`;
  }
  return null;
}

/** Why `cert` is not valid at `now` (ms), or null. */
export function validityProblem(cert: X509Certificate, what: string, now: number): string | null {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  if (now > to) return `${what} expired on ${day(to)} (this machine's clock says ${day(now)})`;
  if (now < from) return `${what} is not valid before ${day(from)}, and this machine's clock says ${day(now)}`;
  return null;
}

export interface Credentials { ca: string; cert: string; key: string }

/**
 * Every reason the client's own credentials cannot work, checked in the order a person would
 * fix them; throws an Error with the first. `now` in ms.
 */
export function checkCredentials(c: Credentials, now: number, names = { ca: 'the CA', cert: 'the certificate', key: 'the key' }): void {
  const ca = parseCert(c.ca, names.ca);
  const cert = parseCert(c.cert, names.cert);
  const key = parseKey(c.key, names.key);
  const problem = keyPairProblem(cert, key, names.cert, names.key)
    ?? chainProblem(cert, ca, names.cert, names.ca)
    ?? validityProblem(cert, names.cert, now)
    ?? validityProblem(ca, names.ca, now);
  if (problem) throw new Error(problem);
}
