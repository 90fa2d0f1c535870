import t from 'tap';
import { logger, setLevel } from '../src/log';

t.test('logger writes one line per event with fields and respects the level', async (t) => {
  const lines: string[] = [];
  const orig = process.stdout.write.bind(process.stdout);
  (process.stdout as any).write = (s: string) => { lines.push(s); return true; };
  try {
    setLevel('info');
    const log = logger('unit');
    log.debug('hidden');
    log.info('hello world', { peer: '192.0.2.1:1194', n: 3 });
  } finally {
    (process.stdout as any).write = orig;
  }
  t.equal(lines.length, 1);
  t.match(lines[0], /INFO  unit: hello world peer=192\.0\.2\.1:1194 n=3\n$/);
});
