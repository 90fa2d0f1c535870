// Shared pieces of the fuzz targets (test/fuzz.test.ts): the seed corpus in test/fuzz/, the
// time budget, byte mutators that start from the corpus, and the runner that turns a
// fast-check run into tap assertions.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import type { Test } from 'tap';

/** Seconds of fuzzing per target: MINIVPN_FUZZ_SECONDS (npm run fuzz sets 60). */
export const FUZZ_SECONDS = Number(process.env.MINIVPN_FUZZ_SECONDS || 7);
/**
 * Replays a reported failure: MINIVPN_FUZZ_SEED=<seed from the report>. In CI a fixed seed, so a
 * landing cannot go red on a new random find (`npm run fuzz` explores with random seeds).
 */
const SEED = process.env.MINIVPN_FUZZ_SEED ? Number(process.env.MINIVPN_FUZZ_SEED) : process.env.CI ? 20261207 : undefined;
/** Fewer runs than this in the whole budget: the target is broken or the machine stalled. */
const MIN_RUNS = 200;

export interface Seed {
  name: string;
  bytes: Buffer;
}

// This file runs from dist/test/helpers; the corpus stays in the source tree.
export const CORPUS_DIR = path.join(__dirname, '..', '..', '..', 'test', 'fuzz');

/** Every test/fuzz/*.hex file: hex digits and whitespace, '#' starts a comment line. */
export function loadCorpus(): Seed[] {
  return fs
    .readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.hex'))
    .sort()
    .map((f) => {
      const text = fs.readFileSync(path.join(CORPUS_DIR, f), 'utf8');
      const hex = text.split('\n').filter((l) => !l.startsWith('#')).join('').replace(/\s+/g, '');
      if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new Error(`test/fuzz/${f}: not hex`);
      return { name: f.replace(/\.hex$/, ''), bytes: Buffer.from(hex, 'hex') };
    });
}

export const corpus = loadCorpus();

export function seed(name: string): Buffer {
  const s = corpus.find((c) => c.name === name);
  if (!s) throw new Error(`test/fuzz/${name}.hex is missing`);
  return s.bytes;
}

/** Arbitrary bytes, as a Buffer. */
export function bytes(maxLength = 256): fc.Arbitrary<Buffer> {
  // fast-check favours short values; half of them may be any length up to the maximum.
  return fc.oneof(fc.uint8Array({ maxLength }), fc.uint8Array({ maxLength, size: 'max' })).map((u) => Buffer.from(u));
}

export type Mutation = (b: Buffer) => Buffer;

/** One change to a datagram: the mutator's moves. */
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })).map(([i, bit]): Mutation => (b) => {
    if (b.length) b[i % b.length] ^= 1 << bit; // flip one bit
    return b;
  }),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([i, v]): Mutation => (b) => {
    if (b.length) b[i % b.length] = v; // set one byte
    return b;
  }),
  fc.nat().map((n): Mutation => (b) => b.subarray(0, n % (b.length + 1))), // truncate
  fc.tuple(fc.nat(), bytes(16)).map(([i, x]): Mutation => (b) => {
    const at = i % (b.length + 1); // insert bytes
    return Buffer.concat([b.subarray(0, at), x, b.subarray(at)]);
  }),
  fc.tuple(fc.nat(), fc.nat()).map(([i, n]): Mutation => (b) => {
    const at = i % (b.length + 1); // delete bytes
    return Buffer.concat([b.subarray(0, at), b.subarray(at + (n % 9))]);
  }),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 1 })).map(([i, v]): Mutation => (b) => {
    // Boundary values where length and offset fields live: 0x00.. and 0xff..
    if (b.length) b.fill(v ? 0xff : 0, i % b.length, Math.min(b.length, (i % b.length) + 2));
    return b;
  }),
);

/** `base` values changed by a few random mutations (a fresh copy each time). */
export function mutated(base: fc.Arbitrary<Buffer>, maxMutations = 4): fc.Arbitrary<Buffer> {
  return fc.tuple(base, fc.array(mutation, { maxLength: maxMutations })).map(([b, ms]) => ms.reduce<Buffer>((acc, m) => m(acc), Buffer.from(b)));
}

/** Corpus entries (optionally only some), mutated; plus plain random bytes. */
export function fuzzBytes(filter: (s: Seed) => boolean = () => true, maxLength = 256): fc.Arbitrary<Buffer> {
  const seeds = corpus.filter(filter).map((s) => s.bytes);
  return fc.oneof(mutated(fc.constantFrom(...seeds)), bytes(maxLength));
}

/**
 * Runs `prop` for FUZZ_SECONDS (the corpus first, as `examples`) and reports in tap: the
 * property held, and it ran often enough to mean something. fast-check's report (seed,
 * counterexample, shrunk) goes into the failure message.
 */
export function runFuzz<Ts>(t: Test, name: string, prop: fc.IProperty<Ts>, examples: Ts[] = [], minRuns = MIN_RUNS): fc.RunDetails<Ts> {
  const started = Date.now();
  const details = fc.check<Ts>(prop, {
    numRuns: Number.MAX_SAFE_INTEGER,
    examples,
    seed: SEED,
    plugins: [fc.interruptAfterTimeLimit(FUZZ_SECONDS * 1000)],
    includeErrorInReport: true,
  });
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  t.notOk(details.failed, `${name}: property holds (${details.numRuns} runs in ${secs}s, seed ${details.seed})`, {
    report: details.failed ? fc.defaultReportMessage(details) : undefined,
  });
  if (!details.failed) t.ok(details.numRuns >= minRuns, `${name}: ${details.numRuns} runs (at least ${minRuns})`);
  return details;
}

/**
 * Counts the outcomes a property reached (accepted, each kind of rejection, ...), so a test
 * can check that the inputs really got that far: a property that only ever sees garbage
 * rejected at the first byte proves little.
 */
export class Tally {
  private readonly n = new Map<string, number>();
  hit(outcome: string): void {
    this.n.set(outcome, (this.n.get(outcome) ?? 0) + 1);
  }
  /** Asserts that each outcome was reached at least once. */
  expect(t: Test, name: string, outcomes: string[]): void {
    const missed = outcomes.filter((o) => !this.n.get(o));
    const seen = [...this.n].map(([k, v]) => `${k} ${v}`).join(', ');
    t.same(missed, [], `${name}: inputs reached every outcome (${seen})`);
  }
}
