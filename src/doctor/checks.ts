// What `minivpn doctor` checks: the things people really trip on, each a small function
// that looks at this machine and the configuration and returns {ok, detail, advice}.
// A check never changes anything (ip_forward is read, a UDP port is bound and let go).
import { execFile } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ClientConfig, ServerConfig, computeTunnelMtu, listensOnIpv6Only } from '../config';
import { chainProblem, keyPairProblem, parseCert, parseKey, validityProblem } from '../profile/verify';

export interface Result { ok: boolean; detail: string; advice?: string }

/** A PEM credential: where it comes from (a file, or a profile's block) and its text. */
export interface Pem { where: string; text?: string; error?: string }
export interface Creds { ca: Pem; cert: Pem; key: Pem }

export interface Context {
  role: 'server' | 'client';
  server?: ServerConfig;
  client?: ClientConfig;
  /** null in plaintext mode: no certificates are used. */
  creds: Creds | null;
  /** How to get new certificates, for the advice: "minivpn pki ..." or "ask for a new profile". */
  renew: string;
  now: number;
  env: NodeJS.ProcessEnv;
  tunDevice: string;
  procDir: string;
}

export interface Check { name: string; roles: Array<'server' | 'client'>; run(ctx: Context): Promise<Result> | Result }

const ok = (detail: string): Result => ({ ok: true, detail });
const fail = (detail: string, advice: string): Result => ({ ok: false, detail, advice });
const errCode = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

export function checkTun(ctx: Context): Result {
  const dev = ctx.tunDevice;
  let st: fs.Stats;
  try {
    st = fs.statSync(dev);
  } catch (err) {
    return fail(`${dev} is missing (${errCode(err)})`, 'load the TUN module: modprobe tun; in a container, pass the device: --device /dev/net/tun');
  }
  if (!st.isCharacterDevice()) return fail(`${dev} is not a character device`, `recreate it: rm ${dev}; mknod ${dev} c 10 200`);
  try {
    fs.closeSync(fs.openSync(dev, 'r+'));
  } catch (err) {
    const code = errCode(err);
    if (code === 'EACCES' || code === 'EPERM') return fail(`${dev} cannot be opened (${code})`, 'run as root (sudo), or give this user access to the device');
    return fail(`${dev} cannot be opened (${code})`, 'load the TUN module: modprobe tun');
  }
  return ok(`${dev} is present and opens`);
}

const CAP_NET_ADMIN = 12n;

export function checkCapNetAdmin(ctx: Context): Result {
  let eff: bigint;
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(path.join(ctx.procDir, 'self', 'status'), 'utf8'));
    if (!m) throw new Error('no CapEff line');
    eff = BigInt(`0x${m[1]}`);
  } catch (err) {
    return fail(`cannot read this process's capabilities (${(err as Error).message})`, `mount /proc (${ctx.procDir})`);
  }
  if ((eff >> CAP_NET_ADMIN) & 1n) return ok('this process has it (TUN device, addresses, routes, firewall)');
  return fail('this process lacks it: it cannot create the TUN device or set routes',
    'run as root (sudo minivpn ...); in a container: --cap-add NET_ADMIN; a service: CapabilityBoundingSet=CAP_NET_ADMIN (scripts/systemd)');
}

export function checkIpForward(ctx: Context): Result {
  const file = path.join(ctx.procDir, 'sys', 'net', 'ipv4', 'ip_forward');
  let v: string;
  try {
    v = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    return fail(`cannot read ${file} (${errCode(err)})`, `mount /proc (${ctx.procDir})`);
  }
  if (v === '1') return ok('on: packets from clients are routed on');
  try {
    fs.accessSync(file, fs.constants.W_OK);
    return ok('off now; the server turns it on when it starts (scripts/server-init.sh)');
  } catch (err) {
    return fail(`off, and the server cannot turn it on (${file}: ${errCode(err)})`,
      'turn it on where it can be set: sysctl -w net.ipv4.ip_forward=1 and net.ipv4.ip_forward=1 in /etc/sysctl.d/99-minivpn.conf; in a container: --sysctl net.ipv4.ip_forward=1');
  }
}

/** Runs a program; resolves with its exit status and output (status -1: it could not run). */
export function runProgram(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 10_000): Promise<{ code: number; out: string; err?: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env, timeout: timeoutMs, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error && typeof (error as NodeJS.ErrnoException).code === 'string') {
        resolve({ code: -1, out: '', err: String((error as NodeJS.ErrnoException).code) });
        return;
      }
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out: `${stdout}${stderr}` });
    });
  });
}

export function findOnPath(cmd: string, env: NodeJS.ProcessEnv): string | null {
  const dirs = cmd.includes('/') ? [''] : (env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':');
  for (const d of dirs) {
    const f = d ? path.join(d, cmd) : cmd;
    try {
      fs.accessSync(f, fs.constants.X_OK);
      if (fs.statSync(f).isFile()) return f;
    } catch { /* next */ }
  }
  return null;
}

export async function checkIptables(ctx: Context): Promise<Result> {
  // The same command scripts/server-init.sh uses for its NAT and MSS-clamping rules.
  const cmd = ctx.env.IPTABLES || 'iptables';
  const file = findOnPath(cmd, ctx.env);
  if (!file) return fail(`${cmd} not found`, 'install it: apt-get install iptables (the server adds its NAT and MSS-clamping rules with it)');
  const r = await runProgram(file, ['-w', '-t', 'mangle', '-S', 'FORWARD'], ctx.env);
  if (r.code !== 0) {
    const why = r.err ?? (r.out.trim().split('\n').pop() || `exit status ${r.code}`);
    return fail(`${cmd} does not work here: ${why}`,
      'run as root; load the netfilter modules (modprobe nf_tables), or use the other backend: IPTABLES=iptables-legacy');
  }
  return ok(`${file} works`);
}

interface IpLink { ifname: string; mtu: number; operstate?: string; addr_info?: Array<{ local: string }> }

async function ipJson<T>(args: string[], env: NodeJS.ProcessEnv): Promise<T | null> {
  const r = await runProgram('ip', ['-j', ...args], env);
  if (r.code !== 0) return null;
  try {
    return JSON.parse(r.out) as T;
  } catch {
    return null;
  }
}

/** The interface the server's UDP packets leave by: the one with the listen address, else the default route's. */
async function underlayInterface(host: string, env: NodeJS.ProcessEnv): Promise<{ name: string; mtu: number; why: string } | null> {
  const links = await ipJson<IpLink[]>(['addr', 'show'], env);
  if (!links) return null;
  const wildcard = host === '::' || host === '0.0.0.0';
  if (!wildcard) {
    const l = links.find((x) => (x.addr_info ?? []).some((a) => a.local === host));
    return l ? { name: l.ifname, mtu: l.mtu, why: `has ${host}` } : null;
  }
  for (const fam of ['-4', '-6']) {
    const routes = await ipJson<Array<{ dev?: string }>>([fam, 'route', 'show', 'default'], env);
    const dev = routes?.find((r) => r.dev)?.dev;
    const l = dev ? links.find((x) => x.ifname === dev) : undefined;
    if (l) return { name: l.ifname, mtu: l.mtu, why: 'default route' };
  }
  return null;
}

export async function checkMtu(ctx: Context): Promise<Result> {
  const cfg = ctx.server!;
  const dev = await underlayInterface(cfg.listen.host, ctx.env);
  if (!dev) {
    return fail(`cannot tell which interface carries the tunnel (no interface has ${cfg.listen.host}, or no default route)`,
      'listen on one of this machine\'s addresses: --listen ADDR:PORT');
  }
  // A specific IPv6 listen address means an IPv6 underlay: 20 bytes more of outer header.
  const v6 = listensOnIpv6Only(cfg.listen);
  const fits = computeTunnelMtu(dev.mtu, cfg.plaintext, v6);
  const where = `${dev.name} (${dev.why}) has MTU ${dev.mtu}`;
  if (cfg.mtu <= fits) return ok(`tunnel MTU ${cfg.mtu} fits: ${where}`);
  const computed = cfg.mtu === computeTunnelMtu(cfg.underlayMtu, cfg.plaintext, v6);
  return fail(`tunnel MTU ${cfg.mtu} is too large: ${where}, which fits a tunnel MTU of ${fits} at most (larger packets are fragmented or lost)`,
    computed ? `tell the server: --underlay-mtu ${dev.mtu}` : `lower it: --mtu ${fits}`);
}

export function checkUdpPort(ctx: Context): Promise<Result> {
  const { host, port } = ctx.server!.listen;
  const where = net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
  if (port === 0) return Promise.resolve(ok('port 0: the system picks a free one'));
  return new Promise((resolve) => {
    const sock = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4' });
    sock.once('error', (err) => {
      sock.close();
      const code = errCode(err);
      if (code === 'EADDRINUSE') {
        resolve(fail(`UDP ${where} is in use by another program`, `stop it (ss -ulpn 'sport = :${port}' shows which; another minivpn server?) or choose another port: --listen`));
      } else if (code === 'EADDRNOTAVAIL') {
        resolve(fail(`${host} is not an address of this machine`, `listen on one of its addresses, or on all: --listen [::]:${port}`));
      } else if (code === 'EACCES') {
        resolve(fail(`UDP port ${port} needs privileges (below 1024)`, 'run as root, or choose a port above 1023: --listen'));
      } else {
        resolve(fail(`UDP ${where} cannot be bound (${code})`, 'check --listen'));
      }
    });
    sock.bind(port, host, () => {
      sock.close();
      resolve(ok(`UDP ${where} is free`));
    });
  });
}

function readPem(p: Pem): string {
  if (p.text !== undefined) return p.text;
  throw new Error(p.error ?? `${p.where} cannot be read`);
}

/** The credentials parsed, or the Result saying which cannot be read. */
function parsed(ctx: Context): { ca: ReturnType<typeof parseCert>; cert: ReturnType<typeof parseCert>; key: ReturnType<typeof parseKey> } | Result {
  const c = ctx.creds!;
  try {
    return { ca: parseCert(readPem(c.ca), c.ca.where), cert: parseCert(readPem(c.cert), c.cert.where), key: parseKey(readPem(c.key), c.key.where) };
  } catch (err) {
    const m = (err as Error).message;
    return fail(m, /EACCES/.test(m) ? 'run as root, or make the file readable by this user' : `check the path, or make them anew: ${ctx.renew}`);
  }
}
const PLAINTEXT = ok('not used: plaintext mode has no certificates');
const DAY = 86_400_000;

export function checkClock(ctx: Context): Result {
  if (!ctx.creds) return PLAINTEXT;
  const p = parsed(ctx);
  if ('ok' in p) return p;
  for (const [x, where] of [[p.cert, ctx.creds.cert.where], [p.ca, ctx.creds.ca.where]] as const) {
    const problem = validityProblem(x, where, ctx.now);
    if (!problem) continue;
    if (ctx.now > Date.parse(x.validTo)) return fail(problem, `if the clock is right, get new certificates: ${ctx.renew}; if not, set the clock: timedatectl set-ntp true`);
    return fail(problem, 'set the clock: timedatectl set-ntp true (or date -s); or wait until then');
  }
  const until = Math.min(Date.parse(p.cert.validTo), Date.parse(p.ca.validTo));
  const days = Math.floor((until - ctx.now) / DAY);
  return ok(`${new Date(ctx.now).toISOString()} is within the certificates' validity (${days} more days${days < 14 ? `: renew soon: ${ctx.renew}` : ''})`);
}

export function checkChain(ctx: Context): Result {
  if (!ctx.creds) return PLAINTEXT;
  const p = parsed(ctx);
  if ('ok' in p) return p;
  const problem = chainProblem(p.cert, p.ca, ctx.creds.cert.where, ctx.creds.ca.where);
  if (problem) return fail(problem, `use the CA that signed it, or certificates from this CA: ${ctx.renew}`);
  return ok(`${ctx.creds.cert.where} is signed by ${ctx.creds.ca.where}`);
}

export function checkKeyPair(ctx: Context): Result {
  if (!ctx.creds) return PLAINTEXT;
  const p = parsed(ctx);
  if ('ok' in p) return p;
  const problem = keyPairProblem(p.cert, p.key, ctx.creds.cert.where, ctx.creds.key.where);
  if (problem) return fail(problem, `give the key made with the certificate, or make both anew: ${ctx.renew}`);
  return ok(`${ctx.creds.key.where} belongs to ${ctx.creds.cert.where}`);
}

/** Whether `user` (the server's --user) can list `dir`: tried as that user, in a child process. */
async function readableAs(dir: string, user: string, group: string | null, env: NodeJS.ProcessEnv): Promise<string | null> {
  const id = async (flag: string, who: string) => {
    const r = await runProgram('id', [flag, '--', who], env);
    return r.code === 0 && /^\d+$/.test(r.out.trim()) ? Number(r.out.trim()) : null;
  };
  const uid = await id('-u', user);
  const gid = group ? (/^\d+$/.test(group) ? Number(group) : await gidOf(group, env)) : await id('-g', user);
  if (uid === null || gid === null) return `user ${user}${group ? ` or group ${group}` : ''} does not exist`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', 'require("fs").readdirSync(process.argv[1])', dir], { uid, gid, timeout: 10_000 }, (err) => {
      resolve(err ? `user ${user} cannot read it` : null);
    });
  });
}

async function gidOf(group: string, env: NodeJS.ProcessEnv): Promise<number | null> {
  const r = await runProgram('getent', ['group', group], env);
  const gid = r.code === 0 ? r.out.split(':')[2] : undefined;
  return gid && /^\d+$/.test(gid) ? Number(gid) : null;
}

export async function checkAuthorizedDir(ctx: Context): Promise<Result> {
  const cfg = ctx.server!;
  if (cfg.plaintext) return PLAINTEXT;
  const dir = cfg.authorizedDir;
  let names: string[];
  try {
    names = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name);
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT') return fail(`${dir} does not exist`, `make it, with one empty file per client allowed in: mkdir -p ${dir}; touch ${dir}/NAME (minivpn pki does this)`);
    if (code === 'ENOTDIR') return fail(`${dir} is not a directory`, `give the directory of authorized clients: --authorized-dir DIR`);
    return fail(`${dir} cannot be read (${code})`, `run as root, or: chmod 755 ${dir} (it holds no secrets)`);
  }
  if (cfg.user) {
    const why = await readableAs(dir, cfg.user, cfg.group, ctx.env);
    if (why) {
      return fail(`${dir}: ${why}, and the server runs as ${cfg.user} after it starts (--user): a reload (SIGHUP) would authorize nobody`,
        `chmod 755 ${dir} and let ${cfg.user} through its parent directories (chmod o+x)`);
    }
  }
  const who = names.length ? `${names.length} client(s) authorized` : `no client authorized yet (touch ${path.join(dir, 'NAME')} lets NAME in)`;
  return ok(`${dir} is readable${cfg.user ? ` (also by ${cfg.user})` : ''}: ${who}`);
}

/** Every check, in the order a person would fix them. */
export const CHECKS: Check[] = [
  { name: '/dev/net/tun', roles: ['server', 'client'], run: checkTun },
  { name: 'CAP_NET_ADMIN', roles: ['server', 'client'], run: checkCapNetAdmin },
  { name: 'ip_forward', roles: ['server'], run: checkIpForward },
  { name: 'iptables', roles: ['server'], run: checkIptables },
  { name: 'MTU', roles: ['server'], run: checkMtu },
  { name: 'UDP port', roles: ['server'], run: checkUdpPort },
  { name: 'clock', roles: ['server', 'client'], run: checkClock },
  { name: 'certificate chain', roles: ['server', 'client'], run: checkChain },
  { name: 'key pair', roles: ['server', 'client'], run: checkKeyPair },
  { name: 'authorized dir', roles: ['server'], run: checkAuthorizedDir },
];
