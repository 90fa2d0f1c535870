// `minivpn pki [options]` (or `npm run pki -- [options]`): writes the lab PKI (see pki.ts
// for the layout). `minivpn pki export NAME ...`: a client's one-file profile (src/profile).

import { clientNameProblem } from '../config';

const USAGE = `usage: minivpn pki [options]        (or: npm run pki -- [options])
       minivpn pki export NAME --server HOST:PORT > NAME.conf   (see: minivpn pki export --help)
Creates a lab certificate authority, a server certificate and client certificates.
Running it again keeps the existing CA and certificates and only adds what is missing,
so "minivpn pki --clients dave" adds a client later. "export" writes one client's profile:
one file with the server's address, the CA, the client's certificate and key.

  --out DIR            where to write (default: pki)
  --clients a,b,c      client names, comma-separated (default: alice,bob,carol);
                       1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit
  --server-name NAME   DNS name (or IP address) in the server certificate (default: server.minivpn.test)
  --days N             validity of server and client certificates (default: 365)
  --force              start over: new CA, server and client certificates
  --no-authorize       do not add the clients to DIR/authorized
  --help               show this text
`;

interface CliOpts { out: string; clients: string[]; serverName: string; days: number; force: boolean; authorize: boolean }

class UsageError extends Error {}

function parseArgs(argv: string[]): CliOpts | null {
  const o: CliOpts = { out: 'pki', clients: ['alice', 'bob', 'carol'], serverName: 'server.minivpn.test', days: 365, force: false, authorize: true };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq >= 0) return arg.slice(eq + 1);
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new UsageError(`${name} needs a value`);
      i++;
      return next;
    };
    switch (name) {
      case '--help': case '-h': return null;
      case '--out': o.out = value(); if (o.out === '') throw new UsageError('--out: expected a directory'); break;
      case '--clients': {
        o.clients = value().split(',').map((s) => s.trim()).filter((s) => s !== '');
        for (const cn of o.clients) {
          const p = clientNameProblem(cn);
          if (p) throw new UsageError(`--clients: bad client name ${JSON.stringify(cn)}: ${p}`);
        }
        break;
      }
      case '--server-name': o.serverName = value(); break;
      case '--days': {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 36500) throw new UsageError(`--days: expected an integer from 1 to 36500, got ${JSON.stringify(v)}`);
        o.days = Number(v);
        break;
      }
      case '--force': o.force = true; break;
      case '--no-authorize': o.authorize = false; break;
      default: throw new UsageError(`unknown option ${JSON.stringify(arg)}`);
    }
  }
  return o;
}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'export') {
    const { exportMain } = await import('../profile/export');
    return exportMain(argv.slice(1));
  }
  let o: CliOpts | null;
  try {
    o = parseArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`[pki] error: ${err.message} (see --help)\n`);
    return 2;
  }
  if (o === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  try {
    // Loaded only now: the certificate library takes a moment to load, and --help or a
    // mistyped option should answer at once.
    const { writeLabPki } = await import('./pki');
    await writeLabPki(o.out, {
      clients: o.clients,
      serverName: o.serverName,
      days: o.days,
      authorize: o.authorize,
      force: o.force,
      progress: (line) => process.stdout.write(`[pki] ${line}\n`),
    });
  } catch (err) {
    process.stderr.write(`[pki] error: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(`[pki] done: ${o.out}/ (server name ${o.serverName}, clients: ${o.clients.join(', ') || 'none'})\n`);
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err) => {
    process.stderr.write(`[pki] error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exitCode = 1;
  });
}
