// `minivpn pki export NAME --server HOST:PORT > NAME.conf`: one file a student can be given.
// It holds the client's private key, so it is written mode 0600, also when the shell made
// the file (a redirect) rather than we.
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { clientNameProblem } from '../config';
import { formatProfile, parseProfile } from './format';
import { checkCredentials } from './verify';
import { checkProfileOptions } from './load';
import { qrFor } from './qr';

export const EXPORT_USAGE = `usage: minivpn pki export NAME --server HOST:PORT [options] > NAME.conf
Writes a one-file client profile: the server's address, the CA, NAME's certificate and key
and client options. The client then needs only: sudo minivpn client --profile NAME.conf
The file holds NAME's private key: it is made mode 0600; give it to NAME only.

  --server HOST:PORT   the server's address as the client reaches it (required)
  --out DIR            the PKI made by "minivpn pki" (default: pki)
  --server-name NAME   name the server certificate carries (default: read from DIR/server.crt)
  --set OPTION[=VALUE] a client option for the profile, e.g. --set reconnect-max-sec=10 or
                       --set udp-gso (repeatable; see minivpn client --help)
  --output FILE        write FILE (mode 0600) instead of standard output
  --qr                 print the profile as a QR code for the terminal, if it fits
  --help               show this text
`;

export class ExportUsageError extends Error {}

interface ExportOpts { name: string; server: string; pki: string; serverName: string | null; set: string[]; output: string | null; qr: boolean }

function parseExportArgs(argv: string[]): ExportOpts | null {
  const o: ExportOpts = { name: '', server: '', pki: 'pki', serverName: null, set: [], output: null, qr: false };
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq >= 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (flag !== arg) return arg.slice(eq + 1);
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new ExportUsageError(`${flag} needs a value`);
      i++;
      return next;
    };
    switch (flag) {
      case '--help': case '-h': return null;
      case '--server': o.server = value(); break;
      case '--out': o.pki = value(); break;
      case '--server-name': o.serverName = value(); break;
      case '--set': o.set.push(value()); break;
      case '--output': case '-o': o.output = value(); break;
      case '--qr': o.qr = true; break;
      default:
        if (arg.startsWith('-')) throw new ExportUsageError(`unknown option ${JSON.stringify(arg)}`);
        names.push(arg);
    }
  }
  if (names.length !== 1) throw new ExportUsageError(names.length ? `one client name only, got ${names.join(' ')}` : 'the client name is missing');
  o.name = names[0];
  const p = clientNameProblem(o.name);
  if (p) throw new ExportUsageError(`bad client name ${JSON.stringify(o.name)}: ${p}`);
  if (!o.server) throw new ExportUsageError('--server HOST:PORT is required: the address the client reaches the server at');
  // One option per line: a line break in a value would add lines of its own.
  const bad = [o.server, o.serverName ?? '', ...o.set].find((v) => /[\x00-\x1f\x7f]/.test(v));
  if (bad !== undefined) throw new ExportUsageError(`a value may not hold control characters (line breaks): ${JSON.stringify(bad)}`);
  return o;
}

function read(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The name the client must check: the server certificate's first DNS or IP subjectAltName. */
function serverNameOf(certFile: string): string {
  const san = new X509Certificate(read(certFile, 'the server certificate')).subjectAltName ?? '';
  const m = /(?:DNS|IP Address):([^,\s]+)/.exec(san);
  if (!m) throw new Error(`${certFile} has no DNS or IP name; give --server-name`);
  return m[1];
}

/** A profile's text for client `name` from the PKI in `pki`; checked as the client will check it. */
export function buildProfile(o: Omit<ExportOpts, 'output' | 'qr'>, now = Date.now(), comments = true): string {
  const at = (...p: string[]) => path.join(o.pki, ...p);
  const crt = at('clients', `${o.name}.crt`);
  if (!fs.existsSync(crt)) throw new Error(`no certificate for ${o.name} in ${at('clients')}: make one with: minivpn pki --out ${o.pki} --clients ${o.name}`);
  const cred = { ca: read(at('ca.crt'), 'the CA'), cert: read(crt, 'the certificate'), key: read(at('clients', `${o.name}.key`), 'the key') };
  checkCredentials(cred, now, { ca: at('ca.crt'), cert: crt, key: at('clients', `${o.name}.key`) });
  const options = [
    { flag: 'server', value: o.server },
    { flag: 'server-name', value: o.serverName ?? serverNameOf(at('server.crt')) },
    { flag: 'name', value: o.name },
    ...o.set.map((s) => {
      const eq = s.indexOf('=');
      return eq < 0 ? { flag: s.replace(/^--/, '') } : { flag: s.slice(0, eq).replace(/^--/, ''), value: s.slice(eq + 1) };
    }),
  ];
  const text = formatProfile({
    comments: comments ? [
      `minivpn client profile for ${o.name}, made ${new Date(now).toISOString().slice(0, 10)} by "minivpn pki export".`,
      `It holds ${o.name}'s private key: keep it secret (mode 0600), give it to ${o.name} only.`,
      `Use: sudo minivpn client --profile ${o.name}.conf   (format: docs/CONFIG.md, "Client profiles")`,
    ] : undefined,
    options, ...cred,
  });
  // What the client will read back: the same parser and option checks.
  try {
    checkProfileOptions(parseProfile(text, o.name), o.name);
  } catch (err) {
    throw new Error(`the profile's options: ${(err as Error).message.replace(/^profile \S+( line \d+)?: /, '')}`);
  }
  return text;
}

/** Writes `text` to a new or replaced file, mode 0600 from the start. */
function writePrivate(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    try {
      fs.fchmodSync(fd, 0o600);
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * Standard output: a file the shell made for a redirect is made 0600 before the key is in it.
 * `onTerminal` is said when it is a terminal.
 */
function writeStdout(text: string, onTerminal: (() => void) | null): void {
  const st = fs.fstatSync(1);
  if (st.isFile()) {
    try {
      fs.fchmodSync(1, 0o600);
    } catch (err) {
      throw new Error(`cannot make the output file private (chmod 600): ${(err as Error).message}; use --output FILE`);
    }
  } else if (process.stdout.isTTY) {
    onTerminal?.();
  }
  process.stdout.write(text);
}

/** The `pki export` command; returns the exit status. */
export async function exportMain(argv: string[]): Promise<number> {
  let o: ExportOpts | null;
  try {
    o = parseExportArgs(argv);
  } catch (err) {
    if (!(err instanceof ExportUsageError)) throw err;
    process.stderr.write(`[pki] export: ${err.message} (see minivpn pki export --help)\n`);
    return 2;
  }
  if (o === null) {
    process.stdout.write(EXPORT_USAGE);
    return 0;
  }
  const warn = (s: string) => process.stderr.write(`[pki] ${s}\n`);
  try {
    if (!fs.existsSync(path.join(o.pki, 'authorized', o.name))) {
      warn(`note: ${o.name} is not in ${path.join(o.pki, 'authorized')}; the server refuses ${o.name} until: touch ${path.join(o.pki, 'authorized', o.name)}`);
    }
    if (o.qr) {
      const qr = qrFor(buildProfile(o, Date.now(), false), terminalColumns());
      if (!qr.ok) {
        warn(`no QR code: ${qr.why}`);
        return 1;
      }
      writeStdout(qr.text, null);
      warn(`profile for ${o.name} as a QR code (version ${qr.version}, ${qr.columns} columns): it holds ${o.name}'s private key, show it to ${o.name} only`);
      return 0;
    }
    const text = buildProfile(o);
    if (o.output) {
      writePrivate(o.output, text);
      warn(`profile for ${o.name} written: ${o.output} (mode 0600)`);
    } else {
      writeStdout(text, () => warn('the profile holds a private key: save it to a file (> NAME.conf) rather than showing it'));
    }
    return 0;
  } catch (err) {
    process.stderr.write(`[pki] export: ${(err as Error).message}\n`);
    return 1;
  }
}

/** The terminal's width: the TTY's, else $COLUMNS, else no limit (output to a file or pipe). */
function terminalColumns(): number | null {
  if (process.stdout.isTTY && process.stdout.columns) return process.stdout.columns;
  const c = Number(process.env.COLUMNS);
  return Number.isInteger(c) && c > 0 ? c : null;
}
