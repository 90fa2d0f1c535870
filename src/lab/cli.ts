// `npm run lab -- ...`: the lab (scripts/lab.sh) and its notebooks (labs/NN-*.md).
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { findNotebook, listNotebooks, loadNotebook, NotebookError } from './notebook';
import { LabSetupError, checkStudentWork, runNotebook } from './runner';
import { scriptPath } from './topology';

const USAGE = `usage: minivpn lab [--prefix P] COMMAND     (or: npm run lab -- ...)

The lab (network namespaces on this machine, see scripts/lab.sh):
  up [--clients N] [--ipv6 | --ipv6-only]
                        build the lab (1..8 clients, default 1; --ipv6: IPv6 on the
                        underlay too, --ipv6-only: instead of IPv4)
  down                  remove it
  status                hosts, addresses, running processes
  hosts                 the host names
  exec HOST CMD...      run CMD in HOST, e.g.: exec client1 ping -c 1 203.0.113.80
  shell HOST            an interactive shell in HOST (prompt shows the host)

The notebooks (labs/NN-name.md):
  list                  the notebooks
  N [options]           run notebook N from start to end and check every checkpoint
      --keep            leave the lab up at the end
      --keep-lab        if the lab is already up, run in it as it is (and leave it up)
      --verbose, -v     show every command's output
  check N               check your own work for lab N (capture files, routes...)
  report A B            compare two captures (dist/src/lab/report-cli.js)

--prefix P (or LAB_PREFIX=P) selects an independent lab; the default is "mv".
Run as root (sudo): network namespaces need it.`;

class UsageError extends Error {}

function takeOption(args: string[], name: string, withValue: true): string | undefined;
function takeOption(args: string[], name: string, withValue: false): boolean;
function takeOption(args: string[], name: string, withValue: boolean): string | boolean | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (withValue && a.startsWith(`${name}=`)) { args.splice(i, 1); return a.slice(name.length + 1); }
    if (a !== name) continue;
    if (!withValue) { args.splice(i, 1); return true; }
    if (i + 1 >= args.length) throw new UsageError(`${name} needs a value`);
    const v = args[i + 1];
    args.splice(i, 2);
    return v;
  }
  return withValue ? undefined : false;
}

// Runs a program with our terminal; resolves with its exit status.
function passThrough(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: 'inherit', env });
    // Ctrl-C reaches the child through the terminal; we only wait for it to finish.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    child.on('error', (err) => { process.stderr.write(`lab: cannot run ${file}: ${err.message}\n`); resolve(127); });
    child.on('close', (code, signal) => {
      process.removeListener('SIGINT', ignore);
      resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1));
    });
  });
}

function labSh(args: string[], prefix: string | undefined): Promise<number> {
  const env = prefix ? { ...process.env, LAB_PREFIX: prefix } : process.env;
  return passThrough('bash', [scriptPath('lab.sh'), ...args], env);
}

async function shell(host: string, prefix: string | undefined): Promise<number> {
  if (!/^[a-z]+[0-9]*$/.test(host)) throw new UsageError(`"${host}" is not a lab host name (npm run lab -- hosts lists them)`);
  // The user's own bashrc, then a prompt that says which host this terminal is in.
  const rc = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-shell-')), 'bashrc');
  fs.writeFileSync(rc, `[ -f ~/.bashrc ] && . ~/.bashrc\nPS1='[${host}] \\w\\$ '\n`);
  try {
    return await labSh(['exec', host, 'bash', '--rcfile', rc, '-i'], prefix);
  } finally {
    fs.rmSync(path.dirname(rc), { recursive: true, force: true });
  }
}

async function runLab(which: string, args: string[], prefix: string | undefined): Promise<number> {
  const keep = takeOption(args, '--keep', false);
  const keepLab = takeOption(args, '--keep-lab', false);
  const verbose = takeOption(args, '--verbose', false) || takeOption(args, '-v', false);
  if (args.length) throw new UsageError(`unknown option(s) for a notebook run: ${args.join(' ')}`);
  const nb = loadNotebook(findNotebook(which));
  const ac = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    // First Ctrl-C: stop cleanly (commands, then the lab). Second: leave now; the
    // runner's exit hook still removes the lab.
    if (++interrupts > 1) process.exit(130);
    process.stderr.write('\n[lab] interrupted: stopping the commands and taking the lab down (Ctrl-C again to quit now)\n');
    ac.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const r = await runNotebook(nb, { prefix, keep, keepLab, verbose, signal: ac.signal });
    if (interrupts) return 130;
    return r.ok ? 0 : 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

async function checkWork(which: string | undefined, args: string[], prefix: string | undefined): Promise<number> {
  if (!which) throw new UsageError('check needs a lab number, e.g.: npm run lab -- check 2');
  if (args.length) throw new UsageError(`unknown option(s) for check: ${args.join(' ')}`);
  const nb = loadNotebook(findNotebook(which));
  const tag = `[lab ${nb.number ?? which}]`;
  const results = await checkStudentWork(nb, { prefix });
  if (results.length === 0) {
    console.log(`${tag} this lab has no checks of your own work (student-check blocks)`);
    return 0;
  }
  console.log(`${tag} checking your work: ${nb.title}`);
  for (const r of results) {
    console.log(`  ${r.present ? 'present' : 'MISSING'}  ${r.title}`);
    if (!r.present) {
      if (r.reason) console.log(`           ${r.reason}`);
      if (r.hint) console.log(`           hint: ${r.hint}`);
    }
  }
  const n = results.filter((r) => r.present).length;
  console.log(`${tag} ${n} of ${results.length} present`);
  return n === results.length ? 0 : 1;
}

export async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  // --prefix may come before the command (for every command) or after it (for N/check).
  let prefix: string | undefined;
  while (args[0] === '--prefix' || args[0]?.startsWith('--prefix=')) prefix = takeOption(args, '--prefix', true);
  const cmd = args.shift();
  if (prefix !== undefined && !/^[A-Za-z0-9]{1,12}$/.test(prefix)) throw new UsageError(`--prefix must be 1-12 letters or digits (got "${prefix}")`);
  switch (cmd) {
    case undefined:
    case 'help':
    case '-h':
    case '--help':
      console.log(USAGE);
      return cmd === undefined ? 2 : 0;
    case 'up':
    case 'down':
    case 'status':
    case 'hosts':
    case 'exec':
      return labSh([cmd, ...args], prefix);
    case 'shell':
      if (args.length !== 1) throw new UsageError('usage: npm run lab -- shell HOST');
      return shell(args[0], prefix);
    case 'list':
      for (const f of listNotebooks()) {
        const nb = loadNotebook(f);
        console.log(`${String(nb.number).padStart(2)}  ${nb.title}  (${path.relative(process.cwd(), f)})`);
      }
      return 0;
    case 'report': {
      const cli = path.join(__dirname, 'report-cli.js');
      if (!fs.existsSync(cli)) throw new Error(`${cli} not found (is the project built? npx tsc -p .)`);
      return passThrough(process.execPath, [cli, ...args]);
    }
    case 'check': {
      const p = takeOption(args, '--prefix', true) ?? prefix;
      return checkWork(args.shift(), args, p);
    }
    default: {
      if (!/^\d+$/.test(cmd) && !cmd.endsWith('.md')) throw new UsageError(`unknown command "${cmd}"`);
      const p = takeOption(args, '--prefix', true) ?? prefix;
      if (p !== undefined && !/^[A-Za-z0-9]{1,12}$/.test(p)) throw new UsageError(`--prefix must be 1-12 letters or digits (got "${p}")`);
      return runLab(cmd, args, p);
    }
  }
}

/** main, with its errors printed: the exit status. */
export function cli(argv: string[]): Promise<number> {
  return main(argv).catch((err: Error) => {
    if (err instanceof UsageError) process.stderr.write(`lab: ${err.message}\n\n${USAGE}\n`);
    else if (err instanceof NotebookError || err instanceof LabSetupError) process.stderr.write(`lab: ${err.message}\n`);
    else process.stderr.write(`lab: ${err.message}\n`);
    return err instanceof UsageError ? 2 : 1;
  });
}

if (require.main === module) {
  void cli(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
