// The native boundary (native/args.h): every function and method of the addon, called with
// wrong arguments (wrong types, short, detached and plain buffers, numbers out of range,
// the wrong `this`), throws a TypeError or RangeError that names the function and the
// argument, and never crashes the process. Each group of cases runs in a child process
// (test/fixtures/native-args.ts), so that a crash shows as a signal or an AddressSanitizer
// report instead of taking the test runner down. scripts/test-asan.sh runs this test against
// an addon built with AddressSanitizer ($MINIVPN_ADDON), which also catches reads and writes
// out of bounds that happen not to crash.
import t from 'tap';
import path from 'node:path';
import { spawnSync } from 'node:child_process';

const FIXTURE = path.join(__dirname, 'fixtures', 'native-args.js');

interface Line { name?: string; expect?: string; got?: string; message?: string; match?: string | null; done?: number; [k: string]: unknown }

/** Runs one group in a child (the TUN group in a network namespace of its own) and checks every case it printed. */
function group(name: string, wrap: string[] = []): Line[] {
  const [cmd, ...args] = [...wrap, process.execPath, FIXTURE, name];
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60000 });
  const lines: Line[] = r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const stderr = r.stderr.trim().split('\n').slice(-30).join('\n');
  t.test(`${name}: every case`, async (t) => {
    t.equal(r.signal, null, `no crash (signal ${r.signal})${stderr ? `: ${stderr}` : ''}`);
    t.equal(r.status, 0, `the child exits 0${stderr ? `: ${stderr}` : ''}`);
    t.notMatch(r.stderr, /AddressSanitizer|runtime error/, 'no AddressSanitizer report');
    const cases = lines.filter((l) => l.name !== undefined);
    t.equal(lines.find((l) => l.done !== undefined)?.done, cases.length, 'the child ran every case to the end');
    t.ok(cases.length >= 10, `${cases.length} cases`);
    for (const c of cases) {
      t.equal(c.got, c.expect, `${c.name}: ${c.got}${c.message ? ` (${c.message})` : ''}`);
      if (c.match) t.match(c.message, new RegExp(c.match), `${c.name}: the message says what was wrong`);
    }
  });
  return lines;
}

group('module');
const udp = group('udp');
t.equal(udp.find((l) => 'sent' in l)?.sent, 1, 'udp: after the wrong calls, a datagram is still sent');
const dtls = group('dtls');
t.equal(dtls.find((l) => 'opened' in l)?.opened, 'still works', 'dtls: after the wrong calls, a record is still sealed and opened');
// A TUN only inside a network namespace of this child's own, which goes away with it.
group('tun', ['unshare', '--net']);
