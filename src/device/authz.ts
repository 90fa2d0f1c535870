// Which clients may connect: one file per authorized CN in a directory, the file name
// being the CN (its content is ignored; use it for notes). Authorizing a client is
// `touch clients/alice`, revoking it is `rm clients/alice` followed by a rescan.
//
// A valid certificate proves *who* a client is; this list says whether that identity is
// *allowed in*. Keeping the two apart lets you revoke access without touching the PKI.

import * as fs from 'fs';
import * as path from 'path';
import { logger } from '../log';
import { isValidCn } from '../wire/control';

const log = logger('authz');

export class AuthorizedClients {
  readonly dir: string;
  private current = new Set<string>();
  /** Names already warned about, so a rescan loop does not repeat the same warning. */
  private warned = new Set<string>();

  /** Reads `dir` once. Throws, naming the path, when it is missing or not a directory. */
  constructor(dir: string) {
    this.dir = path.resolve(dir);
    let st: fs.Stats;
    try {
      st = fs.statSync(this.dir);
    } catch (e) {
      throw new Error(`authorized clients directory ${this.dir} cannot be read: ${(e as Error).message}`);
    }
    if (!st.isDirectory()) throw new Error(`authorized clients directory ${this.dir} is not a directory`);
    this.scan();
  }

  /**
   * Re-reads the directory and reports which CNs appeared and disappeared since the last
   * scan. If the directory cannot be read any more, nobody is authorized (fail closed).
   */
  scan(): { added: string[]; removed: string[] } {
    const next = new Set<string>();
    let entries: fs.Dirent[] = [];
    try {
      entries = fs.readdirSync(this.dir, { withFileTypes: true });
    } catch (e) {
      log.error('cannot read authorized clients directory, authorizing nobody', { dir: this.dir, error: (e as Error).message });
    }
    for (const ent of entries) {
      const name = ent.name;
      if (name.startsWith('.')) continue; // editor swap files, .gitkeep, ...
      if (!isValidCn(name)) {
        this.warnOnce(name, 'ignoring file: not a valid CN (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)');
        continue;
      }
      if (!this.isFile(ent)) {
        this.warnOnce(name, 'ignoring entry: not a regular file');
        continue;
      }
      next.add(name);
    }
    const added = [...next].filter((cn) => !this.current.has(cn)).sort();
    const removed = [...this.current].filter((cn) => !next.has(cn)).sort();
    this.current = next;
    if (added.length || removed.length) {
      log.info('authorized clients changed', { added: added.join(',') || undefined, removed: removed.join(',') || undefined, total: next.size });
    }
    return { added, removed };
  }

  has(cn: string): boolean {
    return this.current.has(cn);
  }

  /** The authorized CNs, sorted. */
  get list(): string[] {
    return [...this.current].sort();
  }

  private isFile(ent: fs.Dirent): boolean {
    if (ent.isFile()) return true;
    if (!ent.isSymbolicLink()) return false;
    try {
      return fs.statSync(path.join(this.dir, ent.name)).isFile();
    } catch {
      return false; // dangling link
    }
  }

  private warnOnce(name: string, msg: string): void {
    if (this.warned.has(name)) return;
    this.warned.add(name);
    log.warn(msg, { dir: this.dir, name });
  }
}
