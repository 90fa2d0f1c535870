// Headless Chromium for tests: no network at all when we are root (a private, empty
// network namespace), its own profile directory, killed with its whole process group on timeout.
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// Debian: /usr/bin/chromium; Ubuntu: chromium-browser, a wrapper of the snap.
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/snap/bin/chromium'].find((p) => fs.existsSync(p)) ?? '/usr/bin/chromium';

const CHROMIUM_LIMIT_MS = 300_000;

export function runGroup(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      stderr += `\n[test] ${cmd} timed out after ${timeoutMs} ms, killed`;
      killGroup();
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      killGroup(); // helpers the command left behind in its group, if any
      resolve({ code, stdout, stderr });
    });
  });
}

export /** Headless Chromium, with no network at all when we are root (a private, empty network namespace). */
async function chromium(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-chromium-'));
  const flags = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--hide-scrollbars',
    `--user-data-dir=${profile}`,
    ...args,
  ];
  // A limit for a hung browser only: a first start on a fresh or loaded machine can take minutes.
  try {
    if (process.getuid?.() === 0) return await runGroup('unshare', ['--net', CHROMIUM, ...flags], CHROMIUM_LIMIT_MS);
    return await runGroup(CHROMIUM, flags, CHROMIUM_LIMIT_MS);
  } finally {
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

/** Loads a page; returns the DOM after its scripts ran, and saves a screenshot to png. */
export async function renderPage(file: string, png: string): Promise<{ dom: string; shot: number | null; dumped: number | null }> {
  const url = `file://${path.resolve(file)}`;
  const dump = await chromium(['--dump-dom', url]);
  fs.mkdirSync(path.dirname(png), { recursive: true });
  fs.rmSync(png, { force: true });
  const shot = await chromium([`--screenshot=${png}`, '--window-size=1400,1800', url]);
  return { dom: dump.stdout, shot: shot.code, dumped: dump.code };
}
