// The `minivpn` command (bin/minivpn.js): one entry point for every program of the project,
// each with the flags it always had; the npm scripts (`npm run server -- ...`) call it too.
// Commands run in this process, so that under systemd the service's main PID is the server
// itself (SIGHUP reaches it) and a command's exit status is minivpn's.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

interface Command {
  summary: string;
  /** Resolves with the exit status, or nothing for a command that keeps running (server). */
  run(args: string[]): Promise<number | void>;
}

const COMMANDS: Record<string, Command> = {
  server: { summary: 'run the VPN server (root: TUN device, routes, firewall)', run: async (a) => (await import('../server/main')).main(a) },
  client: { summary: 'connect to a server: --profile NAME.conf, or --server and --name', run: async (a) => (await import('../client/main')).main(a) },
  status: { summary: "the running server's clients, addresses and counters", run: async (a) => (await import('../status/cli')).main(a) },
  pki: { summary: 'make the certificates; "pki export NAME" writes a client profile', run: async (a) => (await import('../pki/cli')).main(a) },
  lab: { summary: 'the namespace lab and its notebooks (labs/)', run: async (a) => (await import('../lab/cli')).cli(a) },
  demo: { summary: 'the whole story on namespaces: plaintext vs DTLS (root)', run: demo },
  doctor: { summary: 'check this machine and the configuration; say how to fix each problem', run: async (a) => (await import('../doctor/cli')).main(a) },
};

/** The package's root: where package.json and scripts/ are (from dist/src/cli or src/cli). */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'scripts'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`minivpn's package.json not found above ${__dirname}`);
    dir = up;
  }
}

export function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  return `minivpn ${pkg.version} (Node.js ${process.version}, OpenSSL ${process.versions.openssl})`;
}

function overview(): string {
  const w = Math.max(...[...Object.keys(COMMANDS), 'help CMD', '--version'].map((k) => k.length)) + 2;
  return [
    'usage: minivpn COMMAND [options]',
    '',
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(w)}${c.summary}`),
    '',
    `  ${'help CMD'.padEnd(w)}the options of CMD (the same as: minivpn CMD --help)`,
    `  ${'--version'.padEnd(w)}the version`,
    '',
    'A student: sudo minivpn client --profile NAME.conf',
    'The server: sudo minivpn server [options]; profiles: minivpn pki export NAME --server HOST:PORT',
    'Docs: README.md, docs/CONFIG.md, docs/DEPLOY.md',
  ].join('\n') + '\n';
}

const DEMO_USAGE = `usage: sudo minivpn demo [--keep]     (or: sudo npm run demo)
Builds a lab of network namespaces on this machine, runs the tunnel in plaintext mode and
with DTLS, shows what's-my-IP, a private LAN reached through the tunnel and what tcpdump
saw on the wire, then takes everything down. Installs what is missing first (in a clone).
  --keep   leave the lab up afterwards (sudo LAB_PREFIX=demo scripts/lab.sh down removes it)
`;

/** Runs a program with our terminal; resolves with its exit status. */
function passThrough(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: 'inherit', env });
    // Ctrl-C reaches the child through the terminal; we only wait for it.
    const ignore = () => undefined;
    process.on('SIGINT', ignore);
    child.on('error', (err) => { process.stderr.write(`minivpn: cannot run ${file}: ${err.message}\n`); resolve(127); });
    child.on('close', (code, signal) => {
      process.removeListener('SIGINT', ignore);
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] ?? 0 : 0));
    });
  });
}

/** Commands the demo runs, and the Debian package of each. */
const DEMO_NEEDS: Record<string, string> = { ip: 'iproute2', iptables: 'iptables', tcpdump: 'tcpdump', curl: 'curl', sysctl: 'procps', bash: 'bash' };

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(':').some((d) => {
    try {
      fs.accessSync(path.join(d || '.', cmd), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

async function demo(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(DEMO_USAGE);
    return 0;
  }
  const bad = args.find((a) => a !== '--keep');
  if (bad) {
    process.stderr.write(`minivpn demo: unknown option ${JSON.stringify(bad)}\n\n${DEMO_USAGE}`);
    return 2;
  }
  const root = packageRoot();
  const env = { ...process.env };
  // A clone installs and builds what is missing (scripts/deps.sh); an installed copy is
  // built already and must not run npm in its own directory: it only says what is missing.
  if (!fs.existsSync(path.join(root, 'tsconfig.json'))) {
    const missing = Object.keys(DEMO_NEEDS).filter((c) => !onPath(c));
    if (missing.length) {
      const pkgs = [...new Set(missing.map((c) => DEMO_NEEDS[c]))].join(' ');
      process.stderr.write(`minivpn demo: missing ${missing.join(', ')}: sudo apt-get install ${pkgs}\n`);
      return 1;
    }
    env.MINIVPN_SKIP_DEPS = '1';
  }
  return passThrough('bash', [path.join(root, 'scripts', 'demo.sh'), ...args], env);
}

/** Runs `minivpn ARGV...`; resolves with the exit status (undefined: the command keeps running). */
export async function run(argv: string[]): Promise<number | void> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    process.stderr.write(overview());
    return 2;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    process.stdout.write(version() + '\n');
    return 0;
  }
  if (cmd === 'help' || cmd === '--help' || cmd === '-h') {
    if (rest.length === 0) {
      process.stdout.write(overview());
      return 0;
    }
    if (!COMMANDS[rest[0]]) return unknown(rest[0]);
    return COMMANDS[rest[0]].run(['--help']);
  }
  const c = COMMANDS[cmd];
  if (!c) return unknown(cmd);
  return c.run(rest);
}

function unknown(cmd: string): number {
  const near = Object.keys(COMMANDS).find((k) => k.startsWith(cmd.slice(0, 2)));
  process.stderr.write(`minivpn: unknown command ${JSON.stringify(cmd)}${near ? ` (did you mean ${near}?)` : ''}; the commands: minivpn help\n`);
  return 2;
}

/** bin/minivpn.js calls this. */
export function main(argv: string[]): void {
  run(argv).then(
    (code) => { if (typeof code === 'number') process.exitCode = code; },
    (err: Error) => {
      process.stderr.write(`minivpn: ${err.stack ?? err.message}\n`);
      process.exitCode = 1;
    },
  );
}
