// Hooks are rate-limited and coalesced per client (src/os/scripts.ts HookRunner): a client
// reconnecting in a loop cannot make the server spawn a process per attempt, and the last
// event of each client still runs.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HookRunner } from '../src/os/scripts';

t.test('a reconnect loop: a few hooks a second, the last event of each client runs', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-hooks-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const out = path.join(dir, 'events');
  const hook = path.join(dir, 'hook.sh');
  fs.writeFileSync(hook, `#!/bin/sh\necho "$MINIVPN_EVENT $MINIVPN_CN" >> ${out}\n`, { mode: 0o755 });
  const h = new HookRunner(5);
  const info = (cn: string) => ({ tun: 'mvpn0', cn, address: '10.8.0.2', remote: '192.0.2.11:1' });
  for (let i = 0; i < 100; i++) h.run(hook, i % 2 ? 'disconnect' : 'connect', info('alice'));
  h.run(hook, 'connect', info('bob'));
  t.equal(h.started, 5, 'five started at once (the burst), the rest wait');
  h.run(null, 'connect', info('carol'));
  const lines = async (n: number) => {
    for (let k = 0; k < 200; k++) {
      const l = fs.existsSync(out) ? fs.readFileSync(out, 'utf8').trim().split('\n') : [];
      if (l.length >= n) return l;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`fewer than ${n} hook runs`);
  };
  const all = await lines(7);
  t.equal(h.started, 7, 'in all 7: 5 at once, then the two waiting (coalesced)');
  t.equal(h.coalesced, 95 - 1, 'the waiting alice events collapsed into one');
  t.equal(all.filter((l) => l.endsWith('alice')).pop(), 'disconnect alice', "alice's last event ran, last");
  t.ok(all.includes('connect bob'), "bob's event was not lost behind alice's");
  t.notOk(all.some((l) => l.endsWith('carol')), 'no program, no run');
});
