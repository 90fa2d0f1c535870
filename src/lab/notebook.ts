// Lab notebooks: one Markdown file is both what the student reads and what CI runs.
// This module only parses; src/lab/runner.ts executes. The format is described for
// notebook authors in labs/README.md; in short, fenced code blocks with an info string:
//
//   ```sh host=client1 [bg=NAME [wait="regex"]] [timeout=S] [expect-fail]   run in a lab host
//   ```sh stop=NAME                       stop a background command (the student presses Ctrl-C)
//   ```expect                             abridged expected output of the command block before it
//   ```check host=client1                 a checkpoint: exit status 0 means it passed
//   ```student-check [host=client1]       `npm run lab -- check N`: is the student's work there?
//
// Every other fenced block (```sh with no options, ```text, ...) is for reading only.
import * as fs from 'fs';
import * as path from 'path';

/** A notebook that cannot be parsed; `line` is 1-based in the Markdown file. */
export class NotebookError extends Error {
  constructor(readonly file: string, readonly line: number, message: string) {
    super(`${file}:${line}: ${message}`);
    this.name = 'NotebookError';
  }
}

/** One line of an expect block: literal text, a /regex/, or "..." (any number of lines). */
export type ExpectLine =
  | { kind: 'literal'; text: string; line: number }
  | { kind: 'regex'; re: RegExp; text: string; line: number }
  | { kind: 'any'; text: string; line: number };

export interface Expectation {
  lines: ExpectLine[];
  /** Where the expect block starts in the notebook (its opening fence). */
  line: number;
  /** From a "**Checkpoint:** ..." line before it, if any. */
  checkpoint?: string;
  hint?: string;
}

export type StepKind = 'run' | 'bg' | 'stop' | 'check' | 'student-check';

export interface Step {
  kind: StepKind;
  /** Lab host the command runs in; undefined only for stop and host-less student-check. */
  host?: string;
  /** The block's text: a bash script (for stop: the instructions shown to the student). */
  script: string;
  /** Name of the background command this step starts (bg) or stops (stop). */
  name?: string;
  /** bg: wait until its output has a line matching this. */
  wait?: RegExp;
  /** Seconds before the command (or the wait) is given up on; undefined = runner default. */
  timeoutSec?: number;
  /** A non-zero exit status is what the step demonstrates. */
  expectFail: boolean;
  /** The expected output that follows the block, if any. */
  expect?: Expectation;
  /** check / student-check: the title from the "**Checkpoint:**" line before it. */
  checkpoint?: string;
  /** Text of a "Hint:" line between the title and the block, shown when it fails or is missing. */
  hint?: string;
  /** The nearest heading above the block. */
  section: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The info string as written, for messages. */
  info: string;
}

export interface Notebook {
  file: string;
  /** NN from "NN-name.md", or null for a file named otherwise. */
  number: number | null;
  /** The first "# " heading. */
  title: string;
  steps: Step[];
  /** How many client hosts the lab needs: the highest clientN any block uses (at least 1). */
  clients: number;
  /** Every host a block runs in, for checking the lab has them. */
  hosts: string[];
  /** Options for lab.sh up beyond --clients, from the ```sh lab-up block (e.g. ["--ipv6"]). */
  labFlags: string[];
}

/** The lab.sh up options a notebook may ask for (its `sh lab-up` block). */
export const LAB_UP_FLAGS = ['--ipv6', '--ipv6-only'];

/** Titles of every checkpoint, in order: check and student-check blocks, and titled expects. */
export function checkpoints(nb: Notebook): string[] {
  const out: string[] = [];
  for (const s of nb.steps) {
    if (s.checkpoint) out.push(s.checkpoint);
    if (s.expect?.checkpoint) out.push(s.expect.checkpoint);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Info strings: `sh host=client1 wait="tun0 is up" expect-fail`

/** Splits an info string into its first word and options (key=value, key="quoted value", flag). */
export function parseInfo(info: string): { lang: string; opts: Map<string, string | true> } {
  const opts = new Map<string, string | true>();
  let i = 0;
  const words: Array<[string, string | true]> = [];
  const s = info.trim();
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i])) i++;
    if (i >= s.length) break;
    let key = '';
    while (i < s.length && !/[\s=]/.test(s[i])) key += s[i++];
    if (s[i] !== '=') {
      words.push([key, true]);
      continue;
    }
    i++; // '='
    let value = '';
    if (s[i] === '"' || s[i] === "'") {
      const q = s[i++];
      let closed = false;
      while (i < s.length) {
        if (s[i] === '\\' && i + 1 < s.length && (s[i + 1] === q || s[i + 1] === '\\')) { value += s[i + 1]; i += 2; continue; }
        if (s[i] === q) { closed = true; i++; break; }
        value += s[i++];
      }
      if (!closed) throw new Error(`unterminated quote in option ${key}=`);
    } else {
      while (i < s.length && !/\s/.test(s[i])) value += s[i++];
    }
    words.push([key, value]);
  }
  if (words.length === 0) return { lang: '', opts };
  const [first, firstVal] = words[0];
  if (firstVal !== true) throw new Error(`the info string must start with the block type (sh, expect, check, student-check), not "${first}="`);
  for (const [k, v] of words.slice(1)) {
    if (opts.has(k)) throw new Error(`option "${k}" given twice`);
    opts.set(k, v);
  }
  return { lang: first, opts };
}

// ---------------------------------------------------------------------------------------
// Expect blocks

/** Parses the text of an expect block. `firstLine` is the notebook line of its first text line. */
export function parseExpect(text: string, firstLine = 1): ExpectLine[] {
  const raw = text.replace(/\r\n/g, '\n').split('\n');
  const lines: ExpectLine[] = [];
  raw.forEach((l, i) => {
    const line = firstLine + i;
    const t = l.replace(/\s+$/, '');
    if (t.trim() === '...') lines.push({ kind: 'any', text: '...', line });
    else if (t.length >= 2 && t.startsWith('/') && t.endsWith('/')) {
      let re: RegExp;
      try {
        re = new RegExp(t.slice(1, -1));
      } catch (err) {
        throw new Error(`line ${line}: bad regular expression ${t}: ${(err as Error).message}`);
      }
      lines.push({ kind: 'regex', re, text: t, line });
    } else lines.push({ kind: 'literal', text: t, line });
  });
  // Blank lines at either end are layout, not expected output.
  while (lines.length && lines[0].kind === 'literal' && lines[0].text === '') lines.shift();
  while (lines.length && lines[lines.length - 1].kind === 'literal' && lines[lines.length - 1].text === '') lines.pop();
  return lines;
}

export interface MatchResult {
  ok: boolean;
  /** Why not, in a sentence naming the expected line that was not found. */
  message?: string;
  /** The expected line that was not found. */
  missing?: ExpectLine;
}

function lineMatches(e: ExpectLine, actual: string): boolean {
  if (e.kind === 'regex') return e.re.test(actual);
  if (e.kind === 'literal') return e.text === actual;
  return true;
}

/**
 * Checks real output against expected lines. Rules (also in labs/README.md):
 * - expected lines next to each other must match output lines next to each other;
 * - "..." stands for any number of lines (also none);
 * - the expectation may start and end anywhere in the output (the block is an excerpt);
 * - a literal line must equal the output line (trailing spaces ignored); /re/ searches it.
 */
export function matchExpect(expected: ExpectLine[] | string, output: string): MatchResult {
  const exp = typeof expected === 'string' ? parseExpect(expected) : expected;
  const actual = output.replace(/\r\n/g, '\n').split('\n').map((l) => l.replace(/\s+$/, ''));
  if (actual.length && actual[actual.length - 1] === '') actual.pop();
  // Split at "..." into runs of adjacent lines.
  const runs: ExpectLine[][] = [[]];
  for (const e of exp) {
    if (e.kind === 'any') runs.push([]);
    else runs[runs.length - 1].push(e);
  }
  let cursor = 0;
  for (const run of runs) {
    if (run.length === 0) continue;
    // Place each run at the earliest position after the previous one: leaving the most
    // output for the runs after it, so greedy placement finds a match whenever one exists.
    let found = -1;
    let best = -1; // how far the best partial attempt got, for the error message
    let bestAt = cursor;
    for (let at = cursor; at < actual.length; at++) {
      let k = 0;
      while (k < run.length && at + k < actual.length && lineMatches(run[k], actual[at + k])) k++;
      if (k === run.length) { found = at; break; }
      if (k > best) { best = k; bestAt = at; }
    }
    if (found < 0) {
      const missing = run[Math.max(best, 0)];
      let where: string;
      if (best > 0) where = `right after output line ${bestAt + best} ("${actual[bestAt + best - 1]}")`;
      else if (cursor > 0) where = `after output line ${cursor} ("${actual[cursor - 1]}")`;
      else where = 'anywhere in the output';
      return {
        ok: false,
        missing,
        message: `expected line ${JSON.stringify(missing.text)} (notebook line ${missing.line}) not found ${where}`,
      };
    }
    cursor = found + run.length;
  }
  return { ok: true };
}

// ---------------------------------------------------------------------------------------
// The notebook

const HOST_RE = /^[a-z]+[0-9]*$/;
const NAME_RE = /^[A-Za-z0-9_-]+$/;
// "# on client1", "# on client1, terminal 2", "# on client1 (terminal 2)"
const ON_HOST_RE = /^#\s*on\s+([a-z]+[0-9]*)\b/;
const CHECKPOINT_RE = /^\s*(?:[-*]\s+)?\*\*(?:Checkpoint|Student check):\*\*\s*(.+?)\s*$/;
const HINT_RE = /^\s*(?:[-*]\s+)?(?:\*\*Hint:\*\*|\*Hint:\*|_Hint:_|Hint:)\s*(.+?)\s*$/;

const ALLOWED: Record<string, string[]> = {
  run: ['host', 'timeout', 'expect-fail'],
  bg: ['host', 'bg', 'wait', 'timeout'],
  stop: ['stop', 'host', 'timeout'],
  check: ['host', 'timeout'],
  'student-check': ['host', 'timeout'],
  expect: [],
  'lab-up': ['lab-up'],
};

interface Fence { char: string; len: number; indent: number; info: string; line: number; body: string[] }

const FENCE_OPEN_RE = /^(\s*)(`{3,}|~{3,})(.*)$/;

/** Parses notebook text. `file` is used for NN and for messages. Throws NotebookError. */
export function parseNotebook(text: string, file = 'notebook.md'): Notebook {
  return new NotebookParser(file).parse(text.replace(/\r\n/g, '\n').split('\n'));
}

/** parseNotebook's state while it walks the lines: what a later block may belong to. */
class NotebookParser {
  private readonly base: string;
  private readonly nb: Notebook;
  private section = '';
  private pendingTitle: { text: string; line: number } | undefined;
  private pendingHint: string | undefined;
  private lastCommand: Step | undefined; // the block an expect block would belong to
  private readonly running = new Map<string, Step>(); // bg name -> the step that started it
  private sawLabUp = false;

  constructor(private readonly file: string) {
    this.base = path.basename(file);
    const m = /^(\d+)-/.exec(this.base);
    this.nb = { file, number: m ? Number(m[1]) : null, title: '', steps: [], clients: 1, hosts: [], labFlags: [] };
  }

  private fail(line: number, msg: string): never {
    throw new NotebookError(this.file, line, msg);
  }

  parse(lines: string[]): Notebook {
    for (let i = 0; i < lines.length; i++) {
      const open = FENCE_OPEN_RE.exec(lines[i]);
      if (!open || (open[2][0] === '`' && open[3].includes('`'))) {
        this.prose(lines[i], i + 1);
        continue;
      }
      const fence: Fence = { char: open[2][0], len: open[2].length, indent: open[1].length, info: open[3].trim(), line: i + 1, body: [] };
      i = this.readFence(lines, i + 1, fence);
      this.block(fence);
    }
    const { nb, pendingTitle } = this;
    if (pendingTitle) this.fail(pendingTitle.line, `checkpoint "${pendingTitle.text}" has no check, student-check or expect block after it`);
    if (nb.clients > 8) this.fail(1, `the lab has at most 8 clients (a block uses client${nb.clients})`);
    if (!nb.title) nb.title = this.base.replace(/\.md$/, '');
    return nb;
  }

  /** A line outside fenced blocks: headings, checkpoint titles and hints. */
  private prose(l: string, line: number): void {
    const h = /^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$/.exec(l);
    if (h) {
      if (!this.nb.title && h[1] === '#') this.nb.title = h[2];
      this.section = h[2];
      return;
    }
    const c = CHECKPOINT_RE.exec(l);
    if (c) {
      const pending = this.pendingTitle;
      if (pending) this.fail(pending.line, `checkpoint "${pending.text}" has no check, student-check or expect block after it`);
      this.pendingTitle = { text: c[1], line };
      this.pendingHint = undefined;
      return;
    }
    const hm = HINT_RE.exec(l);
    if (hm && this.pendingTitle) this.pendingHint = this.pendingHint ? `${this.pendingHint} ${hm[1]}` : hm[1];
  }

  /** Collects a fenced block's body from lines[from] up to its closing fence; returns the closing line's index. */
  private readFence(lines: string[], from: number, fence: Fence): number {
    for (let i = from; i < lines.length; i++) {
      const close = /^\s*(`{3,}|~{3,})\s*$/.exec(lines[i]);
      if (close && close[1][0] === fence.char && close[1].length >= fence.len) return i;
      // Strip the fence's own indentation (blocks inside list items), as CommonMark does.
      const b = lines[i];
      let k = 0;
      while (k < fence.indent && b[k] === ' ') k++;
      fence.body.push(b.slice(k));
    }
    return this.fail(fence.line, 'code block is never closed');
  }

  /** A fenced block: a step, an expect block for the step before it, or nothing (for reading only). */
  private block(fence: Fence): void {
    let parsed: ReturnType<typeof parseInfo>;
    try {
      parsed = parseInfo(fence.info);
    } catch (err) {
      return this.fail(fence.line, `bad info string "${fence.info}": ${(err as Error).message}`);
    }
    const { lang, opts } = parsed;
    const kind = classify(lang, opts);
    if (!kind) return; // for reading only
    for (const k of opts.keys()) {
      if (!ALLOWED[kind].includes(k)) {
        this.fail(fence.line, `option "${k}" is not allowed on a ${kind === 'run' ? 'sh' : kind} block (allowed: ${ALLOWED[kind].join(', ') || 'none'})`);
      }
    }
    if (kind === 'expect') {
      this.expectBlock(fence);
      return;
    }
    if (kind === 'lab-up') {
      this.labUp(fence);
      return;
    }
    const step = this.step(kind, opts, fence);
    if (kind === 'bg') this.startBg(step, opts, fence);
    if (kind === 'stop') this.stopBg(step, opts, fence);
    if (kind === 'run' || kind === 'bg' || kind === 'check' || kind === 'student-check') this.checkCommand(step, fence);
    if (kind === 'check' || kind === 'student-check') {
      if (!this.pendingTitle) this.fail(fence.line, `a ${kind} block needs a "**Checkpoint:** title" line before it`);
      step.checkpoint = this.pendingTitle.text;
      step.hint = this.pendingHint;
      this.pendingTitle = undefined;
      this.pendingHint = undefined;
    }
    const nb = this.nb;
    if (step.host) {
      if (!nb.hosts.includes(step.host)) nb.hosts.push(step.host);
      const cm = /^client(\d+)$/.exec(step.host);
      if (cm) nb.clients = Math.max(nb.clients, Number(cm[1]));
    }
    nb.steps.push(step);
    this.lastCommand = kind === 'stop' || kind === 'bg' || kind === 'run' || kind === 'check' ? step : undefined;
  }

  /**
   * A block for the reader that says how to bring the lab up (`sudo npm run lab -- up --ipv6`):
   * not run, but the runner brings its lab up with the same options, so the two never differ.
   */
  private labUp(fence: Fence): void {
    if (this.sawLabUp) this.fail(fence.line, 'a second lab-up block (a notebook has one lab)');
    this.sawLabUp = true;
    const lines = fence.body.map((l) => /npm run lab -- up\b(.*)$/.exec(l.replace(/\s+#.*$/, ''))).filter((m) => m !== null);
    if (lines.length !== 1) this.fail(fence.line, 'a lab-up block holds exactly one "npm run lab -- up ..." line');
    const flags = lines[0]![1].trim().split(/\s+/).filter(Boolean);
    for (const f of flags) {
      if (!LAB_UP_FLAGS.includes(f)) this.fail(fence.line, `lab-up: option "${f}" is not one a notebook may set (allowed: ${LAB_UP_FLAGS.join(', ')}; --clients comes from the hosts the blocks use)`);
    }
    this.nb.labFlags = flags;
  }

  private expectBlock(fence: Fence): void {
    const last = this.lastCommand;
    if (!last) return this.fail(fence.line, 'expect block does not follow a command block (```sh host=... or ```check)');
    if (last.expect) this.fail(fence.line, `the command block at line ${last.line} already has an expect block`);
    let exp: ExpectLine[];
    try {
      exp = parseExpect(fence.body.join('\n'), fence.line + 1);
    } catch (err) {
      return this.fail(fence.line, (err as Error).message);
    }
    if (exp.length === 0) this.fail(fence.line, 'expect block is empty');
    const title = this.pendingTitle;
    last.expect = { lines: exp, line: fence.line, checkpoint: title?.text, hint: title ? this.pendingHint : undefined };
    this.pendingTitle = undefined;
    this.pendingHint = undefined;
  }

  /** An option that must have a value, or undefined when not given. */
  private value(opts: Map<string, string | true>, key: string, fence: Fence): string | undefined {
    const v = opts.get(key);
    if (v === undefined) return undefined;
    if (v === true || v === '') this.fail(fence.line, `option ${key} needs a value (${key}=...)`);
    return v;
  }

  /** The step a command, bg, stop or check block makes, with the options all of them take. */
  private step(kind: StepKind, opts: Map<string, string | true>, fence: Fence): Step {
    const host = this.value(opts, 'host', fence);
    if (host !== undefined && !HOST_RE.test(host)) this.fail(fence.line, `host "${host}" is not a lab host name (inet, server, web, lan, client1...)`);
    const body = fence.body.join('\n').replace(/\s+$/, '');
    const step: Step = {
      kind, host, script: body, expectFail: opts.get('expect-fail') === true, section: this.section, line: fence.line, info: fence.info,
    };
    const timeout = this.value(opts, 'timeout', fence);
    if (timeout !== undefined) {
      if (!/^\d+(\.\d+)?$/.test(timeout) || Number(timeout) <= 0) this.fail(fence.line, `timeout must be a number of seconds > 0 (got "${timeout}")`);
      step.timeoutSec = Number(timeout);
    }
    if (opts.has('expect-fail') && opts.get('expect-fail') !== true) this.fail(fence.line, 'expect-fail takes no value');
    return step;
  }

  private startBg(step: Step, opts: Map<string, string | true>, fence: Fence): void {
    const name = this.value(opts, 'bg', fence)!;
    step.name = name;
    if (!NAME_RE.test(name)) this.fail(fence.line, `bg name "${name}" must be letters, digits, - or _`);
    const other = this.running.get(name);
    if (other) this.fail(fence.line, `a background command named "${name}" is already running (started at line ${other.line})`);
    const w = this.value(opts, 'wait', fence);
    if (w !== undefined) {
      try {
        step.wait = new RegExp(w);
      } catch (err) {
        this.fail(fence.line, `bad wait regex "${w}": ${(err as Error).message}`);
      }
    }
    this.running.set(name, step);
  }

  private stopBg(step: Step, opts: Map<string, string | true>, fence: Fence): void {
    const name = this.value(opts, 'stop', fence)!;
    step.name = name;
    const started = this.running.get(name);
    if (!started) return this.fail(fence.line, `stop=${name}: no background command of that name is running here (start it with bg=${name})`);
    if (step.host !== undefined && step.host !== started.host) this.fail(fence.line, `stop=${name}: it runs on ${started.host}, not ${step.host}`);
    step.host = started.host;
    this.running.delete(name);
    // A stop block is never run: it tells the student what to do (press Ctrl-C). Only
    // comments keep "what you read is what runs" true.
    const cmd = step.script.split('\n').find((x) => x.trim() !== '' && !x.trim().startsWith('#'));
    if (cmd !== undefined) this.fail(fence.line, `a stop block holds only # comments (it is not run; the runner sends Ctrl-C); found "${cmd.trim()}"`);
  }

  /** A block that runs: it names its host, and its first line says where to type it. */
  private checkCommand(step: Step, fence: Fence): void {
    const { kind, host, script: body } = step;
    if (kind !== 'student-check' && host === undefined) this.fail(fence.line, `${fence.info}: host=... is required (where should it run?)`);
    if (body.trim() === '') this.fail(fence.line, 'command block is empty');
    // The first line says where to type it, for a reader who does not see the info string.
    const first = body.split('\n')[0].trim();
    const on = ON_HOST_RE.exec(first);
    if (on && host !== undefined && on[1] !== host) this.fail(fence.line, `first line says "${first}" but the block runs on ${host}`);
    if (!on && host !== undefined && kind !== 'student-check') {
      this.fail(fence.line, `the first line of the block must be "# on ${host}" so a reader knows where to type it`);
    }
  }
}

// Which kind of step a fenced block is, or null when it is only for reading.
function classify(lang: string, opts: Map<string, string | true>): StepKind | 'expect' | 'lab-up' | null {
  switch (lang) {
    case 'expect': return 'expect';
    case 'check': return 'check';
    case 'student-check': return 'student-check';
    case 'sh':
    case 'bash':
    case 'shell':
      if (opts.size === 0) return null; // a plain ```sh block is an example to read
      if (opts.has('lab-up')) return 'lab-up';
      if (opts.has('stop')) return 'stop';
      if (opts.has('bg')) return 'bg';
      return 'run';
    default:
      return null;
  }
}

/** Reads and parses a notebook file. */
export function loadNotebook(file: string): Notebook {
  return parseNotebook(fs.readFileSync(file, 'utf8'), file);
}

/** The repository root (the directory holding labs/ and scripts/), found from this file. */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'scripts', 'lab.sh')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`repository root (with scripts/lab.sh) not found above ${__dirname}`);
    dir = up;
  }
}

/** Every labs/NN-*.md notebook, sorted by number. */
export function listNotebooks(labsDir = path.join(repoRoot(), 'labs')): string[] {
  if (!fs.existsSync(labsDir)) return [];
  return fs.readdirSync(labsDir)
    .filter((f) => /^\d+-.*\.md$/.test(f))
    .sort((a, b) => parseInt(a, 10) - parseInt(b, 10) || a.localeCompare(b))
    .map((f) => path.join(labsDir, f));
}

/** "1", "01" or a path to a .md file -> the notebook's path. Throws naming what was looked for. */
export function findNotebook(which: string, labsDir = path.join(repoRoot(), 'labs')): string {
  if (/^\d+$/.test(which)) {
    const n = Number(which);
    const hits = listNotebooks(labsDir).filter((f) => parseInt(path.basename(f), 10) === n);
    if (hits.length === 0) throw new Error(`no notebook for lab ${which} in ${labsDir} (looked for ${String(n).padStart(2, '0')}-*.md)`);
    if (hits.length > 1) throw new Error(`more than one notebook for lab ${which}: ${hits.map((h) => path.basename(h)).join(', ')}`);
    return hits[0];
  }
  if (which.endsWith('.md') && fs.existsSync(which)) return path.resolve(which);
  throw new Error(`"${which}" is neither a lab number nor an existing .md file`);
}
