// Value checks for the field tables (src/config/fields.ts). Each returns the normalised value
// or throws Expected('<what was expected>'); the parser turns that into a ConfigError naming
// the field, the value and where it came from.

import * as net from 'node:net';
import { canonicalIpv6, formatCidr6, isIpv6, parseCidr6 } from '../wire/ip6';
import type { HostPort, LogLevel } from './types';

import type { PullAction, PullFilter } from './types';

export class Expected extends Error {
  /** `got` overrides the value shown in the message (e.g. one bad element of a list). */
  constructor(what: string, readonly got?: unknown) {
    super(what);
  }
}

/**
 * Names of clients (certificate CNs), which are also file names in pki/clients and the
 * authorized directory: 1-64 characters, starting with a letter or digit (no hidden files,
 * nothing a shell would take for an option), then letters, digits, '.', '_' or '-'.
 */
export const CLIENT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Why `name` is not a valid client name, or null if it is. */
export function clientNameProblem(name: unknown): string | null {
  if (typeof name !== 'string') return 'expected a string';
  if (name === '') return 'must not be empty';
  if (!/^[A-Za-z0-9]/.test(name)) return 'must start with a letter or digit';
  if (name.length > 64) return 'must be at most 64 characters';
  if (!CLIENT_NAME_RE.test(name)) return 'expected only A-Z a-z 0-9 . _ -';
  return null;
}

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const USER_RE = /^(?:[A-Za-z_][A-Za-z0-9._-]{0,31}\$?|\d{1,10})$/;
export const LOG_LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error'];

function str(v: unknown, what = 'a non-empty string'): string {
  if (typeof v !== 'string' || v === '' || v.includes('\0')) throw new Expected(what);
  return v;
}

export function path(v: unknown): string {
  return str(v, 'a file path');
}

export function int(min: number, max: number) {
  return (v: unknown): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Expected(`an integer from ${min} to ${max}`);
    return v;
  };
}

export function seconds(min: number, max: number) {
  return (v: unknown): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new Expected(`a number of seconds from ${min} to ${max}`);
    return v;
  };
}

export function bool(v: unknown): boolean {
  if (typeof v !== 'boolean') throw new Expected('true or false');
  return v;
}

export function ifname(what: string) {
  return (v: unknown): string => {
    if (typeof v !== 'string' || !IFNAME_RE.test(v) || v === '.' || v === '..') {
      throw new Expected(`${what} of 1-15 characters from A-Z a-z 0-9 _ . -`);
    }
    return v;
  };
}

/**
 * An interface name, or a template the kernel numbers: one "%d" at the end (mvp%d -> mvp0,
 * mvp1, ...), the part before it at most 10 characters so that five digits still fit.
 */
export function ifnameTemplate(what: string) {
  const plain = ifname(what);
  return (v: unknown): string => {
    if (typeof v === 'string' && v.endsWith('%d')) {
      const stem = v.slice(0, -2);
      if (/^[A-Za-z0-9_.-]{1,10}$/.test(stem)) return v;
      throw new Expected(`${what}, or a template like mvp%d (at most 10 characters from A-Z a-z 0-9 _ . - before the %d at its end)`);
    }
    try {
      return plain(v);
    } catch {
      throw new Expected(`${what} of 1-15 characters from A-Z a-z 0-9 _ . -, or a template like mvp%d`);
    }
  };
}

function ipv4ToInt(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** "10.8.0.0/24" -> {network, prefix}; the address must be the network address (host bits zero). */
export function ipv4Cidr(example: string, minPrefix: number, maxPrefix: number) {
  return (v: unknown): { network: string; prefix: number } => {
    const what = `an IPv4 CIDR like ${example}`;
    if (typeof v !== 'string') throw new Expected(what);
    const m = /^([0-9.]+)\/(\d{1,2})$/.exec(v);
    if (!m || !net.isIPv4(m[1])) throw new Expected(what);
    const prefix = Number(m[2]);
    if (prefix < minPrefix || prefix > maxPrefix) throw new Expected(`${what} with a prefix length from ${minPrefix} to ${maxPrefix}`);
    const hostBits = 32 - prefix;
    const addr = ipv4ToInt(m[1]);
    if (hostBits > 0 && addr % 2 ** hostBits !== 0) {
      const net0 = addr - (addr % 2 ** hostBits);
      const netStr = [24, 16, 8, 0].map((s) => Math.floor(net0 / 2 ** s) % 256).join('.');
      throw new Expected(`a network address (host bits zero) like ${netStr}/${prefix}`);
    }
    return { network: m[1], prefix };
  };
}

/** "fd00::/64" -> canonical text; the address must be the network address (host bits zero). */
export function ipv6Cidr(example: string, minPrefix: number, maxPrefix: number) {
  return (v: unknown): string => {
    const what = `an IPv6 CIDR like ${example}`;
    if (typeof v !== 'string') throw new Expected(what);
    const m = /^([0-9A-Fa-f:.]+)\/(\d{1,3})$/.exec(v);
    if (!m || !isIpv6(m[1])) throw new Expected(what);
    const prefix = Number(m[2]);
    if (prefix < minPrefix || prefix > maxPrefix) throw new Expected(`${what} with a prefix length from ${minPrefix} to ${maxPrefix}`);
    const c = formatCidr6(parseCidr6(v));
    if (c.split('/')[0] !== canonicalIpv6(m[1])) throw new Expected(`a network address (host bits zero) like ${c}`);
    return c;
  };
}

export function ipv6(v: unknown): string {
  if (!isIpv6(v)) throw new Expected('IPv6 addresses like fd6d:7670:6e00::1');
  return canonicalIpv6(v);
}

export function ipv4(v: unknown): string {
  if (typeof v !== 'string' || !net.isIPv4(v)) throw new Expected('IPv4 addresses like 10.8.0.1');
  return v;
}

/** A DNS name; the last label may not be all digits, so "10.8.0" is not taken for a name. */
export function isHostname(s: string): boolean {
  return HOSTNAME_RE.test(s) && !/(^|\.)\d+\.?$/.test(s);
}

export function hostname(v: unknown): string {
  if (typeof v !== 'string' || !(net.isIP(v) || isHostname(v))) throw new Expected('a DNS name like server.minivpn.test or an IP address');
  return v;
}

/**
 * "host:port", "[v6]:port", ":port" or "port" (server: host defaults to '::'),
 * "host" alone (client: port defaults to 1194). A bare IPv6 address without brackets is
 * taken as a host. The server listens on IP addresses only; the client may name a host.
 */
export function hostPort(kind: 'listen' | 'server') {
  const what = kind === 'listen'
    ? 'an address like 0.0.0.0:1194, [::]:1194 or :1194'
    : 'an address like 192.0.2.1:1194, [2001:db8::1]:1194 or vpn.example.org:1194';
  return (v: unknown): HostPort => {
    if (typeof v !== 'string' || v === '') throw new Expected(what);
    let host: string | undefined;
    let portStr: string | undefined;
    let m: RegExpExecArray | null;
    if ((m = /^\[([^\]]+)\](?::(.*))?$/.exec(v))) {
      host = m[1];
      portStr = m[2];
      if (!net.isIPv6(host)) throw new Expected(what);
    } else if (net.isIPv6(v)) {
      host = v;
    } else if (/^\d+$/.test(v) && kind === 'listen') {
      portStr = v;
    } else {
      const i = v.lastIndexOf(':');
      if (i >= 0) {
        host = v.slice(0, i) || undefined;
        portStr = v.slice(i + 1);
      } else {
        host = v;
      }
    }
    if (host === undefined) {
      if (kind === 'server') throw new Expected(what);
      host = '::';
    } else if (kind === 'listen' ? !net.isIP(host) : !(net.isIP(host) || isHostname(host))) {
      throw new Expected(what);
    }
    let port = 1194;
    if (portStr !== undefined) {
      const minPort = kind === 'listen' ? 0 : 1; // listen port 0: the OS picks a free port
      if (!/^\d{1,5}$/.test(portStr) || Number(portStr) < minPort || Number(portStr) > 65535) {
        throw new Expected(`${what} (port ${minPort}-65535)`);
      }
      port = Number(portStr);
    } else if (kind === 'listen') {
      throw new Expected(what);
    }
    return { host, port };
  };
}

export function oneOf<T extends string>(choices: readonly T[]) {
  return (v: unknown): T => {
    if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) throw new Expected(`one of ${choices.join(', ')}`);
    return v as T;
  };
}

export function clientName(v: unknown): string {
  const p = clientNameProblem(v);
  if (p) throw new Expected('a client name (1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)');
  return v as string;
}

export function userOrGroup(v: unknown): string {
  if (typeof v !== 'string' || !USER_RE.test(v)) throw new Expected('a user/group name like nobody or a numeric id');
  return v;
}

export function unixSocketPath(v: unknown): string {
  const p = str(v, 'a socket path');
  // sun_path is 108 bytes including the terminating NUL.
  if (Buffer.byteLength(p) > 107) throw new Expected('a socket path of at most 107 bytes');
  return p;
}

export function list(elem: (v: unknown) => unknown, example: string, max = Infinity) {
  return (v: unknown): unknown[] => {
    if (!Array.isArray(v)) throw new Expected(`a list like ${example}`);
    if (v.length > max) throw new Expected(`at most ${max} entries`, `${v.length} entries`);
    return v.map((e) => {
      try {
        return elem(e);
      } catch (err) {
        if (err instanceof Expected) throw new Expected(err.message, e);
        throw err;
      }
    });
  };
}

export function nullable(check: (v: unknown) => unknown) {
  return (v: unknown): unknown => (v === null ? null : check(v));
}

/** `--pull-filter ACTION:TEXT` (src/client/pushed.ts): what to do with pushed items starting with TEXT. */
export function pullFilter(v: unknown): PullFilter {
  if (typeof v === 'object' && v !== null) { // (a filter already parsed, or written out in a config file)
    const f = v as Partial<PullFilter>;
    if ((f.action === 'accept' || f.action === 'ignore' || f.action === 'reject') && typeof f.text === 'string' && f.text !== '') return { action: f.action, text: f.text };
  }
  const m = typeof v === 'string' ? /^(accept|ignore|reject):(.+)$/.exec(v) : null;
  if (!m) throw new Expected('ACTION:TEXT, e.g. "ignore:route 10.9.0.0/24" (ACTION accept, ignore or reject)');
  return { action: m[1] as PullAction, text: m[2] };
}
