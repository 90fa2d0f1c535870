// Runs every lab notebook (labs/NN-*.md) for real, each in its own lab (needs root), and
// tests the runner and `npm run lab` on small notebooks made here: background commands,
// Ctrl-C, timeouts, failing checkpoints, refusing a busy lab, checking a student's work.
import t from 'tap';
import { renderPage } from './helpers/chromium';
import { spawn, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkpoints, listNotebooks, loadNotebook, repoRoot } from '../src/lab/notebook';
import { HostCommand, RunResult, runNotebook } from '../src/lab/runner';
import { labScript, uniquePrefix } from '../src/lab/topology';

const ROOT = repoRoot();
const CLI = path.join(ROOT, 'dist', 'src', 'lab', 'cli.js');
const F = '```';
const notebooks = listNotebooks();
// A generous budget: each notebook builds and removes its own lab.
t.setTimeout((240 + 180 * notebooks.length) * 1000);

const prefixes: string[] = [];
function newPrefix(tag: string): string {
  const p = uniquePrefix(tag);
  prefixes.push(p);
  return p;
}

// Alive = exists and is not a zombie (a killed orphan may wait a moment to be reaped).
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function namespaces(prefix: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n').map((l) => l.split(' ')[0]).filter((n) => n.startsWith(`${prefix}-`));
}

// Safety net: whatever a failed assertion left behind goes.
t.teardown(async () => {
  for (const p of prefixes) if (namespaces(p).length) await labScript(p, ['down']);
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'labs-test-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

function writeNotebook(name: string, text: string): string {
  const f = path.join(tmp, name);
  fs.writeFileSync(f, text);
  return f;
}

interface CliResult { code: number; stdout: string; stderr: string }
function cli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 180_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr }); });
  });
}

/** Runs a notebook; took(a, b): ms from the first log line holding a to the first after it holding b. */
async function run(file: string, prefix: string, opts: { home?: string } = {}): Promise<{ r: RunResult; log: string; took: (a: string, b: string) => number }> {
  const lines: string[] = [];
  const times: number[] = [];
  const r = await runNotebook(loadNotebook(file), { prefix, out: (l) => { lines.push(l); times.push(Date.now()); }, home: opts.home });
  const took = (a: string, b: string) => {
    const i = lines.findIndex((l) => l.includes(a));
    const j = lines.findIndex((l, k) => k > i && l.includes(b));
    return i < 0 || j < 0 ? Infinity : times[j] - times[i];
  };
  return { r, log: lines.join('\n'), took };
}

// ---------------------------------------------------------------------------------------
// The real notebooks

t.test('every notebook in labs/ passes every checkpoint, in its own lab', async (t) => {
  t.ok(notebooks.length >= 1, 'found the notebooks');
  for (const file of notebooks) {
    await t.test(path.basename(file), async (t) => {
      const nb = loadNotebook(file);
      const prefix = newPrefix('n');
      const home = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-labhome-'));
      t.teardown(() => fs.rmSync(home, { recursive: true, force: true }));
      const { r, log } = await run(file, prefix, { home });
      t.ok(r.ok, `notebook passed${r.ok ? '' : `:\n${log}`}`);
      t.equal(r.steps.length, nb.steps.length, 'every step ran');
      t.same(r.checkpoints.map((c) => c.title), checkpoints(nb), 'every checkpoint was checked, in order');
      t.ok(r.checkpoints.length > 0 && r.checkpoints.every((c) => c.ok), 'every checkpoint passed');
      t.match(log, new RegExp(`step ${nb.steps.length}/${nb.steps.length}: `), 'progress names the steps');
      t.same(namespaces(prefix), [], 'the lab is gone');
      // Every capture report the notebook wrote, as a student's browser shows it.
      const reports = findFiles(path.join(home, 'minivpn-labs'), /report\.html$/);
      const writesReport = fs.readFileSync(file, 'utf8').includes('report.html');
      t.equal(reports.length > 0, writesReport, writesReport ? 'it wrote its capture report' : 'it writes no capture report');
      for (const report of reports) {
        const png = path.join(SHOT_DIR, `${path.basename(file, '.md')}-report.png`);
        const page = await renderPage(report, png);
        t.equal(page.dumped, 0, `${path.basename(report)}: Chromium loaded it`);
        t.match(page.dom, /<body[^>]*data-ready="true"/, 'its script ran');
        t.match(page.dom, /data-testid="summary-a"[^>]*data-found="true"/, 'capture A (plaintext) shows the searched text');
        t.match(page.dom, /data-testid="summary-b"[^>]*data-found="false"/, 'capture B (DTLS) does not');
        t.equal(page.shot, 0, 'screenshot taken');
        t.ok(fs.existsSync(png) && fs.statSync(png).size > 20_000, `screenshot: ${png}`);
        t.comment(`screenshot of the lab's report: ${png}`);
      }
    });
  }
});

const SHOT_DIR = path.resolve(__dirname, '..', '..', '.tap', 'screenshots');

function findFiles(dir: string, re: RegExp): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...findFiles(p, re));
    else if (re.test(e.name)) out.push(p);
  }
  return out;
}

t.test('a notebook with an impossible expectation fails, naming the checkpoint, with the real output', async (t) => {
  // The first notebook's first titled expect block gets a line no command prints.
  const file = notebooks[0];
  const nb = loadNotebook(file);
  const idx = nb.steps.findIndex((s) => s.expect?.checkpoint);
  t.ok(idx >= 0, 'the notebook has a titled expect block');
  const exp = nb.steps[idx].expect!;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const impossible = 'no command ever prints this line 5e1f0c';
  lines.splice(exp.lines[exp.lines.length - 1].line, 0, impossible);
  const broken = writeNotebook(path.basename(file), lines.join('\n'));

  const prefix = newPrefix('b');
  const res = await cli(['--prefix', prefix, broken]);
  t.equal(res.code, 1, 'exit status 1');
  const title = exp.checkpoint!;
  t.match(res.stdout, `checkpoint FAILED: ${title}`);
  t.match(res.stdout, `FAILED at step ${idx + 1}/${nb.steps.length} (${path.basename(file)}:${nb.steps[idx].line}): checkpoint "${title}"`);
  t.match(res.stdout, `expected line "${impossible}" (notebook line ${exp.lines[exp.lines.length - 1].line + 1}) not found`);
  const real = res.stdout.split('real output:\n')[1] ?? '';
  t.ok(/^ {4}\| \S/m.test(real), `the real output follows:\n${real}`);
  const before = checkpoints(nb).slice(0, checkpoints(nb).indexOf(title));
  for (const c of before) t.match(res.stdout, `checkpoint OK: ${c}`);
  t.notMatch(res.stdout, `checkpoint OK: ${title}`);
  t.notMatch(res.stdout, `step ${idx + 2}/`, 'it stopped at the failure');
  t.match(res.stdout, `taking lab "${prefix}" down`);
  t.same(namespaces(prefix), [], 'the lab is gone after a failure too');
});

// ---------------------------------------------------------------------------------------
// The runner on notebooks made here

t.test('runner: background commands, Ctrl-C, expect-fail, checks, environment', async (t) => {
  const prefix = newPrefix('r');
  const file = writeNotebook('50-selftest.md', `# Runner self-test

## Background

${F}sh host=client2 bg=srv wait="^ready$"
# on client2, terminal 2
trap 'echo got SIGINT; exit 0' INT
echo starting; echo "to stderr" >&2; echo ready
while true; do sleep 0.1; done
${F}

${F}expect
starting
to stderr
ready
${F}

${F}sh host=client1 bg=idle
# on client1, terminal 3 (never stopped: the end of the lab stops it)
sleep 1000
${F}

## Environment

${F}sh host=client1
# on client1
echo "HOME=$HOME"
echo "LAB_PREFIX=$LAB_PREFIX"
echo "PWD=$PWD"
ip -4 -o addr show dev eth0 | awk '{print $4}'
touch ~/marker
${F}

**Checkpoint:** the command ran in client1, in the repository, with its own HOME

${F}expect
/^HOME=.*minivpn-lab-home-/
LAB_PREFIX=${prefix}
PWD=${ROOT}
192.0.2.11/24
${F}

${F}sh host=client2 expect-fail
# on client2
echo before
false
echo never
${F}

${F}expect
before
${F}

**Checkpoint:** client1 reaches the web server
Hint: is inet forwarding?

${F}check host=client1
# on client1
ping -c 1 -W 2 203.0.113.80
${F}

**Student check:** the marker file is in HOME

${F}student-check
test -f ~/marker
${F}

${F}sh stop=srv
# on client2, terminal 2: press Ctrl-C
${F}

**Checkpoint:** the background command saw Ctrl-C

${F}expect
starting
...
got SIGINT
${F}
`);
  const { r, log } = await run(file, prefix);
  t.ok(r.ok, `passed:\n${log}`);
  t.same(r.checkpoints.map((c) => [c.title, c.ok]), [
    ['the command ran in client1, in the repository, with its own HOME', true],
    ['client1 reaches the web server', true],
    ['the marker file is in HOME', true],
    ['the background command saw Ctrl-C', true],
  ]);
  t.notMatch(r.steps[3].output, /never/, 'a block stops at its first failing command');
  t.equal(r.steps[3].code, 1);
  t.match(log, 'stopping background "idle"', 'a command left running is stopped at the end');
  t.match(log, '[lab 50] == Background ==');
  t.match(log, '[lab 50] step 1/7: client2$ trap \'echo got SIGINT; exit 0\' INT  (+2 more lines)  [background "srv"]');
  const home = /^HOME=(.*)$/m.exec(r.steps[2].output)![1];
  t.notOk(fs.existsSync(home), 'the temporary HOME is removed');
  t.same(namespaces(prefix), []);
});

t.test('runner: each kind of failure is reported with its reason', async (t) => {
  const cases: Array<{ name: string; body: string; step: number; checkpoint?: string; message: RegExp; output?: RegExp; hint?: string }> = [
    {
      name: 'timeout',
      body: `${F}sh host=client1 timeout=1\n# on client1\necho slow\nsleep 30\n${F}`,
      step: 1, message: /timed out after 1 s/, output: /slow/,
    },
    {
      name: 'failing check',
      body: `**Checkpoint:** there is a tun9\nHint: start it first\n\n${F}check host=client1\n# on client1\nip link show tun9\n${F}`,
      step: 1, checkpoint: 'there is a tun9', message: /check command exited with status 1/, output: /Device "tun9" does not exist/, hint: 'start it first',
    },
    {
      name: 'expect-fail that succeeds',
      body: `${F}sh host=client1 expect-fail\n# on client1\ntrue\n${F}`,
      step: 1, message: /should fail \(expect-fail\) but exited with status 0/,
    },
    {
      name: 'failing command',
      body: `${F}sh host=client1\n# on client1\necho fine\n${F}\n\n${F}sh host=client1\n# on client1\necho oh no; exit 3\n${F}`,
      step: 2, message: /the command exited with status 3/, output: /oh no/,
    },
    {
      name: 'background command that dies before it is ready',
      body: `${F}sh host=client1 bg=x wait="ready"\n# on client1\necho crashing; exit 3\n${F}`,
      step: 1, message: /background "x": it exited \(status 3\) before printing a line matching \/ready\//, output: /crashing/,
    },
    {
      name: 'background command that ignores Ctrl-C',
      body: `${F}sh host=client1 bg=x wait="up"\n# on client1\ntrap '' INT; echo up; while true; do sleep 0.1; done\n${F}\n\n${F}sh stop=x timeout=1\n# Ctrl-C\n${F}`,
      step: 2, message: /did not exit within 1 s of Ctrl-C/, output: /up/,
    },
    {
      name: 'background command that failed before it was stopped',
      // Step 2 ends only once x has exited (a zombie, or reaped): the runner knows it by then.
      body: `${F}sh host=client1 bg=x\n# on client1\necho $$ > ~/x.pid; exit 4\n${F}\n\n` +
        `${F}sh host=client1\n# on client1\nwhile [ ! -s ~/x.pid ]; do sleep 0.05; done; p=$(cat ~/x.pid)\n` +
        `while [ -e /proc/$p ] && [ "$(cut -d' ' -f3 /proc/$p/stat 2>/dev/null)" != Z ]; do sleep 0.05; done\n${F}\n\n` +
        `${F}sh stop=x\n# Ctrl-C\n${F}`,
      step: 3, message: /had already exited with status 4/,
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async (t) => {
      const prefix = newPrefix('f');
      const file = writeNotebook(`60-${c.name.replace(/\W+/g, '-')}.md`, `# ${c.name}\n\n${c.body}\n`);
      const { r, log, took } = await run(file, prefix);
      t.notOk(r.ok, 'failed');
      t.equal(r.failure?.step, c.step, `failed at step ${c.step}:\n${log}`);
      t.equal(r.failure?.checkpoint, c.checkpoint);
      t.match(r.failure?.message, c.message);
      if (c.output) t.match(r.failure?.output, c.output, 'with the real output');
      t.equal(r.failure?.hint, c.hint);
      t.match(log, `FAILED at step ${c.step}/`);
      if (c.checkpoint) t.match(log, `checkpoint FAILED: ${c.checkpoint}`);
      // From the failing step's start to the failure: a timeout of 1 s, not the 30 s sleep, nor
      // a command that never ends. (Lab up and down are not counted: slow on a loaded machine.)
      const ms = took(`step ${c.step}/`, 'FAILED');
      t.ok(ms < 20_000, `did not hang: the failing step took ${ms} ms`);
      t.same(namespaces(prefix), []);
    });
  }
});

t.test('npm run lab: pass-through, a busy lab, --keep-lab, check N against a live lab', async (t) => {
  const prefix = newPrefix('c');
  const file = writeNotebook('70-dummy.md', `# Dummy

**Student check:** client1 has the address 10.55.0.1
Hint: ip addr add 10.55.0.1/32 dev lo

${F}student-check host=client1
ip -4 addr show dev lo | grep 10.55.0.1
${F}
`);
  let r = await cli(['--prefix', prefix, 'up']);
  t.equal(r.code, 0, `up: ${r.stderr}`);
  r = await cli(['--prefix', prefix, 'hosts']);
  t.same(r.stdout.trim().split('\n'), ['inet', 'server', 'web', 'lan', 'client1'], 'hosts');
  r = await cli(['--prefix', prefix, 'exec', 'client1', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
  t.match(r.stdout, '192.0.2.11/24', 'exec runs in the host');

  r = await cli([file, '--prefix', prefix]);
  t.equal(r.code, 1, 'a running lab is not reused by default');
  t.match(r.stderr, `lab "${prefix}" is already up`);
  t.match(r.stderr, '--keep-lab');

  r = await cli(['check', file, '--prefix', prefix]);
  t.equal(r.code, 1, 'missing work: exit 1');
  t.match(r.stdout, 'MISSING  client1 has the address 10.55.0.1');
  t.match(r.stdout, 'hint: ip addr add 10.55.0.1/32 dev lo');
  t.match(r.stdout, '0 of 1 present');

  r = await cli(['--prefix', prefix, 'exec', 'client1', 'ip', 'addr', 'add', '10.55.0.1/32', 'dev', 'lo']);
  t.equal(r.code, 0, r.stderr);
  r = await cli(['check', file, '--prefix', prefix]);
  t.equal(r.code, 0, 'all present: exit 0');
  t.match(r.stdout, 'present  client1 has the address 10.55.0.1');
  t.match(r.stdout, '1 of 1 present');

  r = await cli([file, '--prefix', prefix, '--keep-lab']);
  t.equal(r.code, 0, `--keep-lab runs in the lab as it is: ${r.stdout}`);
  t.match(r.stdout, `using the running lab "${prefix}"`);
  t.match(r.stdout, 'checkpoint OK: client1 has the address 10.55.0.1');
  t.ok(namespaces(prefix).length > 0, 'and leaves it up');

  r = await cli(['--prefix', prefix, 'down']);
  t.equal(r.code, 0);
  t.same(namespaces(prefix), [], 'down removed it');
  r = await cli(['check', file, '--prefix', prefix]);
  t.equal(r.code, 1);
  t.match(r.stdout, `lab "${prefix}" is not up`);
});

t.test('npm run lab -- check 1: the student files of lab 1, in their HOME', async (t) => {
  const home = fs.mkdtempSync(path.join(tmp, 'home-'));
  let r = await cli(['check', '1'], { HOME: home });
  t.equal(r.code, 1, 'nothing there yet');
  const nb = loadNotebook(notebooks[0]);
  const titles = nb.steps.filter((s) => s.kind === 'student-check').map((s) => s.checkpoint!);
  t.ok(titles.length > 0);
  for (const title of titles) t.match(r.stdout, `MISSING  ${title}`);
  t.match(r.stdout, /hint: /);

  fs.mkdirSync(path.join(home, 'minivpn-labs'));
  fs.writeFileSync(path.join(home, 'minivpn-labs', 'lab1-routes.txt'), [
    'default via 192.0.2.1 dev eth0 ',
    '10.77.0.0/24 dev tun0 proto kernel scope link src 10.77.0.1 ',
    '10.78.0.0/24 dev tun0 scope link ',
    '192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.11 ',
  ].join('\n') + '\n');
  r = await cli(['check', '1'], { HOME: home });
  t.equal(r.code, 0, r.stdout);
  for (const title of titles) t.match(r.stdout, `present  ${title}`);
  t.match(r.stdout, `${titles.length} of ${titles.length} present`);
});

t.test('npm run lab: usage errors', async (t) => {
  let r = await cli([]);
  t.equal(r.code, 2);
  t.match(r.stdout, 'usage: minivpn lab');
  r = await cli(['frobnicate']);
  t.equal(r.code, 2);
  t.match(r.stderr, 'unknown command "frobnicate"');
  r = await cli(['99']);
  t.equal(r.code, 1);
  t.match(r.stderr, 'no notebook for lab 99');
  r = await cli(['1', '--fast']);
  t.equal(r.code, 2);
  t.match(r.stderr, 'unknown option(s) for a notebook run: --fast');
  r = await cli(['--prefix', 'no-dashes', 'status']);
  t.equal(r.code, 2);
  t.match(r.stderr, '--prefix must be 1-12 letters or digits');
  // Not root: a clear message before anything is tried.
  const asNobody = await new Promise<CliResult>((resolve) => {
    const c = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, '1', '--prefix', newPrefix('u')],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => { stdout += d; });
    c.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? 1, stdout, stderr }); });
  });
  t.equal(asNobody.code, 1);
  t.match(asNobody.stderr, 'the lab needs root (network namespaces): run it with sudo');
  const bad = writeNotebook('80-bad.md', `# Bad\n\n${F}sh host=client1\nls\n${F}\n`);
  r = await cli([bad, '--prefix', newPrefix('u')]);
  t.equal(r.code, 1);
  t.match(r.stderr, `${bad}:3: the first line of the block must be "# on client1"`);
});

// ---------------------------------------------------------------------------------------
// Pieces

t.test('HostCommand without a host: no network at all; stop ends the whole process group', async (t) => {
  const cmd = new HostCommand(undefined, 'unused', 'echo one; echo two >&2; echo three\nip -o link | awk \'{print $2}\'\nsleep 100 & echo "child $!"\nwait', process.env);
  t.teardown(() => { if (cmd.running) cmd.kill('SIGKILL'); }); // (when a check below throws first)
  await cmd.waitFor(/^child \d+/, 10_000);
  t.match(cmd.output, /^one\ntwo\nthree\nlo:\nchild \d+\n$/, 'stdout and stderr in order; only a loopback interface');
  const child = Number(/child (\d+)/.exec(cmd.output)![1]);
  t.ok(await cmd.stop(5000), 'stopped');
  t.notOk(cmd.running);
  // Its pipe closes while the kernel is still finishing it off: allow a moment.
  for (const deadline = Date.now() + 10_000; alive(child) && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 20));
  t.notOk(alive(child), 'the background sleep it started is gone too');
});

t.test('tun-echo: bad arguments are refused, naming the flag', async (t) => {
  const tool = path.join(ROOT, 'dist', 'src', 'tools', 'tun-echo.js');
  const tryArgs = (args: string[]) => new Promise<CliResult>((resolve) => {
    const c = spawn(process.execPath, [tool, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => { stdout += d; });
    c.stderr.on('data', (d) => { stderr += d; });
    c.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
  const cases: Array<[string[], RegExp]> = [
    [['--name', 'tun0', '--address', '10.77.0.300/24'], /--address: "10\.77\.0\.300\/24" is not an IPv4 address with a prefix length/],
    [['--name', 'tun0', '--address', '10.77.0.1'], /--address: "10\.77\.0\.1" is not an IPv4 address with a prefix length/],
    [['--name', 'a/b', '--address', '10.77.0.1/24'], /--name: "a\/b" is not a valid interface name/],
    [['--name', 'tun0'], /--address is required/],
    [['--address', '10.77.0.1/24'], /--name is required/],
    [['--name', 'tun0', '--address', '10.77.0.1/24', '--count', 'x'], /--count: "x" is not a whole number/],
    [['--name'], /--name needs a value/],
    [['--bogus'], /unknown argument "--bogus"/],
  ];
  for (const [args, re] of cases) {
    const r = await tryArgs(args);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, re);
    t.match(r.stderr, /usage: node dist\/src\/tools\/tun-echo\.js/);
    t.equal(r.stdout, '', 'nothing opened');
  }
});

t.test('no namespace and no lab state left behind', async (t) => {
  t.ok(prefixes.length > 0);
  for (const p of prefixes) {
    t.same(namespaces(p), [], `no namespace of lab ${p}`);
    t.notOk(fs.existsSync(`/run/minivpn-lab/${p}`), `no state of lab ${p}`);
  }
});
