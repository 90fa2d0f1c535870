// The flag loop both benchmark CLIs share: `--name value` pairs and switches, --help, and a
// clear error for an unknown flag or a bad number.

export interface Flag {
  /** The flag as given, e.g. "--runs". */
  name: string;
  /** Its value (the next argument); throws if there is none. */
  value(): string;
  /** Its value as a number from min to max (an integer unless int is false). */
  number(min: number, max: number, int?: boolean): number;
}

/** Calls handle for each flag; handle returns false for a flag it does not know. */
export function eachFlag(argv: string[], usage: () => string, handle: (f: Flag) => boolean): void {
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    if (name === '--help' || name === '-h') { console.log(usage()); process.exit(0); }
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${name} needs a value\n${usage()}`);
      return v;
    };
    const number = (min: number, max: number, int = true): number => {
      const v = value();
      const n = Number(v);
      if (!Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n))) {
        throw new Error(`bad ${name} ${JSON.stringify(v)}: expected ${int ? 'an integer' : 'a number'} from ${min} to ${max}`);
      }
      return n;
    };
    if (!handle({ name, value, number })) throw new Error(`unknown option ${JSON.stringify(name)}\n${usage()}`);
  }
}
