// Runs a lab notebook (src/lab/notebook.ts) against a real lab (scripts/lab.sh): every
// command block in its host, in order, checking expected output and checkpoints, and
// stops at the first failure with the real output. Also checks a student's own work
// (student-check blocks) for `npm run lab -- check N`.
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { labScript } from './topology';
import { Notebook, Step, matchExpect, repoRoot } from './notebook';

export interface RunOptions {
  /** Namespace prefix of the lab; default LAB_PREFIX or "mv". */
  prefix?: string;
  /** Leave the lab (and the temporary HOME) in place at the end. */
  keep?: boolean;
  /** Run in the lab with this prefix if it is already up, instead of refusing. */
  keepLab?: boolean;
  /** Print every command's output, not only on failure. */
  verbose?: boolean;
  /** Where progress lines go; default stdout. */
  out?: (line: string) => void;
  /** HOME for the commands; default a fresh temporary directory (so ~/... files of a real student are never touched). */
  home?: string;
  /** Aborting stops the run, its commands and (unless keep) the lab. */
  signal?: AbortSignal;
}

export interface CheckpointResult { title: string; ok: boolean; step: number; message?: string }

export interface StepResult {
  index: number; // 1-based
  step: Step;
  ok: boolean;
  /** Exit status (null while a background command still runs). */
  code: number | null;
  output: string;
  message?: string;
}

export interface Failure {
  step: number;
  /** The checkpoint that failed, or undefined when a plain command did. */
  checkpoint?: string;
  message: string;
  output: string;
  hint?: string;
}

export interface RunResult {
  ok: boolean;
  prefix: string;
  steps: StepResult[];
  checkpoints: CheckpointResult[];
  failure?: Failure;
}

const DEFAULT_TIMEOUT_S = 60;   // a foreground command
const DEFAULT_WAIT_S = 30;      // a background command's wait="..."
const STOP_GRACE_MS = 700;
const DEFAULT_STOP_S = 10;      // a background command to exit after Ctrl-C
const MAX_OUTPUT = 1 << 20;     // bytes of output kept per command

// ---------------------------------------------------------------------------------------
// Commands in lab hosts

/** A command running in a lab host, stdout and stderr merged as a terminal would show them. */
export class HostCommand {
  readonly child: ChildProcess;
  output = '';
  code: number | null = null;
  signal: NodeJS.Signals | null = null;
  readonly done: Promise<void>;
  private listeners = new Set<() => void>();
  private truncated = false;

  constructor(readonly host: string | undefined, prefix: string, script: string, env: NodeJS.ProcessEnv) {
    // bash -e: a block stops at its first failing command, as a careful student would.
    // "exec 2>&1" merges stderr into stdout in the order the command wrote them.
    const bashArgs = ['bash', '-e', '-c', `exec 2>&1\n${script}`];
    // No host: an empty network namespace of its own (only loopback, not even up), for
    // checks that only look at files. It can reach nothing, so it can harm nothing.
    const [file, args] = host ? ['ip', ['netns', 'exec', `${prefix}-${host}`, ...bashArgs]] : ['unshare', ['--net', ...bashArgs]];
    // detached: its own process group, so Ctrl-C (SIGINT) reaches the whole pipeline, and
    // we can end everything it started, by its group id.
    this.child = spawn(file, args, { cwd: repoRoot(), env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const onData = (d: Buffer) => {
      if (this.output.length < MAX_OUTPUT) this.output += d.toString('utf8');
      else if (!this.truncated) { this.truncated = true; this.output += '\n[... output truncated ...]\n'; }
      for (const l of [...this.listeners]) l();
    };
    this.child.stdout!.on('data', onData);
    this.child.stderr!.on('data', onData);
    this.done = new Promise((resolve) => {
      let exited = false;
      this.child.on('error', (err) => {
        this.output += `\n[could not start ${file}: ${err.message}]\n`;
        this.code = 127;
        resolve();
      });
      this.child.on('exit', (code, signal) => {
        exited = true;
        this.code = code ?? 128 + (signal ? os.constants.signals[signal] ?? 0 : 0);
        this.signal = signal;
        // Anything it left running in its group would hold the pipes open: end it.
        setTimeout(() => { if (!closed) this.kill('SIGKILL'); }, 300).unref();
      });
      let closed = false;
      this.child.on('close', () => {
        closed = true;
        if (!exited && this.code === null) this.code = 1;
        for (const l of [...this.listeners]) l();
        resolve();
      });
    });
  }

  get running(): boolean { return this.code === null; }

  /** Signals the command's whole process group. */
  kill(sig: NodeJS.Signals): void {
    if (this.child.pid === undefined) return;
    try { process.kill(-this.child.pid, sig); } catch { /* already gone */ }
  }

  /** Resolves with the first output line matching re (lines printed earlier count), or rejects. */
  waitFor(re: RegExp, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (const line of this.output.split('\n')) if (re.test(line)) return finish(null, line);
        if (!this.running) finish(new Error(`it exited (status ${this.code}) before printing a line matching /${re.source}/`));
      };
      const timer = setTimeout(() => finish(new Error(`no line matching /${re.source}/ within ${timeoutMs / 1000} s`)), timeoutMs);
      const finish = (err: Error | null, line?: string) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        if (err) reject(err); else resolve(line!);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Waits for the command to end; after timeoutMs sends SIGTERM, then SIGKILL. True if it ended in time. */
  async finish(timeoutMs: number): Promise<boolean> {
    if (await within(this.done, timeoutMs)) return true;
    this.kill('SIGTERM');
    if (!(await within(this.done, 2000))) {
      this.kill('SIGKILL');
      await within(this.done, 2000);
    }
    return false;
  }

  /** Ctrl-C, as the student would press it; then SIGTERM and SIGKILL if it does not stop. */
  async stop(timeoutMs: number): Promise<boolean> {
    if (!this.running) { await this.done; return true; }
    this.kill('SIGINT');
    return this.finish(timeoutMs);
  }
}

function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.then(() => { clearTimeout(t); resolve(true); });
  });
}

function commandEnv(prefix: string, home: string): NodeJS.ProcessEnv {
  // The node that runs us comes first in PATH, so `node ...` in a notebook is the same
  // program (sudo often resets PATH).
  const PATH = [path.dirname(process.execPath), process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':');
  return { ...process.env, PATH, HOME: home, LAB_PREFIX: prefix };
}

// ---------------------------------------------------------------------------------------
// Describing steps

/** What a student would type for the step, in one line: "client1$ ping -c 3 10.77.0.2". */
export function describeStep(s: Step): string {
  if (s.kind === 'stop') return `${s.host}: stop "${s.name}" (Ctrl-C)`;
  if (s.kind === 'student-check') return `check your work: ${s.checkpoint}`;
  const cmds = s.script.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  let d = `${s.host}$ ${cmds[0] ?? ''}`;
  if (cmds.length > 1) d += `  (+${cmds.length - 1} more line${cmds.length > 2 ? 's' : ''})`;
  if (s.kind === 'bg') d += `  [background "${s.name}"]`;
  if (s.kind === 'check') d = `checkpoint "${s.checkpoint}": ${d}`;
  return d;
}

function indent(text: string, prefix = '    | '): string {
  const t = text.replace(/\s+$/, '');
  return t ? t.split('\n').map((l) => prefix + l).join('\n') : `${prefix}(no output)`;
}

function isValidPrefix(p: string): boolean { return /^[A-Za-z0-9]{1,12}$/.test(p); }

// Namespaces (and the empty one a host-less check runs in) need root.
function needRoot(): void {
  if (process.getuid && process.getuid() !== 0) throw new LabSetupError('the lab needs root (network namespaces): run it with sudo');
}

// ---------------------------------------------------------------------------------------
// Running a notebook

/** The lab cannot be used: not root, busy, cannot be built, or lacks a host the notebook needs. */
export class LabSetupError extends Error {}

export async function runNotebook(nb: Notebook, opts: RunOptions = {}): Promise<RunResult> {
  const prefix = opts.prefix ?? process.env.LAB_PREFIX ?? 'mv';
  if (!isValidPrefix(prefix)) throw new LabSetupError(`lab prefix must be 1-12 letters or digits (got "${prefix}")`);
  needRoot();
  return new NotebookRun(nb, opts, prefix).run();
}

/** One run of a notebook: its lab, its commands, and what passed or failed. */
class NotebookRun {
  private readonly result: RunResult;
  private readonly out: (line: string) => void;
  private readonly say: (line: string) => void;
  private readonly bg = new Map<string, HostCommand>();
  private current: HostCommand | undefined;
  private env: NodeJS.ProcessEnv = {};

  constructor(private readonly nb: Notebook, private readonly opts: RunOptions, private readonly prefix: string) {
    const tag = `[lab ${nb.number ?? path.basename(nb.file, '.md')}]`;
    const out = opts.out ?? ((l: string) => process.stdout.write(l + '\n'));
    this.out = out;
    this.say = (l: string) => out(`${tag} ${l}`);
    this.result = { ok: false, prefix, steps: [], checkpoints: [] };
  }

  async run(): Promise<RunResult> {
    const { opts, prefix, say } = this;
    // 1. The lab: our own, fresh, unless the caller asked to reuse a running one.
    const wasUp = (await labScript(prefix, ['hosts'])).code === 0;
    if (wasUp && !opts.keepLab) {
      throw new LabSetupError(`lab "${prefix}" is already up. Take it down first (npm run lab -- down), ` +
        'run in it as it is (--keep-lab), or use a separate lab (--prefix NAME)');
    }
    const built = !wasUp;
    let tornDown = false;
    const teardownSync = () => {
      if (!built || opts.keep || tornDown) return;
      tornDown = true;
      try {
        execFileSync('bash', [path.join(repoRoot(), 'scripts', 'lab.sh'), 'down'], { env: { ...process.env, LAB_PREFIX: prefix }, stdio: 'ignore', timeout: 60_000 });
      } catch { /* best effort while exiting */ }
    };
    // If this process dies half way (an exception, process.exit), the lab goes with it.
    process.on('exit', teardownSync);

    const home = opts.home ?? fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-lab-home-'));
    const ownHome = opts.home === undefined;
    this.env = commandEnv(prefix, home);
    // Interrupted: end what runs now (a wait for a background command ends with it).
    const onAbort = () => {
      this.current?.kill('SIGTERM');
      for (const cmd of this.bg.values()) cmd.kill('SIGTERM');
    };
    opts.signal?.addEventListener('abort', onAbort);

    try {
      await this.bringUp(wasUp);
      await this.runSteps();
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      await this.stopBackground();
      if (built && !opts.keep) {
        say(`taking lab "${prefix}" down`);
        const down = await labScript(prefix, ['down']);
        tornDown = true;
        if (down.code !== 0) say(`warning: lab.sh down failed (exit ${down.code}): ${down.stderr.trim()}`);
      } else {
        // --keep, or a lab that was up before we came (--keep-lab): not ours to remove.
        say(`lab "${prefix}" left up (npm run lab -- ${prefix === 'mv' ? '' : `--prefix ${prefix} `}down removes it)`);
      }
      process.removeListener('exit', teardownSync);
      if (ownHome) {
        if (opts.keep) say(`files the commands wrote under ~ are in ${home}`);
        else fs.rmSync(home, { recursive: true, force: true });
      }
    }
    this.summary();
    return this.result;
  }

  /** Brings the lab up (or checks the running one) and that it has every host the notebook uses. */
  private async bringUp(wasUp: boolean): Promise<void> {
    const { nb, prefix, say } = this;
    const rel = path.relative(process.cwd(), nb.file);
    say(`${nb.title} (${rel && !rel.startsWith('..') ? rel : nb.file})`);
    say(`${wasUp ? 'using the running' : 'bringing up'} lab "${prefix}" with ${nb.clients} client(s)${nb.labFlags.length ? ` (${nb.labFlags.join(' ')})` : ''}`);
    const up = await labScript(prefix, ['up', '--clients', String(nb.clients), ...nb.labFlags]);
    if (up.code !== 0) throw new LabSetupError(`lab.sh up failed (exit ${up.code}): ${(up.stderr || up.stdout).trim()}`);
    const hosts = (await labScript(prefix, ['hosts'])).stdout.split('\n').map((h) => h.trim()).filter(Boolean);
    const missing = nb.hosts.filter((h) => !hosts.includes(h));
    if (missing.length) throw new LabSetupError(`the notebook uses host(s) ${missing.join(', ')} that lab "${prefix}" does not have (it has ${hosts.join(', ')})`);
  }

  /** Every step in order, up to the first failure. */
  private async runSteps(): Promise<void> {
    const { nb, opts, result, say } = this;
    const total = nb.steps.length;
    let section = '';
    for (let i = 0; i < total; i++) {
      if (opts.signal?.aborted) { this.fail(i + 1, undefined, 'interrupted', ''); break; }
      const s = nb.steps[i];
      if (s.section && s.section !== section) { section = s.section; say(`== ${section} ==`); }
      say(`step ${i + 1}/${total}: ${describeStep(s)}`);
      const r = await this.runStep(s, i + 1);
      result.steps.push(r);
      if (!r.ok) break;
    }
    result.ok = !result.failure && result.steps.length === total;
  }

  /**
   * Everything still in the background stops as if the student pressed Ctrl-C (also
   * with --keep: its output goes to us, and we are about to exit).
   */
  private async stopBackground(): Promise<void> {
    for (const [name, cmd] of this.bg) {
      if (cmd.running) {
        this.say(`stopping background "${name}"`);
        await cmd.stop(5000);
      }
    }
  }

  private summary(): void {
    const { nb, result } = this;
    const n = result.checkpoints.filter((c) => c.ok).length;
    if (result.ok) this.say(`PASSED: ${result.steps.length} steps, ${n} checkpoint(s) OK`);
    else if (result.failure) {
      const f = result.failure;
      const s = nb.steps[f.step - 1];
      this.say(`FAILED at step ${f.step}/${nb.steps.length} (${path.basename(nb.file)}:${s.line})` +
        (f.checkpoint ? `: checkpoint "${f.checkpoint}"` : `: ${describeStep(s)}`));
    }
  }

  // Records a failure (the first one wins) and prints it with the real output.
  private fail(index: number, checkpoint: string | undefined, message: string, output: string, hint?: string): void {
    const { result, say } = this;
    if (result.failure) return;
    result.failure = { step: index, checkpoint, message, output, hint };
    if (checkpoint) {
      result.checkpoints.push({ title: checkpoint, ok: false, step: index, message });
      say(`checkpoint FAILED: ${checkpoint}`);
    } else say(`step ${index} FAILED`);
    say(`  ${message}`);
    if (hint) say(`  hint: ${hint}`);
    if (!this.opts.verbose) { // verbose has shown it already
      say('  real output:');
      this.out(indent(output));
    }
  }

  // --verbose: every command's output, right after it ran (before it is judged).
  private show(output: string): void {
    if (this.opts.verbose) this.out(indent(output));
  }

  private pass(index: number, checkpoint: string | undefined): void {
    if (!checkpoint) return;
    this.result.checkpoints.push({ title: checkpoint, ok: true, step: index });
    this.say(`checkpoint OK: ${checkpoint}`);
  }

  // Checks the step's expect block (if any) against output; false (and a failure) if it does not match.
  private checkExpect(s: Step, index: number, output: string): boolean {
    if (!s.expect) return true;
    const m = matchExpect(s.expect.lines, output);
    if (!m.ok) {
      this.fail(index, s.expect.checkpoint, `output does not match the expect block at line ${s.expect.line}: ${m.message}`, output, s.expect.hint);
      return false;
    }
    this.pass(index, s.expect.checkpoint);
    return true;
  }

  private runStep(s: Step, index: number): Promise<StepResult> {
    const r: StepResult = { index, step: s, ok: false, code: null, output: '' };
    if (s.kind === 'stop') return this.stopStep(s, r);
    if (s.kind === 'bg') return this.bgStep(s, r);
    return this.foregroundStep(s, r);
  }

  /** Seconds the step may take, as ms: its own timeout=, else the default for its kind. */
  private static timeoutMs(s: Step, defaultSec: number): number {
    return (s.timeoutSec ?? defaultSec) * 1000;
  }

  private async stopStep(s: Step, r: StepResult): Promise<StepResult> {
    const cmd = this.bg.get(s.name!)!;
    this.bg.delete(s.name!);
    const endedBefore = !cmd.running;
    // A student looks before pressing Ctrl-C; a moment's pause lets a capture write what
    // it has seen (tcpdump drops packets still in its buffer when interrupted).
    if (!endedBefore) await new Promise((res) => setTimeout(res, STOP_GRACE_MS));
    const limit = NotebookRun.timeoutMs(s, DEFAULT_STOP_S);
    const inTime = await cmd.stop(limit);
    r.code = cmd.code;
    r.output = cmd.output;
    this.show(r.output);
    if (endedBefore && cmd.code !== 0) {
      this.fail(r.index, undefined, `background "${s.name}" had already exited with status ${cmd.code} before it was stopped`, r.output);
    } else if (!inTime) {
      this.fail(r.index, undefined, `background "${s.name}" did not exit within ${limit / 1000} s of Ctrl-C (killed)`, r.output);
    } else r.ok = this.checkExpect(s, r.index, r.output);
    return r;
  }

  private async bgStep(s: Step, r: StepResult): Promise<StepResult> {
    const cmd = new HostCommand(s.host, this.prefix, s.script, this.env);
    this.bg.set(s.name!, cmd);
    if (s.wait) {
      try {
        await cmd.waitFor(s.wait, NotebookRun.timeoutMs(s, DEFAULT_WAIT_S));
      } catch (err) {
        r.output = cmd.output;
        this.show(r.output);
        this.fail(r.index, undefined, `background "${s.name}": ${(err as Error).message}`, r.output);
        return r;
      }
    }
    r.output = cmd.output;
    this.show(r.output);
    r.ok = this.checkExpect(s, r.index, r.output);
    return r;
  }

  /** A command (run, check, student-check) that must end by itself. */
  private async foregroundStep(s: Step, r: StepResult): Promise<StepResult> {
    const { index } = r;
    const cmd = new HostCommand(s.host, this.prefix, s.script, this.env);
    this.current = cmd;
    const limit = NotebookRun.timeoutMs(s, DEFAULT_TIMEOUT_S);
    const inTime = await cmd.finish(limit);
    this.current = undefined;
    r.code = cmd.code;
    r.output = cmd.output;
    this.show(r.output);
    const isCheck = s.kind === 'check' || s.kind === 'student-check';
    if (this.opts.signal?.aborted) {
      this.fail(index, s.checkpoint, 'interrupted', r.output);
    } else if (!inTime) {
      this.fail(index, s.checkpoint, `timed out after ${limit / 1000} s (killed)`, r.output, s.hint);
    } else if (isCheck && r.code !== 0) {
      this.fail(index, s.checkpoint, `the check command exited with status ${r.code}`, r.output, s.hint);
    } else if (!isCheck && s.expectFail && r.code === 0) {
      this.fail(index, undefined, 'this command should fail (expect-fail) but exited with status 0', r.output);
    } else if (!isCheck && !s.expectFail && r.code !== 0) {
      this.fail(index, undefined, `the command exited with status ${r.code}`, r.output);
    } else {
      this.pass(index, s.checkpoint);
      r.ok = this.checkExpect(s, index, r.output);
    }
    return r;
  }
}

// ---------------------------------------------------------------------------------------
// Checking a student's work

export interface StudentCheckResult {
  title: string;
  present: boolean;
  hint?: string;
  /** Why it is missing, when the command could not even run (lab not up). */
  reason?: string;
  output: string;
}

/**
 * Runs the notebook's student-check blocks against the student's live lab and files
 * (HOME is theirs). Nothing is built or torn down.
 */
export async function checkStudentWork(nb: Notebook, opts: { prefix?: string; home?: string; timeoutSec?: number } = {}): Promise<StudentCheckResult[]> {
  const prefix = opts.prefix ?? process.env.LAB_PREFIX ?? 'mv';
  if (!isValidPrefix(prefix)) throw new LabSetupError(`lab prefix must be 1-12 letters or digits (got "${prefix}")`);
  needRoot();
  const env = commandEnv(prefix, opts.home ?? process.env.HOME ?? os.homedir());
  const steps = nb.steps.filter((s) => s.kind === 'student-check');
  let hosts: string[] | undefined;
  if (steps.some((s) => s.host)) {
    const h = await labScript(prefix, ['hosts']);
    hosts = h.code === 0 ? h.stdout.split('\n').map((x) => x.trim()).filter(Boolean) : [];
  }
  const results: StudentCheckResult[] = [];
  for (const s of steps) {
    const base = { title: s.checkpoint!, hint: s.hint };
    if (s.host && !hosts!.includes(s.host)) {
      const reason = hosts!.length === 0
        ? `lab "${prefix}" is not up (npm run lab -- up)`
        : `lab "${prefix}" has no host ${s.host}`;
      results.push({ ...base, present: false, reason, output: '' });
      continue;
    }
    const cmd = new HostCommand(s.host, prefix, s.script, env);
    const inTime = await cmd.finish((s.timeoutSec ?? opts.timeoutSec ?? 30) * 1000);
    results.push({
      ...base,
      present: inTime && cmd.code === 0,
      reason: inTime ? undefined : 'the check timed out',
      output: cmd.output,
    });
  }
  return results;
}

