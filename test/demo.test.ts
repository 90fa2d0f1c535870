// `minivpn demo` (what `npm run demo` runs) end to end: its own assertions (what's-my-IP before/after, the LAN host
// reachable only through the tunnel, HTTP readable on the wire only in plaintext mode)
// make it exit non-zero on any failure; here we also check what it printed.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { uniquePrefix } from '../src/lab/topology';

// (The minivpn command itself, not through npx: test/cli.test.ts covers npx, whose first run
// on a machine installs the project into its cache.)
t.test('minivpn demo (npm run demo runs the same script)', { timeout: 480_000 }, async (t) => {
  const prefix = uniquePrefix('demo');
  const r = spawnSync(process.execPath, [path.resolve(__dirname, '..', '..', 'bin', 'minivpn.js'), 'demo'], {
    cwd: path.resolve(__dirname, '..', '..'),
    encoding: 'utf8', timeout: 470_000, env: { ...process.env, LAB_PREFIX: prefix, MINIVPN_SKIP_DEPS: '1' },
  });
  t.equal(r.status, 0, `demo exits 0 (stderr: ${r.stderr.slice(-500)})`);
  t.match(r.stdout, /before the tunnel, the web host sees the client's own address: 192\.0\.2\.11/);
  t.match(r.stdout, /the private LAN host 10\.9\.0\.10 is unreachable without the tunnel/);
  t.match(r.stdout, /what's-my-IP through the tunnel: 198\.51\.100\.2/);
  t.match(r.stdout, /the private LAN host 10\.9\.0\.10 answers through the tunnel/);
  t.match(r.stdout, /plaintext\s+yes/);
  t.match(r.stdout, /dtls\s+no\s+DTLS records/);
  t.match(r.stdout, /demo OK/);
  const left = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
  t.notMatch(left, new RegExp(`^${prefix}-`, 'm'), 'the demo removed its namespaces');
});
