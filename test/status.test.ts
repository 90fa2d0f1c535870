// The status socket (src/server/status.ts): one JSON document per connection; a snapshot that
// fails answers an error instead of taking the server down; a reader names what went wrong.
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { readStatus, StatusServer } from '../src/server/status';

const tmp = (t: { teardown: (f: () => void) => void }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvstatus-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
};

t.test('answers the snapshot, on a socket only root can open', async (t) => {
  const file = path.join(tmp(t), 'st.sock');
  const s = new StatusServer(file, () => ({ clients: [], n: 3 }));
  await s.listen();
  t.teardown(() => s.close());
  t.same(await readStatus(file), { clients: [], n: 3 });
  t.equal(fs.statSync(file).mode & 0o777, 0o600);
});

t.test('a snapshot that throws: an error document, and the server keeps answering', async (t) => {
  const file = path.join(tmp(t), 'st.sock');
  let fail = true;
  const s = new StatusServer(file, () => { if (fail) throw new Error('boom'); return { ok: true }; });
  await s.listen();
  t.teardown(() => s.close());
  t.same(await readStatus(file), { error: 'status snapshot failed: boom' });
  fail = false;
  t.same(await readStatus(file), { ok: true }, 'still there');
});

t.test('the reader: no JSON, or nobody listening, each with a clear message', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'junk.sock');
  const junk = net.createServer((c) => c.end('not json'));
  await new Promise<void>((r) => junk.listen(file, r));
  t.teardown(() => junk.close());
  await t.rejects(readStatus(file), { message: `${file} answered 8 bytes that are not a JSON document` });
  await t.rejects(readStatus(path.join(dir, 'none.sock')), { message: /cannot read status from .*none\.sock: .*is the server running\?/ });
});
