// replay: look at, forge and re-send captured tunnel datagrams, for lab 7 (attacks).
//
//   node dist/src/tools/replay.js list FILE.pcap
//       one line per UDP datagram: what a plaintext frame or a DTLS record header says
//   node dist/src/tools/replay.js forge FILE.pcap --out OUT.pcap --src A --dst B --text TEXT [--packet N]
//       copies datagram N (default: the first UDP one) - its link header, addresses and
//       ports - and replaces the payload with a plaintext DATA frame carrying a new ICMP echo
//       request from A to B with TEXT as data. Checksums are computed. Send OUT.pcap with
//       tcpreplay from a host on the path: the server cannot tell it from the real client.
//   node dist/src/tools/replay.js send FILE.pcap --to HOST:PORT [--packet N]
//       re-sends the UDP payloads (or only datagram N) from this host's own UDP socket.
//       Node cannot fake a source address, so they arrive from a new port: a new peer.
//
// Packet numbers are 1-based, as in Wireshark and `tcpdump -#`.
import dgram from 'dgram';
import fs from 'fs';
import { decodeLink, frameForLink, LINKTYPE_ETHERNET, PcapRecord, readPcap, writePcap, buildIpv4Udp } from '../lab/pcap';
import { buildEchoRequest } from '../wire/icmp';
import { encodeFrame, FrameType, frameTypeName, looksLikeDtls, looksLikeFrame } from '../wire/frame';
import { intToIpv4, isIpv4, parseIp, parseTransport } from '../wire/ip';

const USAGE = `usage:
  node dist/src/tools/replay.js list FILE.pcap
  node dist/src/tools/replay.js forge FILE.pcap --out OUT.pcap --src A --dst B --text TEXT [--packet N]
  node dist/src/tools/replay.js send FILE.pcap --to HOST:PORT [--packet N]`;

export interface Datagram {
  number: number;
  record: PcapRecord;
  /** Offset of the IP header inside record.data. */
  ipOffset: number;
  src: string;
  dst: string;
  srcPort: number;
  dstPort: number;
  payload: Buffer;
}

/** The IPv4/UDP datagrams in a pcap file (everything else is skipped). */
export function udpDatagrams(file: Buffer): { linkType: number; datagrams: Datagram[] } {
  const pcap = readPcap(file);
  const out: Datagram[] = [];
  for (const r of pcap.records) {
    const link = decodeLink(pcap.header.linkType, r.data);
    if (!link.ok) continue;
    try {
      const ip = parseIp(r.data, link.offset);
      const tr = ip.version === 4 ? parseTransport(ip, r.data) : null;
      if (!tr || tr.kind !== 'udp') continue;
      out.push({
        number: r.number, record: r, ipOffset: link.offset,
        src: intToIpv4(r.data.readUInt32BE(link.offset + 12)), dst: intToIpv4(r.data.readUInt32BE(link.offset + 16)),
        srcPort: tr.srcPort, dstPort: tr.dstPort, payload: tr.payload,
      });
    } catch {
      // a packet cut short by the snaplen, or not IP at all: not ours to replay
    }
  }
  return { linkType: pcap.header.linkType, datagrams: out };
}

const DTLS_TYPES: Record<number, string> = { 20: 'change_cipher_spec', 21: 'alert', 22: 'handshake', 23: 'application_data' };

const ICMP_NAMES: Record<number, string> = { 0: 'echo-reply', 8: 'echo-request' };

/** What the first bytes of a tunnel datagram say, in words. */
export function describePayload(p: Buffer): string {
  if (looksLikeDtls(p)) {
    // DTLS record header: type(1) version(2) epoch(2) sequence number(6) length(2)
    const seq = p.readUIntBE(5, 6);
    return `DTLS ${DTLS_TYPES[p[0]] ?? p[0]} epoch=${p.readUInt16BE(3)} seq=${seq} length=${p.readUInt16BE(11)}`;
  }
  if (looksLikeFrame(p)) {
    let what = `plaintext frame ${frameTypeName(p[0])}`;
    if (p[0] === FrameType.DATA && p.length > 21) {
      try {
        const ip = parseIp(p, 1);
        const tr = parseTransport(ip, p);
        const inner = tr?.kind === 'icmp' ? ` ICMP ${ICMP_NAMES[tr.type] ?? `type ${tr.type}`} id=${tr.id} seq=${tr.seq}` : tr ? ` ${tr.kind.toUpperCase()}` : '';
        what += `: ${intToIpv4(p.readUInt32BE(13))} -> ${intToIpv4(p.readUInt32BE(17))}${inner}`;
      } catch {
        what += ' (inner packet not valid IP)';
      }
    }
    return what;
  }
  return `unknown (first byte 0x${(p[0] ?? 0).toString(16).padStart(2, '0')})`;
}

/** A copy of datagram `d` whose UDP payload is a DATA frame carrying a new echo request. */
export function forge(linkType: number, d: Datagram, src: string, dst: string, text: string): { data: Buffer; payload: Buffer } {
  const inner = buildEchoRequest({ src, dst, id: 0x4a4b, seq: 1, payload: Buffer.from(text) });
  const payload = encodeFrame(FrameType.DATA, inner);
  const ip = buildIpv4Udp({ src: d.src, dst: d.dst, srcPort: d.srcPort, dstPort: d.dstPort, payload, ttl: 64 });
  // Ethernet: keep the original MAC addresses, the frame must be addressed to the next hop's card.
  const data = linkType === LINKTYPE_ETHERNET ? Buffer.concat([d.record.data.subarray(0, d.ipOffset), ip]) : frameForLink(linkType, ip);
  return { data, payload };
}

function opt(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  if (i + 1 >= args.length) throw new Error(`${name} needs a value`);
  return args[i + 1];
}

function pick(all: Datagram[], n: string | undefined): Datagram[] {
  if (n === undefined) return all;
  const d = all.find((x) => x.number === Number(n));
  if (!/^\d+$/.test(n) || !d) throw new Error(`--packet: no UDP datagram number ${n} in the file (list shows the numbers)`);
  return [d];
}

async function main(argv: string[]): Promise<number> {
  const [cmd, file, ...rest] = argv;
  if (!cmd || cmd === '--help' || !file) { process.stderr.write(USAGE + '\n'); return cmd === '--help' ? 0 : 2; }
  const { linkType, datagrams } = udpDatagrams(fs.readFileSync(file));
  if (datagrams.length === 0) throw new Error(`${file}: no IPv4 UDP datagrams in it`);
  if (cmd === 'list') {
    for (const d of datagrams) {
      process.stdout.write(`#${d.number} ${d.src}:${d.srcPort} -> ${d.dst}:${d.dstPort} ${d.payload.length} bytes: ${describePayload(d.payload)}\n`);
    }
    return 0;
  }
  if (cmd === 'forge') {
    const out = opt(rest, '--out'), src = opt(rest, '--src'), dst = opt(rest, '--dst'), text = opt(rest, '--text') ?? 'forged';
    if (!out) throw new Error('forge: --out FILE is required');
    if (!isIpv4(src) || !isIpv4(dst)) throw new Error('forge: --src and --dst must be IPv4 addresses (the inner packet\'s)');
    const d = pick(datagrams, opt(rest, '--packet') ?? String(datagrams[0].number))[0];
    const f = forge(linkType, d, src, dst, text);
    fs.writeFileSync(out, writePcap([{ data: f.data, time: Date.now() / 1000 }], { linkType }));
    process.stdout.write(`wrote ${out}: ${d.src}:${d.srcPort} -> ${d.dst}:${d.dstPort} (addresses copied from #${d.number}): ${describePayload(f.payload)}\n`);
    return 0;
  }
  if (cmd === 'send') {
    const to = opt(rest, '--to');
    const m = to ? /^(.+):(\d+)$/.exec(to) : null;
    if (!m || !isIpv4(m[1])) throw new Error('send: --to IPv4:PORT is required, e.g. --to 198.51.100.2:1194');
    const chosen = pick(datagrams, opt(rest, '--packet'));
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, r));
    for (const d of chosen) {
      await new Promise<void>((resolve, reject) => sock.send(d.payload, Number(m[2]), m[1], (e) => (e ? reject(e) : resolve())));
    }
    process.stdout.write(`sent ${chosen.length} datagram(s) to ${to} from our own port ${sock.address().port} (the client used ${chosen[0].srcPort})\n`);
    sock.close();
    return 0;
  }
  process.stderr.write(`unknown command "${cmd}"\n${USAGE}\n`);
  return 2;
}

if (require.main === module) {
  process.stdout.on('error', () => process.exit(0)); // `| head` closed the pipe: fine
  main(process.argv.slice(2)).then((code) => process.exit(code), (err: Error) => {
    process.stderr.write(`replay: ${err.message}\n`);
    process.exit(1);
  });
}
