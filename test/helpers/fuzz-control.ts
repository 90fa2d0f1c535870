// Generators and an independent checker for control messages (src/wire/control.ts), used
// by the fuzz targets in test/fuzz.test.ts.
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { ConfigMsg, ControlMsg, DecodedControl } from '../../src/wire/control';

// ---- well-formed messages, built to satisfy every rule of docs/PROTOCOL.md §3 ----------

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const maskOf = (p: number) => (p === 0 ? 0 : (0xffffffff << (32 - p)) >>> 0);
const quad = (n: number) => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

const cidr = fc.tuple(u32, fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${quad((a & maskOf(p)) >>> 0)}/${p}`);

/** Reasons: no control characters, at most 200 UTF-16 units (a cut may leave a lone surrogate: allowed). */
const reason = fc.string({ unit: 'binary', maxLength: 200 }).map((s) => s.replace(/[\x00-\x1f\x7f]/g, '').slice(0, 200));

/** Keepalive and dead-peer times: the dead-peer time is longer than a nonzero keepalive. */
const timers = fc
  .tuple(fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3600 }), fc.double({ min: 0, max: 43200, noNaN: true })), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([ka, f]) => ({ keepaliveSec: Math.abs(ka), timeoutSec: ka > 0 ? Math.min(86400, ka + 1 + f * (86399 - ka)) : Math.max(0.001, f * 86400) }));

export const validConfig: fc.Arbitrary<ConfigMsg> = fc
  .record({
    prefix: fc.integer({ min: 8, max: 30 }),
    net: u32,
    a: u32,
    g: u32,
    mtu: fc.integer({ min: 576, max: 2000 }),
    routes: fc.array(cidr, { maxLength: 6 }),
    redirectGateway: fc.boolean(),
    dns: fc.array(fc.ipV4(), { maxLength: 4 }),
    timers,
  })
  .map((r) => {
    const mask = maskOf(r.prefix);
    const hosts = 2 ** (32 - r.prefix) - 2; // usable host numbers 1..hosts
    const net = (r.net & mask) >>> 0;
    const a = 1 + (r.a % hosts);
    let g = 1 + (r.g % hosts);
    if (g === a) g = a === 1 ? 2 : 1;
    return {
      type: 'config', v: 1, address: quad(net + a), prefix: r.prefix, gateway: quad(net + g), mtu: r.mtu, routes: r.routes,
      redirectGateway: r.redirectGateway, dns: r.dns, ...r.timers,
    };
  });

export const validMsg: fc.Arbitrary<ControlMsg> = fc.oneof(
  fc.record(
    { type: fc.constant('hello' as const), v: fc.constant(1 as const), cn: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/), want: fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }) },
    { requiredKeys: ['type', 'v'] },
  ),
  validConfig,
  fc.record({ type: fc.constant('refuse' as const), v: fc.constant(1 as const), reason }),
  fc.record({ type: fc.constant('bye' as const), v: fc.constant(1 as const), reason }),
);

// ---- almost-messages: each field sometimes right, sometimes anything ---------------------

const anyJson = fc.jsonValue({ maxDepth: 2 });
const ipish = fc.oneof(fc.ipV4(), fc.constantFrom('10.8.0.0', '10.8.0.1', '10.8.0.2', '10.8.0.255', '010.8.0.1', '256.1.1.1', '1.2.3', '1.2.3.4.5', ' 10.8.0.1', '::1', ''), fc.string({ maxLength: 16 }));
const numish = (min: number, max: number) => fc.oneof(fc.integer({ min: Math.floor(min) - 2, max: Math.ceil(max) + 2 }), fc.double({ min: min - 1, max: max + 1 }), fc.constantFrom(min, max, -0, 0.5, 1e308), anyJson);
const stringish = fc.oneof(fc.string({ unit: 'binary-ascii', maxLength: 210 }), fc.string({ unit: 'binary', maxLength: 120 }), anyJson);

const fieldValues = {
  cn: fc.oneof(fc.stringMatching(/^[A-Za-z0-9._-]{0,66}$/), fc.constantFrom('-a', '.a', 'a/b', 'a'.repeat(64), 'a'.repeat(65)), anyJson),
  want: fc.oneof(fc.dictionary(fc.string(), fc.jsonValue()), anyJson),
  address: fc.oneof(ipish, anyJson),
  gateway: fc.oneof(ipish, anyJson),
  prefix: numish(8, 30),
  mtu: numish(576, 2000),
  routes: fc.oneof(fc.array(fc.oneof(cidr, ipish, fc.constantFrom('10.0.0.1/8', '1.2.3.0/33', '1.2.3.0/', '1.2.3.0/024')), { maxLength: 4 }), anyJson),
  redirectGateway: fc.oneof(fc.boolean(), anyJson),
  dns: fc.oneof(fc.array(ipish, { maxLength: 4 }), anyJson),
  keepaliveSec: numish(0, 86400),
  timeoutSec: numish(0.001, 86400),
  reason: stringish,
};

/** JSON objects shaped like control messages, most of them wrong somewhere. */
export const almostMsg: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.record(
      { type: fc.oneof(fc.constantFrom('hello', 'config', 'refuse', 'bye'), anyJson), v: fc.oneof(fc.constant(1), anyJson), ...fieldValues },
      { requiredKeys: [] },
    ),
    fc.dictionary(fc.string({ maxLength: 8 }), anyJson, { maxKeys: 2 }),
  )
  .map(([known, extra]) => ({ ...extra, ...known }));

/**
 * Values nested `depth` levels deep (arrays or objects), in a field of a message that is
 * otherwise valid: the shape a JSON parser takes without complaint and a recursive printer
 * or encoder may not.
 */
export const deeplyNested: fc.Arbitrary<{ msg: ControlMsg; field: string; json: string }> = fc
  .tuple(validMsg, fc.integer({ min: 1, max: 7000 }), fc.boolean(), fc.nat())
  .map(([msg, depth, arrays, k]) => {
    const fields = Object.keys(msg).filter((f) => f !== 'type');
    const field = fields[k % fields.length];
    const [open, close] = arrays ? ['[', ']'] : ['{"a":', '}'];
    const inner = arrays ? '' : '1';
    const nested = open.repeat(depth) + inner + close.repeat(depth);
    const json = JSON.stringify({ ...msg, [field]: '\u0000HOLE' }).replace('"\\u0000HOLE"', nested);
    return { msg, field, json };
  });

/**
 * A value near `msg[field]`, where validation rules have their edges: another field's value
 * (a gateway equal to the address), a number a step away, a neighbouring address, a list one
 * item shorter or longer. `r` picks which.
 */
export function nearby(msg: ControlMsg, field: string, r: number): unknown {
  const o = msg as unknown as Record<string, unknown>;
  const v = o[field];
  const keys = Object.keys(o);
  const pick = <T>(xs: T[]) => xs[(r >> 2) % xs.length];
  const n = ip(v);
  if (r % 4 === 1 && typeof v === 'number') return v + pick([-1, 1, -0.5, 0.5, -0.001, 0.001]);
  if (r % 4 === 2 && n !== null) return quad((n + pick([1, -1, 2, -2, 256])) >>> 0);
  if (r % 4 === 3 && Array.isArray(v)) return pick([v.slice(1), [...v, v[0] ?? '10.0.0.0/8']]);
  return o[pick(keys)];
}

// ---- what every decoded message must satisfy, restated independently of control.ts ------

const KNOWN_FIELDS = /^(body|type|v|cn|want|address|prefix|gateway|mtu|routes(\[\d+\])?|redirectGateway|dns(\[\d+\])?|keepaliveSec|timeoutSec|reason)$/;
const KEYS: Record<string, string[]> = {
  hello: ['type', 'v', 'cn', 'want'],
  config: ['type', 'v', 'address', 'prefix', 'gateway', 'mtu', 'routes', 'redirectGateway', 'dns', 'keepaliveSec', 'timeoutSec'],
  refuse: ['type', 'v', 'reason'],
  bye: ['type', 'v', 'reason'],
};

/** Dotted quad -> uint32, or null: four decimal octets 0..255, no leading zeros. */
function ip(s: unknown): number | null {
  if (typeof s !== 'string') return null;
  const parts = s.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) return null;
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

const isInt = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isNum = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;
const isText = (v: unknown) => typeof v === 'string' && v.length <= 200 && !/[\x00-\x1f\x7f]/.test(v);

/** Asserts the rules of docs/PROTOCOL.md §3 on a message decodeControl accepted. */
export function checkValid(m: DecodedControl): void {
  if (m.type === 'invalid') assert.fail(`invalid: ${m.error}`);
  assert.ok(m.type in KEYS, `type ${m.type}`);
  for (const k of Object.keys(m)) assert.ok(KEYS[m.type].includes(k), `no field ${k} may pass through into a ${m.type}`);
  assert.equal(m.v, 1);
  if (m.type === 'hello') {
    if (m.cn !== undefined) assert.match(m.cn, /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
    if (m.want !== undefined) assert.ok(typeof m.want === 'object' && m.want !== null && !Array.isArray(m.want), 'want is an object');
  } else if (m.type === 'refuse' || m.type === 'bye') {
    assert.ok(isText(m.reason), 'reason: a string of at most 200 characters, no control characters');
  } else if (m.type === 'config') {
    checkConfig(m);
  }
}

function checkConfig(m: ConfigMsg): void {
  assert.ok(isInt(m.prefix, 8, 30), 'prefix 8..30');
  const a = ip(m.address), g = ip(m.gateway);
  assert.ok(a !== null && g !== null, 'address and gateway are IPv4');
  const mask = maskOf(m.prefix);
  const net = (a & mask) >>> 0, bcast = (net | ~mask) >>> 0;
  assert.ok(a !== net && a !== bcast && g !== net && g !== bcast, 'address and gateway are hosts, not network/broadcast');
  assert.equal((g & mask) >>> 0, net, 'gateway in the address\'s subnet');
  assert.notEqual(a, g, 'gateway differs from address');
  assert.ok(isInt(m.mtu, 576, 2000), 'mtu 576..2000');
  assert.ok(Array.isArray(m.routes) && m.routes.length <= 256, 'routes: a list');
  for (const r of m.routes) {
    const [addr, p, ...rest] = r.split('/');
    const n = ip(addr);
    assert.ok(rest.length === 0 && n !== null && /^(0|[1-9][0-9]?)$/.test(p ?? '') && Number(p) <= 32, `route ${r} is a CIDR`);
    assert.equal((n & maskOf(Number(p))) >>> 0, n, `route ${r} has no host bits`);
  }
  assert.equal(typeof m.redirectGateway, 'boolean');
  assert.ok(Array.isArray(m.dns) && m.dns.length <= 256 && m.dns.every((d) => ip(d) !== null), 'dns: IPv4 addresses');
  assert.ok(isNum(m.keepaliveSec, 0, 86400) && isNum(m.timeoutSec, 0.001, 86400), 'timers in range');
  if (m.keepaliveSec > 0) assert.ok(m.timeoutSec > m.keepaliveSec, 'timeout longer than the keepalive');
}

/** Asserts that a rejection names a known field, and its error starts with that name. */
export function checkInvalid(m: DecodedControl): string {
  assert.equal(m.type, 'invalid');
  if (m.type !== 'invalid') return '';
  assert.match(m.field, KNOWN_FIELDS, 'the error names a field of the protocol');
  assert.ok(
    m.error.startsWith(`${m.field}: `) || (/^(hello|config|refuse|bye)\./.test(m.error) && m.error.slice(m.error.indexOf('.') + 1).startsWith(`${m.field}: `)),
    `error "${m.error}" starts with its field ${m.field}`,
  );
  assert.ok(!/[\x00-\x1f\x7f]/.test(m.error), 'the error has no control characters (it is logged: one line, no escapes)');
  return m.field;
}

/** Fields whose rejection a change of field `f` can cause (cross-field rules). */
export function blameable(f: string): RegExp {
  const related: Record<string, string> = {
    prefix: 'prefix|address|gateway',
    address: 'address|gateway',
    keepaliveSec: 'keepaliveSec|timeoutSec',
    routes: 'routes(\\[\\d+\\])?',
    dns: 'dns(\\[\\d+\\])?',
  };
  return new RegExp(`^(${related[f] ?? f})$`);
}
