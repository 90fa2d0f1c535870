// Reads a systemd unit file the way systemd does for the parts our units use, so a test can
// run its ExecStart/ExecReload command lines as written: sections and keys, comments, line
// continuations; in commands, specifiers (%i, %E, %S, %t, %%) and $VAR / ${VAR}.
// Anything else systemd would treat specially (quotes, escapes, other specifiers, command
// prefixes) is refused, so that a unit changed beyond this stays tested honestly.
import fs from 'node:fs';

export type Unit = Map<string, Map<string, string[]>>;

export function readUnit(file: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | null = null;
  const lines = fs.readFileSync(file, 'utf8').replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      section = new Map();
      unit.set(sec[1], section);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv || !section) throw new Error(`${file}: cannot read line ${JSON.stringify(line)}`);
    const values = section.get(kv[1]) ?? [];
    values.push(kv[2].trim());
    section.set(kv[1], values);
  }
  return unit;
}

/** The one value of [section] key, or throws. */
export function value(unit: Unit, section: string, key: string): string {
  const v = unit.get(section)?.get(key);
  if (!v || v.length !== 1) throw new Error(`expected one ${key}= in [${section}], found ${v?.length ?? 0}`);
  return v[0];
}

export interface Specifiers { i?: string; E: string; S: string; t: string }

/** Expands %-specifiers as systemd does for a system unit, with the directories given. */
export function expandSpecifiers(s: string, spec: Specifiers): string {
  return s.replace(/%(.)/g, (_, c: string) => {
    if (c === '%') return '%';
    const v = (spec as unknown as Record<string, string | undefined>)[c];
    if (v === undefined) throw new Error(`specifier %${c} is not known to this test: teach test/helpers/unit-file.ts`);
    return v;
  });
}

/** A command line as argv: specifiers and $VAR expanded, split on whitespace. */
export function commandLine(line: string, spec: Specifiers, env: Record<string, string>): string[] {
  if (/^[-@+!:]/.test(line)) throw new Error(`command prefixes are not known to this test: ${line}`);
  if (/["'\\;]/.test(line)) throw new Error(`quotes, escapes and ";" are not known to this test: ${line}`);
  return expandSpecifiers(line, spec).split(/\s+/).filter((w) => w !== '').map((w) =>
    w.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a?: string, b?: string) => {
      const name = (a ?? b)!;
      if (env[name] === undefined) throw new Error(`$${name} is not set for this command`);
      return env[name];
    }));
}
