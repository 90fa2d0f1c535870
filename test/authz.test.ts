import t from 'tap';
import * as fs from 'fs';
import * as path from 'path';
import { AuthorizedClients } from '../src/device/authz';
import { setLevel } from '../src/log';

setLevel('warn');

function captureStderr<T>(fn: () => T): { value: T; err: string } {
  const chunks: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  (process.stderr as any).write = (s: string) => {
    chunks.push(String(s));
    return true;
  };
  try {
    return { value: fn(), err: chunks.join('') };
  } finally {
    (process.stderr as any).write = orig;
  }
}

t.test('reads one file per CN at construction', async (t) => {
  const dir = t.testdir({ alice: '', 'bob.example.org': 'note: lab group 2', 'client-03': '' });
  const authz = new AuthorizedClients(dir);
  t.same(authz.list, ['alice', 'bob.example.org', 'client-03']);
  t.ok(authz.has('alice'));
  t.ok(authz.has('bob.example.org'));
  t.notOk(authz.has('mallory'));
  t.notOk(authz.has('Alice'), 'case-sensitive');
  t.notOk(authz.has(''), 'empty CN');
  t.equal(authz.dir, path.resolve(dir));
});

t.test('rescan reports added and removed CNs', async (t) => {
  const dir = t.testdir({ alice: '', bob: '' });
  const authz = new AuthorizedClients(dir);
  t.same(authz.scan(), { added: [], removed: [] }, 'nothing changed');

  fs.writeFileSync(path.join(dir, 'carol'), '');
  fs.writeFileSync(path.join(dir, 'dave'), '');
  fs.rmSync(path.join(dir, 'alice'));
  t.same(authz.scan(), { added: ['carol', 'dave'], removed: ['alice'] });
  t.notOk(authz.has('alice'), 'revoked');
  t.ok(authz.has('carol'));
  t.same(authz.list, ['bob', 'carol', 'dave']);

  fs.rmSync(path.join(dir, 'bob'));
  fs.rmSync(path.join(dir, 'carol'));
  fs.rmSync(path.join(dir, 'dave'));
  t.same(authz.scan(), { added: [], removed: ['bob', 'carol', 'dave'] });
  t.same(authz.list, []);
});

t.test('dotfiles, invalid names and non-files are ignored, warned about once', async (t) => {
  const dir = t.testdir({
    alice: '',
    '.gitkeep': '',
    '.alice.swp': '',
    'has space': '',
    '-dash': '',
    'at@sign': '',
    ['x'.repeat(65)]: '',
    'a-directory': {},
    'link-to-alice': t.fixture('symlink', 'alice'),
    dangling: t.fixture('symlink', 'does-not-exist'),
  });
  const { value: authz, err } = captureStderr(() => new AuthorizedClients(dir));
  t.same(authz.list, ['alice', 'link-to-alice'], 'a symlink to a file counts');
  t.match(err, /not a valid CN.*name="has space"/);
  t.match(err, /not a valid CN.*name=-dash/);
  t.match(err, /not a valid CN.*name=at@sign/);
  t.match(err, /not a regular file.*name=a-directory/);
  t.match(err, /not a regular file.*name=dangling/);
  t.notMatch(err, /gitkeep|swp/, 'dotfiles are skipped silently');
  t.equal(err.trim().split('\n').length, 6, 'one warning per bad name');

  const again = captureStderr(() => authz.scan());
  t.same(again.value, { added: [], removed: [] });
  t.equal(again.err, '', 'no repeated warnings on rescan');
});

t.test('a missing or unusable directory', async (t) => {
  const base = t.testdir({ 'a-file': '' });
  const missing = path.join(base, 'clients');
  t.throws(() => new AuthorizedClients(missing), {
    message: new RegExp(`authorized clients directory ${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} cannot be read`),
  });
  t.throws(() => new AuthorizedClients(path.join(base, 'a-file')), /is not a directory/);

  // The directory disappears after startup: fail closed, nobody is authorized.
  fs.mkdirSync(missing);
  fs.writeFileSync(path.join(missing, 'alice'), '');
  const authz = new AuthorizedClients(missing);
  t.ok(authz.has('alice'));
  fs.rmSync(missing, { recursive: true });
  const { value, err } = captureStderr(() => authz.scan());
  t.same(value, { added: [], removed: ['alice'] });
  t.notOk(authz.has('alice'));
  t.match(err, /cannot read authorized clients directory, authorizing nobody/);
});
