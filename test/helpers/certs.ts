// Certificates for tests, made with the project's own PKI code (src/pki).
import { makeCA, issueCert, Issued } from '../../src/pki/pki';

export interface TestPki {
  ca: Issued;
  server: Issued;
  client: Issued;
  otherCa: Issued;
  /** server certificate signed by otherCa */
  rogueServer: Issued;
  /** client certificate signed by otherCa */
  rogueClient: Issued;
  expiredClient: Issued;
  expiredServer: Issued;
}

let cached: Promise<TestPki> | null = null;

export function testPki(): Promise<TestPki> {
  cached ??= (async () => {
    const ca = await makeCA({ cn: 'minivpn test CA' });
    const otherCa = await makeCA({ cn: 'some other CA' });
    const past = { notBefore: new Date(Date.now() - 10 * 86400e3), notAfter: new Date(Date.now() - 86400e3) };
    return {
      ca,
      otherCa,
      server: await issueCert(ca, { cn: 'server', kind: 'server', dnsNames: ['server.minivpn.test'] }),
      client: await issueCert(ca, { cn: 'alice', kind: 'client' }),
      rogueServer: await issueCert(otherCa, { cn: 'server', kind: 'server', dnsNames: ['server.minivpn.test'] }),
      rogueClient: await issueCert(otherCa, { cn: 'mallory', kind: 'client' }),
      expiredClient: await issueCert(ca, { cn: 'old-alice', kind: 'client', ...past }),
      expiredServer: await issueCert(ca, { cn: 'server', kind: 'server', dnsNames: ['server.minivpn.test'], ...past }),
    };
  })();
  return cached;
}
