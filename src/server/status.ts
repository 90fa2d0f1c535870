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
    let st: fs.Stats | null = null;
    try { st = fs.lstatSync(this.file); } catch { /* not there */ }
    // Only a socket of ours is replaced; a symbolic link (or any other file) in its place is
    // refused rather than followed or removed.
    if (st !== null && !st.isSocket()) throw new Error(`status socket ${this.file}: ${st.isSymbolicLink() ? 'is a symbolic link' : 'exists and is not a socket'}; refusing to replace it`);
    if (st !== null) fs.unlinkSync(this.file);
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
    // Made 0600 from the start (the umask), not chmod-ed after: no moment in which others could
    // connect. The status names clients and addresses: root only.
    const umask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server!.once('error', reject);
        this.server!.listen(this.file, () => resolve());
      });
    } finally {
      process.umask(umask);
    }
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
