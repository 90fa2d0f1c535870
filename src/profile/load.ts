// `minivpn client --profile alice.conf [flags]`: the profile becomes client flags.
//
// Everything is checked before the client starts, so a bad profile never sends a packet:
// the format, each option (by the client's own parser, with the profile's line number in
// the message), then the credentials (key pair, CA signature, validity). The CA, certificate
// and key are then written to a private temporary directory for the DTLS context to load
// (OpenSSL reads files); the caller removes it once the client is built.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, parseClientArgs } from '../config';
import { Profile, ProfileError, optionArgs, parseProfile } from './format';
import { checkCredentials } from './verify';

export interface LoadedProfile {
  /** The client's flags: the profile's, its credentials' files, then the command line's. */
  argv: string[];
  file: string;
  /** Things worth a warning (a profile others can read). */
  warnings: string[];
  /** Removes the credentials' temporary files. */
  cleanup(): void;
}

/** Takes `--profile FILE` (or `--profile=FILE`) out of argv; null if it is not there. */
export function takeProfileFlag(argv: string[]): { file: string; rest: string[] } | null {
  let file: string | null = null;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    let value: string | undefined;
    if (a === '--profile') {
      value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw new ProfileError('config: "profile": flag --profile needs a value');
      i++;
    } else if (a.startsWith('--profile=')) {
      value = a.slice('--profile='.length);
    } else {
      rest.push(a);
      continue;
    }
    if (file !== null) throw new ProfileError('config: "profile": --profile is given twice');
    if (value === '') throw new ProfileError('config: "profile": expected a file path');
    file = value;
  }
  return file === null ? null : { file, rest };
}

function readProfile(file: string): { text: string; warnings: string[] } {
  let st: fs.Stats;
  let text: string;
  try {
    st = fs.statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > 1024 * 1024) throw new Error(`${st.size} bytes: not a profile`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ProfileError(`profile ${file}: cannot read it: ${e.code ?? e.message}`);
  }
  const warnings: string[] = [];
  if (st.mode & 0o077) {
    warnings.push(`profile ${file} can be read by others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); it holds a private key: chmod 600 ${file}`);
  }
  return { text, warnings };
}

/** Checks the profile's options alone, so that an error names its line. */
export function checkProfileOptions(p: Profile, file: string): void {
  try {
    parseClientArgs([...optionArgs(p), '--ca=ca.crt', '--cert=client.crt', '--key=client.key'], {});
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // The parser names the flag it was reading ("(flag --server)", "unknown flag --x"):
    // that is the profile's line with that flag.
    const m = /flag --([a-z0-9-]+)/.exec(err.message);
    const opt = m ? p.options.find((o) => o.flag === m[1]) : undefined;
    const msg = err.message.replace(/^config: /, '').replace(/ \(flag --[a-z0-9-]+\)$/, '').replace(/ \(see --help\)$/, '');
    throw new ProfileError(opt ? `profile ${file} line ${opt.line}: ${msg}` : `profile ${file}: ${msg}`);
  }
}

/** Reads a profile and checks its format and options (not its credentials). Throws ProfileError. */
export function readProfileFile(file: string): { profile: Profile; warnings: string[] } {
  const { text, warnings } = readProfile(file);
  const profile = parseProfile(text, file);
  checkProfileOptions(profile, file);
  return { profile, warnings };
}

/** Writes the credentials into a new private directory: 0700, files 0600. */
function writeCredentials(p: Profile): { dir: string; files: Record<'ca' | 'cert' | 'key', string> } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-profile-'));
  fs.chmodSync(dir, 0o700);
  const files = { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'client.crt'), key: path.join(dir, 'client.key') };
  try {
    for (const k of ['ca', 'cert', 'key'] as const) fs.writeFileSync(files[k], p[k], { mode: 0o600, flag: 'wx' });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, files };
}

/**
 * Reads, checks and expands `--profile FILE` in the client's argv; null when there is none.
 * Throws ProfileError (a ConfigError) with the reason when the profile cannot be used.
 */
export function loadProfile(argv: string[], now = Date.now()): LoadedProfile | null {
  const taken = takeProfileFlag(argv);
  if (!taken) return null;
  const { file, rest } = taken;
  const clash = rest.find((a) => /^--(ca|cert|key|config)(=|$)/.test(a));
  if (clash) throw new ProfileError(`config: "profile": ${clash.split('=')[0]} cannot be used with --profile (the profile holds the CA, certificate, key and options)`);
  const { profile: p, warnings } = readProfileFile(file);
  try {
    checkCredentials(p, now, { ca: 'its CA', cert: 'its certificate', key: 'its key' });
  } catch (err) {
    throw new ProfileError(`profile ${file} refused: ${(err as Error).message}`);
  }
  const { dir, files } = writeCredentials(p);
  let removed = false;
  const cleanup = () => {
    if (removed) return;
    removed = true;
    process.removeListener('exit', cleanup);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  return {
    argv: [...optionArgs(p), `--ca=${files.ca}`, `--cert=${files.cert}`, `--key=${files.key}`, ...rest],
    file,
    warnings,
    cleanup,
  };
}
