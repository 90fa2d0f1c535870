// minivpn client --server HOST:PORT --name alice, or minivpn client --profile alice.conf
// (as root: it creates a TUN device and routes)
import { ConfigError, HelpRequested, parseClientArgs, splitProgram } from '../config';
import { logger, setLevel } from '../log';
import { LoadedProfile, loadProfile } from '../profile/load';
import { VpnClient } from './client';

const log = logger('client');

export async function main(argv: string[]): Promise<void> {
  let cfg;
  let profile: LoadedProfile | null = null;
  try {
    // A profile is checked whole (format, options, credentials) before anything is sent.
    // (PROG ARGS... after "--" is the client's own, never part of a profile.)
    const { options, program } = splitProgram(argv);
    profile = options.includes('--help') || options.includes('-h') ? null : loadProfile(options);
    cfg = parseClientArgs([...(profile ? profile.argv : options), ...(program.length ? ['--', ...program] : [])]);
  } catch (err) {
    profile?.cleanup();
    if (err instanceof HelpRequested) { process.stdout.write(err.message + '\n'); process.exit(0); }
    if (err instanceof ConfigError) { process.stderr.write(err.message + '\n'); process.exit(2); }
    throw err;
  }
  setLevel(cfg.logLevel);
  for (const w of profile?.warnings ?? []) log.warn(w);
  let client: VpnClient;
  try {
    client = new VpnClient(cfg);
  } catch (err) {
    log.error(`cannot start: ${(err as Error).message}`);
    process.exit(1);
  } finally {
    // The DTLS context has read the profile's credentials: their temporary files can go.
    profile?.cleanup();
  }
  process.on('SIGTERM', () => client.stop());
  process.on('SIGINT', () => client.stop());
  const code = await client.run();
  process.exit(code);
}

if (require.main === module) void main(process.argv.slice(2));
