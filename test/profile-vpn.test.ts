// A profile made by `minivpn pki export` is all a student needs: `minivpn client --profile`
// brings the tunnel up in the namespace lab. A bad profile is refused with its reason, and
// the client sends not one packet (a capture on its cable shows nothing).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChildProcess, spawnSync } from 'node:child_process';
import { withLab, uniquePrefix, ADDR } from '../src/lab/topology';
import { issueCert } from '../src/pki/pki';
import { vpnFixture, startServer, exited, capture } from './helpers/vpn';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'minivpn.js');
const PCAP_HEADER = 24; // a pcap file with no packet is its global header alone

/** The profile's text with one block replaced. */
function withBlock(text: string, block: 'cert' | 'key', pem: string): string {
  return text.replace(new RegExp(`<${block}>\\n[^]*?</${block}>`), `<${block}>\n${pem.trimEnd()}\n</${block}>`);
}

t.test('minivpn client --profile', { timeout: 180_000 }, async (t) => {
  const f = await vpnFixture(['alice', 'bob']);
  t.teardown(f.cleanup);
  const profile = path.join(f.dir, 'alice.conf');
  const exp = spawnSync(process.execPath, [BIN, 'pki', 'export', 'alice', '--out', f.pki, '--server', `${ADDR.server}:1194`,
    '--set', 'reconnect-max-sec=2', '--output', profile], { encoding: 'utf8' });
  t.equal(exp.status, 0, exp.stderr);
  t.equal(fs.statSync(profile).mode & 0o777, 0o600, 'the profile is 0600');

  await withLab({ prefix: uniquePrefix('prof'), clients: 1 }, async (lab) => {
    const server = await startServer(lab, f);

    await t.test('a profile from pki export brings the tunnel up', async (t) => {
      const tmpBefore = new Set(fs.readdirSync(os.tmpdir()));
      // The same capture as below sees a good client's packets (so its silence there means something).
      let client!: ChildProcess;
      const seen = await capture(lab, 'client1', 'eth0', 'udp', path.join(f.dir, 'good.pcap'), async () => {
        client = lab.spawn('client1', [process.execPath, BIN, 'client', '--profile', profile, '--state-dir', `${f.dir}/state`]);
        const up = await lab.waitForLine(client, /tunnel up: /, 15000);
        t.match(up, /tunnel up: 10\.8\.0\.\d+\/24/);
      });
      t.ok(seen.length > PCAP_HEADER, 'the capture saw the handshake');
      const ping = await lab.exec('client1', ['ping', '-c', '2', '-W', '2', '10.8.0.1']);
      t.equal(ping.code, 0, 'the server answers through the tunnel');
      await lab.waitForLine(server, /cn=alice/, 5000);
      const left = fs.readdirSync(os.tmpdir()).filter((d) => d.startsWith('minivpn-profile-') && !tmpBefore.has(d));
      t.same(left, [], 'the credentials\' temporary copy is gone once the client runs');
      client.kill('SIGTERM');
      t.equal(await exited(client, 10000), 0, 'the client stops cleanly');
    });

    await t.test('each bad profile is refused with its reason, before any packet', async (t) => {
      const text = fs.readFileSync(profile, 'utf8');
      const ca = { certPem: fs.readFileSync(`${f.pki}/ca.crt`, 'utf8'), keyPem: fs.readFileSync(`${f.pki}/ca.key`, 'utf8') };
      const day = 86_400_000;
      const expired = await issueCert(ca, { cn: 'alice', kind: 'client', notBefore: new Date(Date.now() - 9 * day), notAfter: new Date(Date.now() - day) });
      const early = await issueCert(ca, { cn: 'alice', kind: 'client', notBefore: new Date(Date.now() + day), notAfter: new Date(Date.now() + 9 * day) });
      const { testPki } = await import('./helpers/certs');
      const rogue = (await testPki()).rogueClient; // signed by another CA
      const bad: [string, string, RegExp][] = [
        ['mismatch', withBlock(text, 'key', fs.readFileSync(`${f.pki}/clients/bob.key`, 'utf8')), /its key does not match its certificate/],
        ['expired', withBlock(withBlock(text, 'cert', expired.certPem), 'key', expired.keyPem), /its certificate expired on /],
        ['early', withBlock(withBlock(text, 'cert', early.certPem), 'key', early.keyPem), /its certificate is not valid before /],
        ['rogue', withBlock(withBlock(text, 'cert', rogue.certPem), 'key', rogue.keyPem), /its certificate was not signed by its CA/],
      ];
      const pcap = await capture(lab, 'client1', 'eth0', 'udp', path.join(f.dir, 'bad.pcap'), async () => {
        for (const [name, body, re] of bad) {
          const file = path.join(f.dir, `${name}.conf`);
          fs.writeFileSync(file, body, { mode: 0o600 });
          const c = lab.spawn('client1', [process.execPath, BIN, 'client', '--profile', file, '--state-dir', `${f.dir}/state`]);
          t.equal(await exited(c, 15000), 2, `${name}: exit status 2`);
          t.match(lab.output(c), new RegExp(`profile .*${name}\\.conf refused: ${re.source}`), `${name}: the reason`);
        }
      });
      t.equal(pcap.length, PCAP_HEADER, 'not one UDP packet left client1');
    });
  });
});
