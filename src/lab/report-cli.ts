// `node dist/src/lab/report-cli.js CAPTURE_A CAPTURE_B [options]`: writes the HTML page
// comparing two captures (see report/). Typical use in the lab:
//
//   tcpdump -i eth0 -w plain.pcap udp port 1194     (plaintext tunnel, curl the web server)
//   tcpdump -i eth0 -w dtls.pcap  udp port 1194     (the same with DTLS)
//   node dist/src/lab/report-cli.js plain.pcap dtls.pcap --find minivpn-secret-page

import * as fs from 'fs';
import * as path from 'path';
import { logger } from '../log';
import { PcapError } from './pcap';
import { analyzeCapture, DEFAULT_FIND, DEFAULT_MAP_BYTES, DEFAULT_MAP_PACKETS, renderReport } from './report';

const log = logger('report');

const USAGE = `usage: node dist/src/lab/report-cli.js CAPTURE_A CAPTURE_B [options]
Compares two classic pcap captures (tcpdump -w) of the VPN underlay in one HTML page:
packet sizes, byte entropy, readable headers, a byte map and a search for a string.

  --out FILE         where to write the page (default: report.html)
  --title TEXT       page title
  --label-a TEXT     name for capture A (default: its file name)
  --label-b TEXT     name for capture B (default: its file name)
  --find TEXT        text to search the payloads for (default: ${DEFAULT_FIND})
  --port N           only UDP datagrams from or to port N (default: all UDP)
  --packets N        packets in the header tables and byte maps (default: ${DEFAULT_MAP_PACKETS})
  --map-bytes N      bytes of each packet in the byte map (default: ${DEFAULT_MAP_BYTES})
  --help             show this text
`;

interface CliOpts {
  files: string[];
  out: string;
  title?: string;
  labelA?: string;
  labelB?: string;
  find: string;
  port?: number;
  packets: number;
  mapBytes: number;
}

class UsageError extends Error {}

function intOption(name: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(`${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

/** Parses the command line; null means --help. Throws UsageError naming the bad option. */
export function parseArgs(argv: string[]): CliOpts | null {
  const o: CliOpts = { files: [], out: 'report.html', find: DEFAULT_FIND, packets: DEFAULT_MAP_PACKETS, mapBytes: DEFAULT_MAP_BYTES };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      o.files.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq >= 0) return arg.slice(eq + 1);
      const next = argv[i + 1];
      if (next === undefined) throw new UsageError(`${name} needs a value`);
      i++;
      return next;
    };
    switch (name) {
      case '--help':
        return null;
      case '--out':
        o.out = value();
        if (o.out === '') throw new UsageError('--out: expected a file name');
        break;
      case '--title':
        o.title = value();
        break;
      case '--label-a':
        o.labelA = value();
        break;
      case '--label-b':
        o.labelB = value();
        break;
      case '--find':
        o.find = value();
        if (o.find === '') throw new UsageError('--find: expected non-empty text');
        break;
      case '--port':
        o.port = intOption('--port', value(), 1, 65535);
        break;
      case '--packets':
        o.packets = intOption('--packets', value(), 1, 10000);
        break;
      case '--map-bytes':
        o.mapBytes = intOption('--map-bytes', value(), 1, 65535);
        break;
      default:
        throw new UsageError(`unknown option ${JSON.stringify(arg)}`);
    }
  }
  if (o.files.length !== 2) throw new UsageError(`expected two capture files, got ${o.files.length}`);
  return o;
}

function main(argv: string[]): number {
  let o: CliOpts | null;
  try {
    o = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`report: ${err.message} (see --help)\n`);
    return 2;
  }
  if (o === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  const analyses: ReturnType<typeof analyzeCapture>[] = [];
  for (const file of o.files) {
    try {
      const buf = fs.readFileSync(file);
      analyses.push(analyzeCapture(buf, { port: o.port, find: o.find, mapPackets: o.packets, mapBytes: o.mapBytes }));
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      // A bad capture or an unreadable file is the user's to fix: say which and why, no stack trace.
      if (err instanceof PcapError || e.code === 'ENOENT' || e.code === 'EACCES' || e.code === 'EISDIR') {
        process.stderr.write(`report: ${file}: ${e.message}\n`);
        return 1;
      }
      throw err;
    }
  }
  const [a, b] = analyses;
  const html = renderReport(a, b, {
    title: o.title,
    labelA: o.labelA ?? path.basename(o.files[0]),
    labelB: o.labelB ?? path.basename(o.files[1]),
    fileA: o.files[0],
    fileB: o.files[1],
    tablePackets: o.packets,
  });
  fs.writeFileSync(o.out, html);
  for (const [side, c] of [['A', a], ['B', b]] as const) {
    log.info('capture analysed', {
      side,
      packets: c.totals.packets,
      bytes: c.totals.bytes,
      printable: c.totals.printableFraction.toFixed(3),
      entropy: c.totals.meanEntropy.toFixed(2),
      find: o.find,
      found: c.found,
    });
  }
  log.info('report written', { out: path.resolve(o.out) });
  return 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
