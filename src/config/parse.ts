// The parser: flags, the environment and a JSON file, merged and checked against the field
// tables (src/config/fields.ts), then the checks that involve more than one field.

import * as fs from 'node:fs';
import * as net from 'node:net';
import { Expected } from './checks';
import { CLIENT_FIELDS, Field, SERVER_FIELDS, usage } from './fields';
import { computeTunnelMtu, ETHER_HEADER } from './mtu';
import { MAX_TUNNEL_MTU } from '../wire/control';
import { IPV6_MIN_MTU } from '../wire/ip6';
import type { ClientConfig, DevType, HostPort, LogLevel, PullFilter, ServerConfig, Topology } from './types';

/** A bad configuration value. `field` is the JSON key (e.g. "pool") or, for an unknown flag, the flag. */
export class ConfigError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.field = field;
  }
}

/** Thrown by parse*Args when --help / -h is given; the message is the usage text. */
export class HelpRequested extends Error {
  constructor(kind: 'server' | 'client') {
    super(usage(kind));
    this.name = 'HelpRequested';
  }
}

function fail(field: string, what: string, got: unknown, src: string): never {
  const shown = got === undefined ? '' : `, got ${JSON.stringify(got)}`;
  throw new ConfigError(field, `config: "${field}": expected ${what}${shown} (${src})`);
}

function checkValue(f: Field, v: unknown, src: string): unknown {
  try {
    return f.check(v);
  } catch (err) {
    if (err instanceof Expected) fail(f.key, err.message, err.got !== undefined ? err.got : v, src);
    throw err;
  }
}

/** Levenshtein distance, for "did you mean" hints. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length][b.length];
}

function suggest(word: string, candidates: string[], prefix = ''): string {
  const norm = (s: string) => s.toLowerCase().replace(/[-_]/g, '');
  let best = '';
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = norm(c) === norm(word) ? 0 : distance(word, c);
    if (dist < bestD) { best = c; bestD = dist; }
  }
  return bestD <= Math.max(1, Math.floor(word.length / 4)) ? ` (did you mean ${prefix}${best}?)` : '';
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('config', `config: cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('config', `config: ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new ConfigError('config', `config: ${file} must hold a JSON object like {"listen": ":1194"}`);
  }
  return obj as Record<string, unknown>;
}

interface Parsed {
  values: Record<string, unknown>;  // key -> checked value (undefined: no default, not given)
  src: Record<string, string>;      // key -> where the value came from, for error messages
}

type FromFlags = Map<string, { v: unknown; src: string }>;

/** The field a flag name sets, and whether it is the --no- form; throws for an unknown flag. */
function flagField(byFlag: Map<string, Field>, name: string): { f: Field; negated: boolean } {
  const f = byFlag.get(name);
  if (f) return { f, negated: false };
  if (name.startsWith('no-')) {
    const g = byFlag.get(name.slice(3));
    if (g && (g.type === 'bool' || g.nullable)) return { f: g, negated: true };
  }
  const all = ['config', 'help', ...byFlag.keys()];
  throw new ConfigError(`--${name}`, `config: unknown flag --${name}${suggest(name, all, '--')} (see --help)`);
}

/** The flags' values, each checked, and the --config file if one was named. */
function readFlags(fields: Field[], argv: string[]): { fromFlags: FromFlags; configFile?: string } {
  const byFlag = new Map<string, Field>();
  for (const f of fields) for (const name of [f.flag, ...(f.aliases ?? [])]) byFlag.set(name, f);

  const fromFlags: FromFlags = new Map();
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--')) {
      throw new ConfigError(arg, `config: unexpected argument ${JSON.stringify(arg)}: options are flags like --${fields[0].flag} (see --help)`);
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq >= 0 ? eq : undefined);
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    const takeValue = (field: string): string => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new ConfigError(field, `config: "${field}": flag --${name} needs a value`);
      i++;
      return next;
    };

    if (name === 'config') {
      configFile = takeValue('config');
      continue;
    }
    const { f, negated } = flagField(byFlag, name);
    const src = `flag ${arg.split('=')[0]}`;
    if (negated) {
      if (inline !== undefined) throw new ConfigError(f.key, `config: "${f.key}": flag --${name} takes no value`);
      fromFlags.set(f.key, { v: f.type === 'bool' ? false : null, src });
    } else if (f.type === 'bool') {
      if (inline !== undefined) throw new ConfigError(f.key, `config: "${f.key}": flag --${name} takes no value (use --no-${f.flag} to turn it off)`);
      fromFlags.set(f.key, { v: true, src });
    } else if (f.type === 'list') {
      // Repeatable and comma-separated; an empty value clears the list. Flags replace the file's list.
      const items = takeValue(f.key).split(',').map((s) => s.trim()).filter((s) => s !== '');
      const prev = (fromFlags.get(f.key)?.v as string[] | undefined) ?? [];
      fromFlags.set(f.key, { v: checkValue(f, [...prev, ...items], src), src });
    } else {
      const raw = takeValue(f.key);
      const v = f.number && /^-?(\d+(\.\d+)?|\.\d+)$/.test(raw) ? Number(raw) : raw;
      fromFlags.set(f.key, { v: checkValue(f, v, src), src });
    }
  }
  return { fromFlags, configFile };
}

/** argv split at the first "--": the options, and the program to run per link (PROG ARGS...). */
export function splitProgram(argv: string[]): { options: string[]; program: string[] } {
  const at = argv.indexOf('--');
  if (at < 0) return { options: argv, program: [] };
  const program = argv.slice(at + 1);
  if (program.length === 0) throw new ConfigError('--', 'config: "--" must be followed by a program to run per link, e.g. -- ./link-up.sh');
  return { options: argv.slice(0, at), program };
}

/** Every field's value, with defaults < env < file < flags applied and each value checked. */
function parse(kind: 'server' | 'client', fields: Field[], argv: string[], env: NodeJS.ProcessEnv): Parsed {
  if (argv.includes('--help') || argv.includes('-h')) throw new HelpRequested(kind);

  // 1. Flags, collected first so that --config can appear anywhere.
  const { fromFlags, configFile } = readFlags(fields, argv);

  // 2. Defaults, then the environment.
  const out: Record<string, unknown> = {};
  const src: Record<string, string> = {};
  for (const f of fields) { out[f.key] = f.def; src[f.key] = 'default'; }
  if (env.MINIVPN_LOG !== undefined && env.MINIVPN_LOG !== '') {
    src.logLevel = 'environment MINIVPN_LOG';
    out.logLevel = checkValue(fields.find((f) => f.key === 'logLevel')!, env.MINIVPN_LOG, src.logLevel);
  }

  // 3. The file.
  if (configFile !== undefined) {
    const obj = readConfigFile(configFile);
    const keys = fields.map((f) => f.key);
    for (const [k, v] of Object.entries(obj)) {
      const f = fields.find((x) => x.key === k);
      if (!f) throw new ConfigError(k, `config: unknown field "${k}" in ${configFile}${suggest(k, keys)}`);
      src[k] = `file ${configFile}`;
      out[k] = checkValue(f, v, src[k]);
    }
  }

  // 4. Flags win.
  for (const [k, { v, src: s }] of fromFlags) { out[k] = v; src[k] = s; }
  return { values: out, src };
}

/** Whether the server listens on one IPv6 address (so every client comes over IPv6), not "::". */
export function listensOnIpv6Only(listen: HostPort): boolean {
  return net.isIPv6(listen.host) && listen.host !== '::';
}

export function parseServerArgs(args: string[], env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const { options: argv, program: linkProgram } = splitProgram(args);
  const { values: c, src } = parse('server', SERVER_FIELDS, argv, env);
  const topology = c.topology as Topology;
  let tunName = c.tunName as string;
  if (topology === 'p2p') {
    // One TUN per client: the name is a template the kernel numbers.
    if (src.tunName === 'default') tunName = 'mvp%d';
    else if (!tunName.endsWith('%d')) fail('tunName', 'with topology p2p, a template ending in %d like mvp%d (one TUN per client)', tunName, src.tunName);
    // Links are opened and configured as clients connect, which needs CAP_NET_ADMIN throughout.
    if (c.user !== null || c.group !== null) {
      const k = c.user !== null ? 'user' : 'group';
      fail(k, 'no privilege drop with topology p2p (each client\'s TUN is created and configured as it connects, which needs root)', c[k], src[k]);
    }
  } else if (linkProgram.length > 0) {
    throw new ConfigError('topology', 'config: "topology": a program after "--" runs per point-to-point link: it needs --topology p2p');
  }
  const keepalive = c.keepaliveSec as number;
  const timeout = c.timeoutSec as number;
  if (timeout <= keepalive) {
    fail('timeoutSec', `more than keepaliveSec (${keepalive})`, timeout, src.timeoutSec);
  }
  const plaintext = c.plaintext as boolean;
  const underlayMtu = c.underlayMtu as number;
  // A specific IPv6 listen address means an IPv6 underlay (20 bytes more of outer header);
  // an IPv4 address or "::" (both families) keeps the IPv4 figure: then, for clients that
  // reach the server over IPv6, --mtu 1414.
  const dev = c.dev as DevType;
  const mtu = (c.mtu as number | undefined) ?? computeTunnelMtu(underlayMtu, plaintext, listensOnIpv6Only(c.listen as HostPort), dev === 'tap');
  // A TAP frame is the MTU plus its Ethernet header, and must fit the data path's buffers too.
  if (dev === 'tap' && mtu > MAX_TUNNEL_MTU - ETHER_HEADER) {
    throw new ConfigError('mtu', `config: "mtu": with dev tap at most ${MAX_TUNNEL_MTU - ETHER_HEADER} (the ${ETHER_HEADER}-byte Ethernet header comes on top), got ${mtu} (${src.mtu})`);
  }
  if (c.bridge !== null && dev !== 'tap') {
    throw new ConfigError('bridge', `config: "bridge": needs dev tap (a bridge joins Ethernet links), got dev ${dev} (${src.dev})`);
  }
  if (topology === 'p2p' && dev === 'tap' && c.bridge === null) {
    throw new ConfigError('bridge', 'config: "bridge": topology p2p with dev tap needs --bridge NAME: every client\'s TAP becomes a port of that bridge, and the kernel switches between them');
  }
  if (c.dhcp === true && dev !== 'tap') {
    throw new ConfigError('dhcp', `config: "dhcp": needs dev tap (DHCP runs on an Ethernet link), got dev ${dev} (${src.dev})`);
  }
  const ipv6 = c.ipv6 as boolean;
  if (ipv6 && mtu < IPV6_MIN_MTU) {
    const from = c.mtu === undefined ? ` (computed from underlayMtu ${underlayMtu}, ${src.underlayMtu})` : ` (${src.mtu})`;
    throw new ConfigError('mtu', `config: "mtu": IPv6 inside the tunnel needs a tunnel MTU of at least ${IPV6_MIN_MTU}, got ${mtu}${from}: raise mtu or underlayMtu, or turn IPv6 off with --no-ipv6`);
  }
  return {
    listen: c.listen as HostPort,
    topology,
    linkProgram,
    dev,
    macLimit: c.macLimit as number,
    broadcastPerSec: c.broadcastPerSec as number,
    dhcp: c.dhcp as boolean,
    bridge: c.bridge as string | null,
    pool: c.pool as { network: string; prefix: number },
    pool6: c.pool6 as string,
    ipv6,
    tunName,
    underlayMtu,
    mtu,
    ca: c.ca as string,
    cert: c.cert as string,
    key: c.key as string,
    authorizedDir: c.authorizedDir as string,
    leasesFile: c.leasesFile as string,
    clientToClient: c.clientToClient as boolean,
    routes: c.routes as string[],
    redirectGateway: c.redirectGateway as boolean,
    dns: c.dns as string[],
    routes6: c.routes6 as string[],
    dns6: c.dns6 as string[],
    natOut: c.natOut as string | null,
    mssClamp: c.mssClamp as boolean,
    udpGso: c.udpGso as boolean,
    tunGro: c.tunGro as boolean,
    handoffYield: c.handoffYield as boolean,
    keepaliveSec: keepalive,
    timeoutSec: timeout,
    onConnect: c.onConnect as string | null,
    onDisconnect: c.onDisconnect as string | null,
    float: c.float as boolean,
    onMove: c.onMove as string | null,
    moveTrialsPerSec: c.moveTrialsPerSec as number,
    handshakesPerSource: c.handshakesPerSource as number,
    statusSocket: c.statusSocket as string,
    plaintext,
    keylog: c.keylog as string | null,
    user: c.user as string | null,
    group: c.group as string | null,
    logLevel: c.logLevel as LogLevel,
  };
}

export function parseClientArgs(args: string[], env: NodeJS.ProcessEnv = process.env): ClientConfig {
  const { options: argv, program: linkProgram } = splitProgram(args);
  const { values: c, src } = parse('client', CLIENT_FIELDS, argv, env);
  if (c.server === undefined) {
    throw new ConfigError('server', 'config: "server": required: the server\'s address, e.g. --server 192.0.2.1:1194');
  }
  const min = c.reconnectMinSec as number;
  const max = c.reconnectMaxSec as number;
  if (max < min) fail('reconnectMaxSec', `at least reconnectMinSec (${min})`, max, src.reconnectMaxSec);

  const name = c.name as string | null;
  const plaintext = c.plaintext as boolean;
  // cert/key default from --name; only plaintext mode may go without them.
  const fileFor = (key: 'cert' | 'key', ext: string): string => {
    if (c[key] !== undefined) return c[key] as string;
    if (name !== null) return `pki/clients/${name}.${ext}`;
    if (plaintext) return '';
    throw new ConfigError(key, `config: "${key}": required: give --name NAME (uses pki/clients/NAME.${ext}) or --${key} FILE`);
  };
  const cert = fileFor('cert', 'crt');
  const key = fileFor('key', 'key');
  const plaintextCn = (c.plaintextCn as string | null) ?? name;
  if (plaintext && plaintextCn === null) {
    throw new ConfigError('plaintextCn', 'config: "plaintextCn": required with --insecure-plaintext: the identity to claim, e.g. --plaintext-cn alice (or --name alice)');
  }
  return {
    linkProgram,
    server: c.server as HostPort,
    serverName: c.serverName as string,
    ca: c.ca as string,
    cert,
    key,
    name,
    tunName: c.tunName as string,
    dev: c.dev as DevType,
    plaintext,
    plaintextCn,
    keylog: c.keylog as string | null,
    reconnectMinSec: min,
    reconnectMaxSec: max,
    stateDir: c.stateDir as string,
    routeNopull: c.routeNopull as boolean,
    pullFilters: c.pullFilters as PullFilter[],
    allowIpv6Leak: c.allowIpv6Leak as boolean,
    udpGso: c.udpGso as boolean,
    tunGro: c.tunGro as boolean,
    handoffYield: c.handoffYield as boolean,
    logLevel: c.logLevel as LogLevel,
  };
}

