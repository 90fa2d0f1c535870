// The offloads (--udp-gso, --tun-gro) on both sides, in both modes: transfers arrive intact
// both ways, the TUNs really merge TCP segments, and what we hand the kernel as a merged
// packet is well formed: the IP header checksum is right and the TCP checksum field holds
// the pseudo-header sum that the kernel completes (VIRTIO_NET_HDR_F_NEEDS_CSUM).
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { withLab, uniquePrefix } from '../src/lab/topology';
import { decodeLink, readPcap } from '../src/lab/pcap';
import { ipv4HeaderChecksumValid, pseudoHeaderSum, PROTO_TCP } from '../src/wire/ip';
import { vpnFixture, startServer, startClient, exited, capture, STATUS_MAIN } from './helpers/vpn';

const MB5 = 5_000_000;

function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The captured packets longer than the tunnel MTU (merged), and how many of them are well formed. */
function mergedPackets(pcap: Buffer, mtu: number): { merged: number; good: number; bad: string[] } {
  const file = readPcap(pcap);
  let merged = 0, good = 0;
  const bad: string[] = [];
  for (const rec of file.records) {
    const link = decodeLink(file.header.linkType, rec.data);
    if (!link.ok || link.etherType !== 0x0800) continue;
    const ip = rec.data.subarray(link.offset);
    const total = ip.readUInt16BE(2);
    if (ip[0] !== 0x45 || ip[9] !== PROTO_TCP || total <= mtu) continue;
    merged++;
    const seed = fold(pseudoHeaderSum(ip, 0, PROTO_TCP, total - 20));
    const field = ip.readUInt16BE(20 + 16);
    if (ipv4HeaderChecksumValid(ip, 0) && field === seed && rec.originalLength - link.offset === total) good++;
    else bad.push(`#${rec.number}: length ${total}, IP checksum ${ipv4HeaderChecksumValid(ip, 0) ? 'ok' : 'wrong'}, TCP field ${field.toString(16)} vs seed ${seed.toString(16)}`);
  }
  return { merged, good, bad };
}

t.test('--udp-gso --tun-gro: intact transfers both ways, merged segments, well-formed merged packets', { timeout: 240_000 }, async (t) => {
  const f = await vpnFixture(['alice']);
  t.teardown(f.cleanup);
  const upload = path.join(f.dir, 'upload.bin');
  fs.writeFileSync(upload, crypto.randomBytes(MB5));
  const uploadSha = crypto.createHash('sha256').update(fs.readFileSync(upload)).digest('hex');
  await withLab({ prefix: uniquePrefix('gro'), clients: 1 }, async (lab) => {
    const direct = await lab.exec('server', ['sh', '-c', `curl -sf -m 30 http://10.9.0.10/bytes/${MB5} | sha256sum`], { timeoutMs: 40000 });
    t.match(direct.stdout, /^[0-9a-f]{64} /, 'the LAN host serves the reference download');
    for (const mode of ['dtls', 'plaintext'] as const) {
      const flags = ['--udp-gso', '--tun-gro', ...(mode === 'plaintext' ? ['--insecure-plaintext'] : [])];
      const server = await startServer(lab, f, ['--routes', '10.9.0.0/24', ...flags]);
      t.match(lab.output(server), /TUN device open .*gro=on/, `${mode}: the server's TUN merges`);
      const client = await startClient(lab, f, 1, 'alice', flags);
      t.match(lab.output(client.proc), /tunnel up: .*gro=on/, `${mode}: the client's TUN merges`);
      const mtu = Number(/mtu=(\d+)/.exec(lab.output(client.proc))![1]);

      // Download: the LAN host -> server -> tunnel -> the client's TUN (merged there).
      const via = await lab.exec('client1', ['sh', '-c', `curl -sf -m 60 http://10.9.0.10/bytes/${MB5} | sha256sum`], { timeoutMs: 70000 });
      t.equal(via.stdout, direct.stdout, `${mode}: the 5 MB download has the same sha256 through the tunnel`);

      // Upload: the client -> tunnel -> the server's TUN (merged there) -> forwarded to the LAN host.
      let up = '';
      const pcap = await capture(lab, 'server', 'mvpn0', 'tcp', path.join(f.dir, `${mode}-tun.pcap`), async () => {
        up = (await lab.exec('client1', ['curl', '-sf', '-m', '60', '--data-binary', `@${upload}`, 'http://10.9.0.10/sha256'], { timeoutMs: 70000 })).stdout;
      }, 120);
      t.equal(up.trim(), `${uploadSha}  ${MB5}`, `${mode}: the LAN host got the 5 MB upload intact`);
      const m = mergedPackets(pcap, mtu);
      t.ok(m.merged > 10, `${mode}: the server's TUN took ${m.merged} merged packets longer than the MTU (${mtu})`);
      t.equal(m.good, m.merged, `${mode}: every merged packet has a right IP checksum and the pseudo-header sum in the TCP checksum field`);
      t.same(m.bad.slice(0, 3), [], `${mode}: no malformed merged packet`);

      const st = JSON.parse((await lab.exec('server', [process.execPath, STATUS_MAIN, '--socket', f.statusSocket, '--json'])).stdout);
      t.ok(st.groMerged > 1000, `${mode}: the server counts ${st.groMerged} merged segments`);

      client.proc.kill('SIGTERM');
      t.equal(await exited(client.proc, 30_000), 0, `${mode}: client exits 0`);
      const merged = Number(/stopped .*groMerged=(\d+)/.exec(lab.output(client.proc))?.[1] ?? 0);
      t.ok(merged > 1000, `${mode}: the client's TUN merged ${merged} segments of the download`);
      server.kill('SIGTERM');
      t.equal(await exited(server, 30_000), 0, `${mode}: server exits 0`);
    }
  });
});
