// One line per event: "<ISO time> <LEVEL> <component>: <message> key=value ...".
// Levels let a student turn on detail (MINIVPN_LOG=debug) without drowning in it.
// Never pass secrets (keys, passwords) to the logger.
// Under systemd (JOURNAL_STREAM names the journal's stream), the journal stamps each line
// itself: no timestamp of our own, and a syslog priority prefix ("<6>") so that
// `journalctl -p warning` works.

import * as fs from 'node:fs';

export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const PRIORITY: Record<Level, number> = { debug: 7, info: 6, warn: 4, error: 3 };

/**
 * True when our stdout or stderr is the journal stream systemd named in JOURNAL_STREAM
 * ("device:inode"). Compared, not just present: a program started from a service with its
 * output redirected elsewhere inherits the variable (systemd.exec(5)).
 */
export function writesToJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  for (const fd of [1, 2]) {
    try {
      const st = fs.fstatSync(fd, { bigint: true });
      if (String(st.dev) === m[1] && String(st.ino) === m[2]) return true;
    } catch { /* fd closed */ }
  }
  return false;
}
const JOURNAL = writesToJournal();

let threshold: number = ORDER[(process.env.MINIVPN_LOG as Level) ?? 'info'] ?? ORDER.info;

export function setLevel(level: Level): void {
  threshold = ORDER[level];
}

// Control characters (C0, DEL, C1) in text from the network could end the line early and forge
// another event, or send escapes to a terminal: shown as escapes instead.
const CONTROL = /[\x00-\x1f\x7f-\x9f]/g;
const escapeControl = (s: string) => s.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

function fmt(v: unknown): string {
  if (typeof v === 'string') return /[\s"=\x00-\x1f\x7f-\x9f]/.test(v) ? escapeControl(JSON.stringify(v)) : v;
  if (v instanceof Error) return escapeControl(JSON.stringify(v.message));
  return String(v);
}

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export function logger(component: string): Logger {
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < threshold) return;
    const stamp = JOURNAL ? `<${PRIORITY[level]}>` : `${new Date().toISOString()} `;
    let line = `${stamp}${level.toUpperCase().padEnd(5)} ${component}: ${escapeControl(msg)}`;
    if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) line += ` ${k}=${fmt(v)}`;
    // stderr for warnings and errors, stdout for the rest, so readiness lines can be awaited on stdout.
    (ORDER[level] >= ORDER.warn ? process.stderr : process.stdout).write(line + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}
