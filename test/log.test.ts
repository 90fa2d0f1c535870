import t from 'tap';
import { logger, setLevel } from '../src/log';

/** The lines `fn` wrote to stdout (the logger's info lines go there). */
function captureStdout(fn: () => void): string[] {
  const lines: string[] = [];
  const orig = process.stdout.write.bind(process.stdout);
  (process.stdout as any).write = (s: string) => { lines.push(s); return true; };
  try {
    fn();
  } finally {
    (process.stdout as any).write = orig;
  }
  return lines;
}

t.test('logger writes one line per event with fields and respects the level', async (t) => {
  const lines = captureStdout(() => {
    setLevel('info');
    const log = logger('unit');
    log.debug('hidden');
    log.info('hello world', { peer: '192.0.2.1:1194', n: 3 });
  });
  t.equal(lines.length, 1);
  t.match(lines[0], /INFO  unit: hello world peer=192\.0\.2\.1:1194 n=3\n$/);
});

t.test('text from the network cannot forge a log line or send terminal escapes', async (t) => {
  const lines = captureStdout(() => {
    setLevel('info');
    const log = logger('unit');
    const forged = 'x\n2025-01-01T00:00:00.000Z INFO  client: tunnel up';
    log.info(`server closed the tunnel: ${forged}`, { reason: forged, esc: 'a\x1b[2Jb', c1: 'q\x9br', del: 'y\x7fz' });
  });
  t.equal(lines.length, 1);
  t.equal(lines[0].split('\n').length, 2, 'one line: the only newline is the last character');
  t.match(lines[0], /server closed the tunnel: x\\x0a2025-01-01T00:00:00\.000Z INFO  client: tunnel up reason="x\\n2025/, 'in the message and in a field, the newline is shown escaped');
  t.notOk(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/.test(lines[0]), 'no control character is written');
  t.match(lines[0], / esc="a\\u001b\[2Jb" c1="q\\x9br" del="y\\x7fz"\n$/);
});
