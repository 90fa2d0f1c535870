// What the wire shows in plaintext mode vs DTLS mode, mode mismatches, and the full tunnel
// with NAT (the MiniVPN before/after what's-my-IP figures).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { withLab, uniquePrefix, ADDR, Lab } from '../src/lab/topology';
import { vpnFixture, startServer, startClient, spawnClient, exited, capture, VpnFixture } from './helpers/vpn';

/** DTLS content types of every record tshark decodes in the capture. */
function dtlsContentTypes(file: string): number[] {
  const out = execFileSync('tshark', ['-r', file, '-d', 'udp.port==1194,dtls', '-T', 'fields', '-e', 'dtls.record.content_type'], { encoding: 'utf8' });
  return out.split(/[\s,]+/).filter(Boolean).map(Number);
}

async function httpThroughTunnel(lab: Lab): Promise<string> {
  const r = await lab.exec('client1', ['curl', '-sf', '-m', '20', 'http://10.9.0.10/hello']);
  return r.stdout;
}

t.test('plaintext vs DTLS on the wire', { timeout: 240_000 }, async (t) => {
  const f: VpnFixture = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('mode'), clients: 1 }, async (lab) => {
    for (const mode of ['plaintext', 'dtls'] as const) {
      const flag = mode === 'plaintext' ? ['--insecure-plaintext'] : [];
      const server = await startServer(lab, f, ['--routes', '10.9.0.0/24', ...flag]);
      const client = await startClient(lab, f, 1, 'alice', flag);
      if (mode === 'plaintext') {
        t.match(lab.output(server), /INSECURE PLAINTEXT MODE/, 'server warns loudly');
        t.match(lab.output(client.proc), /INSECURE PLAINTEXT MODE/, 'client warns loudly');
      }
      const file = path.join(f.dir, `${mode}.pcap`);
      let page = '';
      const pcap = await capture(lab, 'server', 'eth0', 'udp port 1194', file, async () => { page = await httpThroughTunnel(lab); });
      t.ok(pcap.length > 1000, `${mode}: the capture holds the exchange (${pcap.length} bytes)`);
      t.match(page, /minivpn-secret-page/, `${mode}: the page came through the tunnel`);
      const secretOnWire = pcap.includes(Buffer.from('minivpn-secret-page'));
      const httpOnWire = pcap.includes(Buffer.from('GET /hello HTTP/1.1'));
      if (mode === 'plaintext') {
        t.ok(secretOnWire && httpOnWire, 'plaintext: the HTTP request and the page are readable in the UDP payloads');
      } else {
        t.notOk(secretOnWire || httpOnWire, 'DTLS: no HTTP text anywhere in the capture');
        const types = dtlsContentTypes(file);
        t.ok(types.length >= 6, `tshark decodes ${types.length} DTLS records`);
        t.ok(types.every((ct) => ct === 23), 'all records during the transfer are application data (content type 23)');
      }
      client.proc.kill('SIGTERM');
      t.equal(await exited(client.proc, 30_000), 0, `${mode}: client exits 0`);
      server.kill('SIGTERM');
      t.equal(await exited(server, 30_000), 0, `${mode}: server exits 0`);
    }
  });
});

t.test('mode mismatch is refused and logged on both sides', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('mism'), clients: 1 }, async (lab) => {
    // DTLS server, plaintext client
    let server = await startServer(lab, f);
    let client = spawnClient(lab, f, 1, 'alice', ['--insecure-plaintext']);
    t.match(await lab.waitForLine(client, /mode mismatch/, 30_000), /requires DTLS/, 'plaintext client is told the server requires DTLS');
    t.match(await lab.waitForLine(server, /mode mismatch/, 30_000), /requires DTLS/);
    t.equal(await exited(client, 30_000), 1);
    server.kill('SIGTERM');
    await exited(server, 30_000);
    // Plaintext server, DTLS client
    server = await startServer(lab, f, ['--insecure-plaintext']);
    client = spawnClient(lab, f, 1, 'alice');
    t.match(await lab.waitForLine(server, /mode mismatch/, 30_000), /runs --insecure-plaintext/, 'plaintext server names the problem');
    t.match(await lab.waitForLine(client, /mode mismatch/, 30_000), /it runs --insecure-plaintext, and this client requires DTLS/, 'DTLS client is told the server runs plaintext');
    // Unauthenticated, so not a reason to give up for good: it tries again.
    t.match(await lab.waitForLine(client, /reconnecting in/, 30_000), /mode mismatch with .*; reconnecting in \d+s \(attempt 2\)/, 'and retries');
    t.equal(client.exitCode, null, 'still running');
    client.kill('SIGTERM');
    await exited(client, 30_000);
    server.kill('SIGTERM');
    await exited(server, 30_000);
  });
});

t.test('full tunnel: default route through the tunnel, NAT to the internet', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  await withLab({ prefix: uniquePrefix('full'), clients: 1 }, async (lab) => {
    const before = await lab.exec('client1', ['curl', '-sf', '-m', '20', `http://${ADDR.web}/`]);
    t.equal(before.stdout.trim(), ADDR.client(1), `before: the web host sees the client (${before.stdout.trim()})`);
    const routesBefore = (await lab.exec('client1', ['ip', 'route'])).stdout;
    const server = await startServer(lab, f, ['--redirect-gateway', '--nat-out', 'eth0']);
    const client = await startClient(lab, f, 1, 'alice');
    const via = await lab.exec('client1', ['ip', 'route', 'get', ADDR.web]);
    t.match(via.stdout, /dev mvpn1/, 'the route to the internet goes through the tunnel');
    const pinned = await lab.exec('client1', ['ip', 'route', 'get', ADDR.server]);
    t.match(pinned.stdout, /via 192\.0\.2\.1 dev eth0/, 'the server itself is still reached over the underlay');
    const after = await lab.exec('client1', ['curl', '-sf', '-m', '20', `http://${ADDR.web}/`]);
    t.equal(after.stdout.trim(), ADDR.server, `after: the web host sees the VPN server (${after.stdout.trim()})`);
    client.proc.kill('SIGTERM');
    t.equal(await exited(client.proc, 30_000), 0);
    t.equal((await lab.exec('client1', ['ip', 'route'])).stdout, routesBefore, 'every route restored on exit');
    server.kill('SIGTERM');
    t.equal(await exited(server, 30_000), 0);
    const rules = await lab.exec('server', ['iptables-save']);
    t.notMatch(rules.stdout, /minivpn:/, 'the server removed its NAT and MSS rules');
  });
});
