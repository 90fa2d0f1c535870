// The Vagrantfile passes `vagrant validate`: the fast check, part of `npm test`.
// (`npm run test:vagrant` brings both VMs up for real; it is slow, see docs/VAGRANT.md.)
// Vagrant and vagrant-libvirt come from Debian's packages, installed here when missing, so
// that the libvirt settings are checked too; without them this test fails, it never skips.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';

const ROOT = path.resolve(__dirname, '..', '..');
// A first run may install vagrant with apt-get: waiting for apt's lock (a fresh machine's daily
// update may hold it) and the download can take many minutes.
t.setTimeout(1_800_000);

function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 1_200_000, ...opts });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

const haveVagrantLibvirt = () => run('vagrant', ['plugin', 'list']).out.includes('vagrant-libvirt');

// Returns null when vagrant with vagrant-libvirt is ready, else why not.
function ensureVagrant(): string | null {
  if (run('vagrant', ['--version']).code === 0 && haveVagrantLibvirt()) return null;
  if (process.getuid?.() !== 0) return 'vagrant and vagrant-libvirt are not installed, and only root can apt-get install them';
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // apt-get update does not wait for apt's lock (a fresh machine's daily apt run may hold it): retried.
  let upd = run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update', '-qq'], { env });
  for (let i = 0; i < 60 && upd.code !== 0 && upd.out.includes('Could not get lock'); i++) {
    spawnSync('sleep', ['10']);
    upd = run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update', '-qq'], { env });
  }
  if (upd.code !== 0) return `apt-get update failed: ${upd.out.slice(-500)}`;
  const inst = run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-qq', '--no-install-recommends', 'vagrant', 'vagrant-libvirt'], { env });
  if (inst.code !== 0) return `apt-get install vagrant vagrant-libvirt failed: ${inst.out.slice(-500)}`;
  return haveVagrantLibvirt() ? null : 'vagrant-libvirt still missing after apt-get install';
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-vagrant-validate-'));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

// Vagrant's state goes to a temporary folder: no .vagrant/ in the project, nothing in ~.
function validate(dir: string, extraEnv: Record<string, string> = {}, args: string[] = []) {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    VAGRANT_HOME: path.join(work, 'home'),
    VAGRANT_DOTFILE_PATH: path.join(work, 'dot'),
    VAGRANT_CHECKPOINT_DISABLE: '1',
    ...extraEnv,
  };
  for (const k of Object.keys(env)) if (k.startsWith('MINIVPN_') && !(k in extraEnv)) delete env[k];
  return run('vagrant', ['validate', ...args], { cwd: dir, env });
}

const problem = ensureVagrant();

t.test('vagrant is installed (Debian packages vagrant, vagrant-libvirt)', async (t) => {
  t.equal(problem, null, problem ?? 'ready');
});

t.test('vagrant validate: the Vagrantfile as students use it', async (t) => {
  if (problem) return t.fail(`cannot validate: ${problem}`);
  const r = validate(ROOT);
  t.equal(r.code, 0, `vagrant validate exits 0\n${r.out}`);
  t.match(r.out, /Vagrantfile validated successfully/);
  t.notOk(fs.existsSync(path.join(ROOT, '.vagrant')), 'no .vagrant/ left in the project');
});

t.test('vagrant validate: both machines, server and client', async (t) => {
  if (problem) return t.fail(`cannot validate: ${problem}`);
  const r = validate(ROOT, {}, ['--ignore-provider']);
  t.equal(r.code, 0, r.out);
  t.match(r.out, /==> server:/, 'machine "server" is defined');
  t.match(r.out, /==> client:/, 'machine "client" is defined');
});

t.test('vagrant validate: the settings npm run test:vagrant uses (isolated, emulated)', async (t) => {
  if (problem) return t.fail(`cannot validate: ${problem}`);
  const cache = path.join(work, 'npm-cache');
  fs.mkdirSync(cache, { recursive: true });
  const r = validate(ROOT, {
    VAGRANT_DEFAULT_PROVIDER: 'libvirt',
    MINIVPN_BOX: 'minivpn-test/debian13',
    MINIVPN_ISOLATED: '1',
    MINIVPN_LIBVIRT_DRIVER: 'qemu',
    MINIVPN_LIBVIRT_POOL: 'minivpn-vagrant-test',
    MINIVPN_NPM_CACHE: cache,
    MINIVPN_PREBUILT: '1',
    MINIVPN_MEMORY: '1536',
    MINIVPN_CPUS: '1',
  });
  t.equal(r.code, 0, r.out);
  t.match(r.out, /Vagrantfile validated successfully/);
});

// Negative control: validation really reads the libvirt settings, so a mistake in them
// would fail this test rather than slip through.
t.test('vagrant validate rejects a misspelled libvirt setting', async (t) => {
  if (problem) return t.fail(`cannot validate: ${problem}`);
  const dir = path.join(work, 'broken');
  fs.mkdirSync(path.join(dir, 'scripts', 'vagrant'), { recursive: true });
  fs.copyFileSync(path.join(ROOT, 'scripts', 'vagrant', 'provision.sh'), path.join(dir, 'scripts', 'vagrant', 'provision.sh'));
  const good = fs.readFileSync(path.join(ROOT, 'Vagrantfile'), 'utf8');
  t.match(good, /lv\.memory = MEMORY/);
  fs.writeFileSync(path.join(dir, 'Vagrantfile'), good.replace('lv.memory = MEMORY', 'lv.memroy = MEMORY'));
  const r = validate(dir, { VAGRANT_DEFAULT_PROVIDER: 'libvirt' });
  t.not(r.code, 0, 'vagrant validate fails');
  t.match(r.out, /memroy/, 'and names the bad setting');
});
