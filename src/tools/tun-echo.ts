// tun-echo: a tiny "host" behind a TUN device, for lab 1.
//
//   node dist/src/tools/tun-echo.js --name tun0 --address 10.77.0.1/24 [--count N] [--tap]
//
// With --tap (lab 12) it opens a TAP device instead and only prints what it reads: whole
// Ethernet frames, MACs and all (the kernel's ARP requests first); it answers nothing.
//
// It creates the interface, gives it an address (which also makes the kernel route the
// address's subnet into it), then prints every packet the kernel hands it and answers
// ICMP echo requests ("ping") itself. Whatever the kernel routes into tun0 ends up here;
// whatever we write to it the kernel receives as if it came in from a network.
import { execFile } from 'child_process';
import { promisify } from 'util';
import { Tun } from '../tun/tun';
import { IpParseError, checkIp, isIpv4, parseIp, parseTransport } from '../wire/ip';
import { buildEchoReply, isEchoRequest } from '../wire/icmp';
import { ETHER_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, etherSrc, etherTypeName, formatMac, parseEther } from '../wire/ether';

const execFileP = promisify(execFile);

const USAGE = 'usage: node dist/src/tools/tun-echo.js --name tun0 --address 10.77.0.1/24 [--count N] [--tap]';

export interface TunEchoOptions {
  name: string;
  /** Address of this end with its prefix length, e.g. 10.77.0.1/24. */
  address: string;
  /** Exit after answering this many echo requests (0 = run until Ctrl-C). */
  count: number;
  /** A TAP device: print the Ethernet frames read, answer nothing. */
  tap?: boolean;
}

/** Parses the command line; throws an Error naming the bad flag. */
export function parseArgs(argv: string[]): TunEchoOptions {
  const o: Partial<TunEchoOptions> = { count: 0 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case '--name': {
        const v = value();
        // Linux interface names: at most 15 bytes, no '/' or spaces.
        if (!/^[A-Za-z0-9_.-]{1,15}$/.test(v)) throw new Error(`--name: "${v}" is not a valid interface name (1-15 letters, digits, _ . -)`);
        o.name = v;
        break;
      }
      case '--address': {
        const v = value();
        const m = /^([^/]+)\/(\d{1,2})$/.exec(v);
        if (!m || !isIpv4(m[1]) || Number(m[2]) > 32) throw new Error(`--address: "${v}" is not an IPv4 address with a prefix length, like 10.77.0.1/24`);
        o.address = v;
        break;
      }
      case '--count': {
        const v = value();
        if (!/^\d+$/.test(v)) throw new Error(`--count: "${v}" is not a whole number`);
        o.count = Number(v);
        break;
      }
      case '--tap':
        o.tap = true;
        break;
      case '-h':
      case '--help':
        throw new Error(USAGE);
      default:
        throw new Error(`unknown argument "${flag}"`);
    }
  }
  if (!o.name) throw new Error('--name is required (e.g. --name tun0)');
  if (!o.address) throw new Error('--address is required (e.g. --address 10.77.0.1/24)');
  return o as TunEchoOptions;
}

const ICMP_NAMES: Record<number, string> = { 0: 'echo-reply', 3: 'destination-unreachable', 8: 'echo-request', 11: 'time-exceeded' };

/** One line describing an IP packet: "IPv4 10.77.0.1 -> 10.77.0.2 ICMP echo-request id=7 seq=1". */
export function describePacket(pkt: Buffer): string {
  const bad = checkIp(pkt, 0, pkt.length);
  if (bad) return `not an IP packet (${bad})`;
  try {
    const ip = parseIp(pkt);
    let s = `IPv${ip.version} ${ip.src} -> ${ip.dst}`;
    const t = parseTransport(ip, pkt);
    if (!t) return `${s} protocol ${ip.protocol}${ip.fragmented ? ' (fragment)' : ''}`;
    if (t.kind === 'icmp' || t.kind === 'icmpv6') {
      const name = t.kind === 'icmp' ? ICMP_NAMES[t.type] : undefined;
      s += ` ${t.kind.toUpperCase()} ${name ?? `type=${t.type} code=${t.code}`}`;
      if (t.kind === 'icmp' && (t.type === 0 || t.type === 8)) s += ` id=${t.id} seq=${t.seq}`;
      return s;
    }
    if (t.kind === 'tcp') return `${s} TCP ${t.srcPort} -> ${t.dstPort} [${t.flagNames.join(',')}] ${t.payloadLength} bytes of data`;
    if (t.kind === 'udp') return `${s} UDP ${t.srcPort} -> ${t.dstPort} ${t.payloadLength} bytes of data`;
    return s;
  } catch (err) {
    if (err instanceof IpParseError) return `malformed packet (${err.message})`;
    throw err;
  }
}

/** One line describing an Ethernet frame: MACs, then ARP's question or the IP packet inside. */
export function describeFrame(f: Buffer): string {
  if (f.length < ETHER_HEADER_LEN) return 'not an Ethernet frame (shorter than its 14-byte header)';
  const e = parseEther(f);
  let s = `Ethernet ${e.src} -> ${e.dst} ${etherTypeName(e.etherType)}`;
  const p = f.subarray(e.payloadOffset);
  if (e.etherType === ETHERTYPE_ARP && p.length >= 28) {
    const ip4 = (at: number) => [...p.subarray(at, at + 4)].join('.');
    const op = p.readUInt16BE(6);
    s += op === 1 ? ` who-has ${ip4(24)} tell ${ip4(14)}` : op === 2 ? ` reply ${ip4(14)} is-at ${formatMac(etherSrc(f, 0))}` : ` op ${op}`;
  } else if (e.etherType === ETHERTYPE_IPV4 || e.etherType === ETHERTYPE_IPV6) {
    s += `: ${describePacket(p)}`;
  }
  return s;
}

async function ip(...args: string[]): Promise<void> {
  try {
    await execFileP('ip', args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}`);
  }
}

function parseArgsOrExit(argv: string[]): TunEchoOptions {
  try {
    return parseArgs(argv);
  } catch (err) {
    process.stderr.write(`tun-echo: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
}

interface EchoCounts { read: number; requests: number; replies: number }

/** Prints one packet read from the TUN and, for an echo request, writes the reply into it. */
function answerPacket(tun: Tun, pkt: Buffer, counts: EchoCounts, say: (line: string) => void): void {
  counts.read++;
  say(`read ${pkt.length} bytes: ${describePacket(pkt)}`);
  if (!isEchoRequest(pkt)) return;
  counts.requests++;
  const reply = buildEchoReply(pkt); // a new buffer: addresses swapped, type 0, checksums fixed
  if (tun.write(reply)) {
    counts.replies++;
    say(`wrote echo-reply ${reply.length} bytes: ${describePacket(reply)}`);
  } else {
    say(`could not write the echo-reply (the kernel refused it)`);
  }
}

async function main(): Promise<void> {
  const opts = parseArgsOrExit(process.argv.slice(2));
  const say = (line: string) => process.stdout.write(line + '\n');

  let tun: Tun;
  try {
    tun = Tun.open({ name: opts.name, tap: opts.tap });
  } catch (err) {
    process.stderr.write(`tun-echo: cannot open TUN device "${opts.name}": ${(err as Error).message}\n`);
    process.exit(1);
  }
  say(`opened ${opts.tap ? 'TAP' : 'TUN'} device ${tun.name}`);

  const counts: EchoCounts = { read: 0, requests: 0, replies: 0 };
  let closed = false;
  const close = (why: string) => {
    if (closed) return;
    closed = true;
    tun.close(); // the kernel removes the interface (and its routes) with the last fd
    say(`closed ${tun.name} (${why}): ${counts.read} packet(s) read, ${counts.replies} echo-reply(s) written`);
    process.exit(0);
  };
  process.on('SIGINT', () => close('SIGINT'));
  process.on('SIGTERM', () => close('SIGTERM'));

  try {
    // These are the commands a student would type; the address's /24 makes the kernel add
    // the route "10.77.0.0/24 dev tun0" by itself.
    await ip('addr', 'add', opts.address, 'dev', tun.name);
    await ip('link', 'set', 'dev', tun.name, 'up');
  } catch (err) {
    process.stderr.write(`tun-echo: ${(err as Error).message}\n`);
    tun.close();
    process.exit(1);
  }
  say(`${tun.name} is up with address ${opts.address}; waiting for packets (Ctrl-C to stop)`);

  tun.onPackets((batch) => {
    if (opts.tap) {
      for (let i = 0; i < batch.count; i++) {
        counts.read++;
        say(`read ${batch.lens[i]} bytes: ${describeFrame(batch.packet(i))}`);
      }
      return;
    }
    for (let i = 0; i < batch.count && !closed; i++) {
      // batch.packet(i) is a view into the batch buffer, valid only in this callback.
      answerPacket(tun, batch.packet(i), counts, say);
      if (opts.count > 0 && counts.requests >= opts.count) close(`answered ${opts.count} echo request(s)`);
    }
  });
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`tun-echo: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
