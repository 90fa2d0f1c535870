// minivpn server [options]   (as root: it creates a TUN device and firewall rules)
import { ConfigError, HelpRequested, parseServerArgs } from '../config';
import { logger, setLevel } from '../log';
import { VpnServer } from './server';

const log = logger('server');

export async function main(argv: string[]): Promise<void> {
  let cfg;
  try {
    cfg = parseServerArgs(argv);
  } catch (err) {
    if (err instanceof HelpRequested) { process.stdout.write(err.message + '\n'); process.exit(0); }
    if (err instanceof ConfigError) { process.stderr.write(err.message + '\n'); process.exit(2); }
    throw err;
  }
  setLevel(cfg.logLevel);
  const server = new VpnServer(cfg);
  const stop = async (sig: string) => {
    log.info(`${sig} received`);
    await server.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => server.reloadAuthorized());
  try {
    await server.start();
  } catch (err) {
    log.error(`cannot start: ${(err as Error).message}`);
    await server.stop().catch(() => undefined);
    process.exit(1);
  }
}

if (require.main === module) void main(process.argv.slice(2));
