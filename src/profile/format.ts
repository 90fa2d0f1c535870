// The one-file client profile: what `minivpn pki export` writes and `minivpn client --profile`
// reads. A text file a person can read, in the spirit of OpenVPN's inline .ovpn files:
//
//   # comments
//   server 198.51.100.2:1194          one client option per line: its flag without "--",
//   server-name server.minivpn.test   then its value (booleans: "udp-gso" / "no-udp-gso")
//   <ca>
//   -----BEGIN CERTIFICATE-----       the CA, the client's certificate and its key, as PEM,
//   ...                               each in its block
//   </ca>
//   <cert> ... </cert>
//   <key> ... </key>
//
// The option values are checked by the client's own parser (src/config.ts), so a profile
// accepts exactly what the command line does. See docs/CONFIG.md, "Client profiles".
import { ConfigError } from '../config';

/** A profile that cannot be used; the message says which file, which line and why. */
export class ProfileError extends ConfigError {
  constructor(message: string) {
    super('profile', message);
    this.name = 'ProfileError';
  }
}

export const BLOCKS = ['ca', 'cert', 'key'] as const;
export type Block = typeof BLOCKS[number];

export interface ProfileOption { flag: string; value?: string; line: number }

export interface Profile {
  options: ProfileOption[];
  ca: string;
  cert: string;
  key: string;
}

// A profile is a few kilobytes; anything much larger is not one.
export const MAX_PROFILE_BYTES = 64 * 1024;

// Options that have no place in a profile: the credentials are its blocks, and a profile
// does not point to further files of options.
const NOT_OPTIONS: Record<string, string> = {
  ca: 'the CA goes in a <ca> block',
  cert: 'the certificate goes in a <cert> block',
  key: 'the key goes in a <key> block',
  config: 'a profile cannot name a config file',
  profile: 'a profile cannot name another profile',
  help: 'not an option',
};

const OPTION_RE = /^([a-z][a-z0-9-]*)(?:[ \t]+(.*))?$/;
const PEM_RE = /^-----BEGIN ([A-Z0-9 ]+)-----\n[A-Za-z0-9+/=\n]+-----END \1-----\n$/;

/** Parses a profile's text; `file` names it in errors. Throws ProfileError. */
export function parseProfile(text: string, file: string): Profile {
  if (Buffer.byteLength(text) > MAX_PROFILE_BYTES) {
    throw new ProfileError(`profile ${file}: ${Buffer.byteLength(text)} bytes, more than a profile can be (${MAX_PROFILE_BYTES})`);
  }
  const at = (n: number, why: string) => new ProfileError(`profile ${file} line ${n}: ${why}`);
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  const options: ProfileOption[] = [];
  const blocks: Partial<Record<Block, { text: string; line: number }>> = {};
  let open: { name: Block; line: number; body: string[] } | null = null;

  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const line = lines[i].trim();
    if (open) {
      if (line === `</${open.name}>`) {
        blocks[open.name] = { text: open.body.join('\n') + '\n', line: open.line };
        open = null;
      } else if (line !== '') {
        open.body.push(line);
      }
      continue;
    }
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const tag = /^<([^<>]*)>$/.exec(line);
    if (tag) {
      const name = tag[1] as Block;
      if (!BLOCKS.includes(name)) throw at(n, `unknown block ${line} (expected <ca>, <cert> or <key>)`);
      if (blocks[name]) throw at(n, `a second <${name}> block (the first is on line ${blocks[name]!.line})`);
      open = { name, line: n, body: [] };
      continue;
    }
    const m = OPTION_RE.exec(line);
    if (!m) throw at(n, `expected an option like "server 192.0.2.1:1194" or a <ca>, <cert> or <key> block, got ${JSON.stringify(line.slice(0, 60))}`);
    const [, flag, value] = m;
    if (NOT_OPTIONS[flag]) throw at(n, `"${flag}" is not allowed in a profile: ${NOT_OPTIONS[flag]}`);
    const base = flag.replace(/^no-/, '');
    const first = options.find((o) => o.flag.replace(/^no-/, '') === base);
    if (first) throw at(n, `"${flag}" is given twice (first on line ${first.line})`);
    options.push({ flag, value: value === undefined ? undefined : value.trim(), line: n });
  }

  if (open) throw at(open.line, `<${open.name}> is not closed by </${open.name}>`);
  for (const b of BLOCKS) {
    const blk = blocks[b];
    if (!blk) throw new ProfileError(`profile ${file}: no <${b}> block`);
    if (!PEM_RE.test(blk.text)) throw at(blk.line, `the <${b}> block does not hold one PEM block (-----BEGIN ...----- to -----END ...-----)`);
  }
  if (!options.some((o) => o.flag === 'server')) {
    throw new ProfileError(`profile ${file}: no "server" line (e.g. server 192.0.2.1:1194)`);
  }
  return { options, ca: blocks.ca!.text, cert: blocks.cert!.text, key: blocks.key!.text };
}

/** The profile's options as client flags: "--server=HOST:PORT", "--udp-gso". */
export function optionArgs(p: Pick<Profile, 'options'>): string[] {
  return p.options.map((o) => (o.value === undefined ? `--${o.flag}` : `--${o.flag}=${o.value}`));
}

export interface ProfileText {
  comments?: string[];
  options: { flag: string; value?: string }[];
  ca: string;
  cert: string;
  key: string;
}

/** The text of a profile. Without comments it is as short as it can be (for a QR code). */
export function formatProfile(p: ProfileText): string {
  const out: string[] = [];
  for (const c of p.comments ?? []) out.push(c === '' ? '#' : `# ${c}`);
  for (const o of p.options) out.push(o.value === undefined ? o.flag : `${o.flag} ${o.value}`);
  for (const b of BLOCKS) {
    if (p.comments) out.push('');
    out.push(`<${b}>`, p[b].trimEnd(), `</${b}>`);
  }
  return out.join('\n') + '\n';
}
