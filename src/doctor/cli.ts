// `minivpn doctor [server|client] [the same options]`: one line per check, "ok" or "FAIL"
// with how to fix it; exit status 0 only if every check passes. The checks: checks.ts.
import fs from 'node:fs';
import { ConfigError, HelpRequested, parseClientArgs, parseServerArgs } from '../config';
import { optionArgs } from '../profile/format';
import { readProfileFile, takeProfileFlag } from '../profile/load';
import { CHECKS, Context, Creds, Pem, Result } from './checks';

const USAGE = `usage: minivpn doctor [server] [server options]
       minivpn doctor client --profile NAME.conf   (or the client's other options)
Checks what a VPN needs on this machine, with the options the server (or client) would be
given, and says how to fix each problem: /dev/net/tun, CAP_NET_ADMIN, ip_forward, iptables,
the underlay MTU against the tunnel MTU, the UDP port, the clock against the certificates,
the certificate chain, the key pair, the authorized clients directory.
One line per check; the exit status is 0 only if every check passes.
Run it as the server or client will run: as root, in its directory (relative paths).
`;

function fileCred(file: string): Pem {
  try {
    return { where: file, text: fs.readFileSync(file, 'utf8') };
  } catch (err) {
    return { where: file, error: `${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` };
  }
}

function baseContext(role: 'server' | 'client'): Omit<Context, 'creds' | 'renew'> {
  return { role, now: Date.now(), env: process.env, tunDevice: '/dev/net/tun', procDir: '/proc' };
}

function serverContext(args: string[]): Context {
  const server = parseServerArgs(args);
  return {
    ...baseContext('server'),
    server,
    creds: server.plaintext ? null : { ca: fileCred(server.ca), cert: fileCred(server.cert), key: fileCred(server.key) },
    renew: 'minivpn pki --out DIR (it reissues expired certificates; --force makes a new CA)',
  };
}

function clientContext(args: string[]): Context {
  const taken = takeProfileFlag(args);
  if (taken) {
    const { file, rest } = taken;
    const { profile } = readProfileFile(file);
    const client = parseClientArgs([...optionArgs(profile), '--ca=ca.crt', '--cert=client.crt', '--key=client.key', ...rest]);
    const block = (b: 'ca' | 'cert' | 'key', what: string): Pem => ({ where: `${file} (${what})`, text: profile[b] });
    const creds: Creds = { ca: block('ca', 'its CA'), cert: block('cert', 'its certificate'), key: block('key', 'its key') };
    return { ...baseContext('client'), client, creds, renew: 'ask for a new profile (minivpn pki export on the server)' };
  }
  const client = parseClientArgs(args);
  return {
    ...baseContext('client'),
    client,
    creds: client.plaintext ? null : { ca: fileCred(client.ca), cert: fileCred(client.cert), key: fileCred(client.key) },
    renew: 'ask for new certificates (minivpn pki on the server)',
  };
}

export function formatLine(name: string, r: Result): string {
  return `${r.ok ? 'ok  ' : 'FAIL'}  ${name.padEnd(17)} ${r.detail}${r.ok || !r.advice ? '' : ` -> fix: ${r.advice}`}`;
}

/** Runs the checks for ctx.role; prints one line each; resolves with the number that failed. */
export async function runChecks(ctx: Context, out: (line: string) => void): Promise<number> {
  let failed = 0;
  for (const c of CHECKS.filter((x) => x.roles.includes(ctx.role))) {
    let r: Result;
    try {
      r = await c.run(ctx);
    } catch (err) {
      r = { ok: false, detail: `the check itself failed: ${(err as Error).message}`, advice: 'please report this' };
    }
    if (!r.ok) failed++;
    out(formatLine(c.name, r));
  }
  return failed;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const role = argv[0] === 'client' || (argv[0] !== 'server' && argv.some((a) => a === '--profile' || a.startsWith('--profile='))) ? 'client' : 'server';
  const args = argv[0] === 'server' || argv[0] === 'client' ? argv.slice(1) : argv;
  let ctx: Context;
  try {
    ctx = role === 'server' ? serverContext(args) : clientContext(args);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof HelpRequested) {
      process.stderr.write(`doctor: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const print = (line: string) => process.stdout.write(line + '\n');
  const total = CHECKS.filter((x) => x.roles.includes(role)).length;
  const failed = await runChecks(ctx, print);
  print(failed === 0 ? `doctor: all ${total} checks pass (${role})` : `doctor: ${failed} of ${total} checks fail (${role}): see "fix:" above`);
  return failed === 0 ? 0 : 1;
}
