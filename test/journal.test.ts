// Under systemd, log lines go to the journal, which stamps them itself: when JOURNAL_STREAM
// names our stdout/stderr, lines carry a syslog priority ("<6>") and no timestamp of their own.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const LOG = path.resolve(__dirname, '..', 'src', 'log.js');
const PROGRAM = `const { logger } = require(${JSON.stringify(LOG)}); const l = logger('server');
l.debug('not shown'); l.info('listening on udp', { port: 1194 }); l.warn('careful'); l.error('failed', { why: 'a b' });`;

/** Runs PROGRAM with stdout and stderr both into one file; returns what it wrote. */
function runInto(t: { teardown(fn: () => void): unknown }, journal: (st: fs.BigIntStats) => string | undefined): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-journal-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'out');
  const fd = fs.openSync(file, 'w');
  const env: NodeJS.ProcessEnv = { ...process.env, MINIVPN_LOG: 'info' };
  delete env.JOURNAL_STREAM;
  const js = journal(fs.fstatSync(fd, { bigint: true }));
  if (js !== undefined) env.JOURNAL_STREAM = js;
  const r = spawnSync(process.execPath, ['-e', PROGRAM], { stdio: ['ignore', fd, fd], env });
  fs.closeSync(fd);
  if (r.status !== 0) throw new Error(`program failed: ${r.status}`);
  return fs.readFileSync(file, 'utf8');
}

t.test('JOURNAL_STREAM naming our output: priorities, no timestamps', async (t) => {
  const out = runInto(t, (st) => `${st.dev}:${st.ino}`);
  t.equal(out, [
    '<6>INFO  server: listening on udp port=1194',
    '<4>WARN  server: careful',
    '<3>ERROR server: failed why="a b"',
    '',
  ].join('\n'));
});

t.test('JOURNAL_STREAM naming another stream (inherited, output redirected): timestamps', async (t) => {
  const out = runInto(t, (st) => `${st.dev}:${st.ino + 1n}`);
  t.match(out, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO  server: listening on udp port=1194$/m);
  t.notMatch(out, /^</m);
});

t.test('no JOURNAL_STREAM: timestamps', async (t) => {
  const out = runInto(t, () => undefined);
  t.equal(out.split('\n').filter((l) => /^\d{4}-\d\d-\d\dT[\d:.]+Z (INFO |WARN |ERROR)/.test(l)).length, 3);
});
