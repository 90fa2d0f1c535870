// The VMs' Debian packages against what the build asks for: the fast stand-in for
// `npm run test:vagrant` (which takes many minutes). It once failed there only: the box
// lacked tshark, which scripts/deps.sh had come to need, and `vagrant up` stopped.
//
// One list (scripts/packages.txt) serves scripts/deps.sh, build-box.sh and provision.sh.
// Here: that list per use, the box built from it, and then provision.sh and deps.sh run for
// real, as in a VM, in a view of this machine where only the box's packages are installed
// (test/vagrant/box-view.sh: a mount namespace; npm stubbed, apt-get failing). Needs root.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';

const ROOT = path.resolve(__dirname, '..', '..');
const VIEW = path.join(ROOT, 'test', 'vagrant', 'box-view.sh');
const USER = 'nobody'; // the VM's project owner stands for "vagrant": any user but root
t.setTimeout(180_000);

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`, stdout: r.stdout ?? '' };
}
const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean);

function packages(use: string, env: NodeJS.ProcessEnv = {}): string[] {
  const r = run('bash', [path.join(ROOT, 'scripts', 'packages.sh'), use], env);
  if (r.code !== 0) throw new Error(`scripts/packages.sh ${use}: exit ${r.code}\n${r.out}`);
  return lines(r.stdout);
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-boxview-'));
fs.chmodSync(work, 0o755); // the project copies in here belong to USER, who must reach them
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

t.test('one list: what each use gets, and the VMs get what build, demo and lab need', async (t) => {
  const use = Object.fromEntries(['build', 'records', 'demo', 'scale', 'lab', 'test', 'bench', 'vm'].map((u) => [u, packages(u)]));
  t.ok(use.build.includes('g++') && use.build.includes('python3'), `build: ${use.build.join(' ')}`);
  t.same(use.records, use.build, 'records needs what the build needs');
  t.same(use.scale, [...use.demo, 'iperf3'], 'scale needs what the demo needs, and iperf3 (one client\'s throughput)');
  t.ok(use.demo.includes('tshark') && use.lab.includes('tcpreplay') && use.test.includes('chromium'));
  const within = (a: string[], b: string[], what: string) =>
    t.same(a.filter((p) => !b.includes(p)), [], what);
  within(use.build, use.demo, 'demo includes build');
  within(use.demo, use.lab, 'lab includes demo');
  within(use.lab, use.test, 'test includes lab');
  within(use.demo, use.bench, 'bench includes demo');
  for (const u of ['build', 'demo', 'lab']) within(use[u], use.vm, `vm includes ${u}`);
  t.ok(use.vm.includes('nodejs') && use.vm.includes('libnode-dev'), 'the VMs get Node itself');
  t.notOk(use.vm.includes('chromium'), 'but not what only npm test needs');
});

t.test('a package the labs need is one line, and reaches the VMs; a typo is an error', async (t) => {
  const list = path.join(work, 'packages.txt');
  const base = fs.readFileSync(path.join(ROOT, 'scripts', 'packages.txt'), 'utf8');
  fs.writeFileSync(list, `${base}bird2 lab   # added by the test\n`);
  const env = { MINIVPN_PACKAGES_LIST: list };
  for (const u of ['lab', 'test', 'vm']) t.ok(packages(u, env).includes('bird2'), `in ${u}`);
  for (const u of ['build', 'demo', 'bench']) t.notOk(packages(u, env).includes('bird2'), `not in ${u}`);
  fs.writeFileSync(list, `${base}bird2 lba\n`);
  const r = run('bash', [path.join(ROOT, 'scripts', 'packages.sh'), 'vm'], env);
  t.not(r.code, 0, 'packages.sh fails');
  t.match(r.out, /line \d+: unknown use lba/, 'and names the line and the bad use');
});

const box = lines(run('bash', [path.join(ROOT, 'scripts', 'vagrant', 'build-box.sh'), '--list-packages']).stdout);

t.test('build-box.sh puts into the box every package the VMs need', async (t) => {
  t.ok(box.includes('openssh-server') && box.includes('linux-image-amd64'), `the box: ${box.join(' ')}`);
  t.same(packages('vm').filter((p) => !box.includes(p)), [], 'nothing of `packages.sh vm` is left out');
});

// The rest runs scripts in views of this machine, which needs a mount namespace.
const isRoot = process.getuid?.() === 0;
function prepare(name: string, pkgs: string[]): string {
  const dir = path.join(work, name);
  if (fs.existsSync(dir)) return dir; // made by an earlier test, from the same packages
  const r = run('bash', [VIEW, 'prepare', dir, ...pkgs]);
  if (r.code !== 0) throw new Error(`box-view.sh prepare: ${r.out}`);
  return dir;
}
// A copy of what provisioning uses, owned by USER as /vagrant is by "vagrant" in a VM.
let copies = 0;
function projectCopy(): string {
  const dir = path.join(work, `project-${++copies}`);
  fs.mkdirSync(dir);
  for (const f of ['scripts', 'package.json', 'package-lock.json']) fs.cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true });
  const r = run('chown', ['-R', USER, dir]);
  if (r.code !== 0) throw new Error(`chown: ${r.out}`);
  return dir;
}
function inView(view: string, args: string[]) {
  fs.writeFileSync(path.join(view, 'log'), '');
  const r = run('bash', [VIEW, 'run', view, ...args]);
  return { ...r, log: fs.readFileSync(path.join(view, 'log'), 'utf8') };
}
const depsAs = (view: string, use: string) =>
  inView(view, ['runuser', '-u', USER, '--', 'bash', path.join(projectCopy(), 'scripts', 'deps.sh'), use]);
const provision = (view: string) => {
  const src = projectCopy();
  return inView(view, ['env', `MINIVPN_SRC=${src}`, 'MINIVPN_OFFLINE=1', 'bash', path.join(src, 'scripts', 'vagrant', 'provision.sh'), 'server']);
};

t.test('in the box: deps.sh has everything it asks for, for build, demo and lab', async (t) => {
  if (!isRoot) return t.fail('needs root (a mount namespace for the view of the box); run the tests with sudo');
  const bare = prepare('bare', ['nodejs']); // Debian's base and Node only: deps.sh names all it needs
  const view = prepare('box', box);
  const inBox = lines(fs.readFileSync(path.join(view, 'installed'), 'utf8'));
  for (const use of ['build', 'demo', 'lab']) {
    const asked = depsAs(bare, use);
    const m = /missing system packages: ([^(]+)\(/.exec(asked.out);
    t.ok(m, `deps.sh ${use} on a bare system names what it needs\n${asked.out}`);
    const needs = m ? m[1].trim().split(/\s+/) : [];
    t.ok(needs.length > 0, `deps.sh ${use} needs: ${needs.join(' ')}`);
    t.same(needs.filter((p) => !inBox.includes(p)), [], `the box has all of it (${use})`);
    const r = depsAs(view, use);
    t.equal(r.code, 0, `deps.sh ${use} as ${USER}, in the box: exit 0\n${r.out}`);
    t.notMatch(r.out, /missing/, 'nothing missing');
  }
});

t.test('in the box: provision.sh builds as a user other than root, offline', async (t) => {
  if (!isRoot) return t.fail('needs root (a mount namespace for the view of the box); run the tests with sudo');
  const r = provision(prepare('box', box));
  t.equal(r.code, 0, `provision.sh server: exit 0\n${r.out}`);
  t.match(r.out, /Debian packages: all \d+ present/);
  t.match(r.out, /the native addon loads with Node v\d+/, 'and checks that the VM\'s Node loads the addon');
  const ci = lines(r.log).find((l) => l.startsWith('npm ci '));
  t.ok(ci, `npm ci ran\n${r.log}`);
  t.notMatch(ci ?? '', /\(uid 0\)/, `and not as root: ${ci}`);
  t.notMatch(r.log, /^apt-get/m, 'apt-get never ran (the box had everything)');
});

// Negative control, and the failure the issue saw: the box as it was, without tshark.
t.test('a box without tshark fails provisioning, naming tshark', async (t) => {
  if (!isRoot) return t.fail('needs root (a mount namespace for the view of the box); run the tests with sudo');
  const r = provision(prepare('box-no-tshark', box.filter((p) => p !== 'tshark')));
  t.not(r.code, 0, 'provision.sh fails');
  t.match(r.out, /tshark/, `and names tshark\n${r.out}`);
  t.notMatch(r.log, /^npm ci/m, 'before any build');
});
