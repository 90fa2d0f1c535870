// npm run client -- --server HOST:PORT --name alice   (as root: it creates a TUN device and routes)
import { ConfigError, HelpRequested, parseClientArgs } from '../config';
import { logger, setLevel } from '../log';
import { VpnClient } from './client';

const log = logger('client');

async function main(): Promise<void> {
  let cfg;
  try {
    cfg = parseClientArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof HelpRequested) { process.stdout.write(err.message + '\n'); process.exit(0); }
    if (err instanceof ConfigError) { process.stderr.write(err.message + '\n'); process.exit(2); }
    throw err;
  }
  setLevel(cfg.logLevel);
  let client: VpnClient;
  try {
    client = new VpnClient(cfg);
  } catch (err) {
    log.error(`cannot start: ${(err as Error).message}`);
    process.exit(1);
  }
  process.on('SIGTERM', () => client.stop());
  process.on('SIGINT', () => client.stop());
  const code = await client.run();
  process.exit(code);
}

void main();
