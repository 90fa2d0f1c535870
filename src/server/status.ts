// The status socket: a local Unix socket that answers one JSON document per connection.
// `npm run status` reads it; nothing on it can change the server.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { logger } from '../log';

const log = logger('status');

export class StatusServer {
  private server: net.Server | null = null;

  constructor(readonly file: string, private readonly snapshot: () => unknown) {}

  async listen(): Promise<void> {
    fs.mkdirSync(path.dirname(path.resolve(this.file)), { recursive: true });
    try { fs.unlinkSync(this.file); } catch { /* not there */ }
    this.server = net.createServer((c) => {
      c.on('error', () => undefined);
      let doc: unknown;
      try {
        doc = this.snapshot();
      } catch (err) {
        // A bug in the status, not in the tunnel: say so on the socket and in the log, keep running.
        log.error('status snapshot failed', { error: (err as Error).message });
        doc = { error: `status snapshot failed: ${(err as Error).message}` };
      }
      c.end(JSON.stringify(doc) + '\n');
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.file, () => resolve());
    });
    fs.chmodSync(this.file, 0o600); // the status names clients and addresses: root only
    this.server.unref();
    log.debug('status socket ready', { file: this.file });
  }

  async close(): Promise<void> {
    if (!this.server) return;
    await new Promise((r) => this.server!.close(() => r(undefined)));
    try { fs.unlinkSync(this.file); } catch { /* gone */ }
  }
}

/** Reads one status document from the socket. */
export function readStatus(file: string, timeoutMs = 3000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = net.connect(file);
    let data = '';
    const t = setTimeout(() => { c.destroy(); reject(new Error(`no answer from ${file}`)); }, timeoutMs);
    c.on('data', (d) => (data += d));
    c.on('end', () => {
      clearTimeout(t);
      try { resolve(JSON.parse(data)); } catch { reject(new Error(`${file} answered ${data.length} bytes that are not a JSON document`)); }
    });
    c.on('error', (err) => { clearTimeout(t); reject(new Error(`cannot read status from ${file}: ${err.message} (is the server running?)`)); });
  });
}
