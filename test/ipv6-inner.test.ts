// IPv6 inside the tunnel, without sockets: the address helpers, Packet Too Big, the IPv6
// pool and its leases file, the config's optional IPv6 fields across protocol versions, the
// server option checks and the client's checks of what is pushed.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { canonicalIpv6, formatCidr6, ipv6ToBytes, isLinkChatter6, overlaps6, packetTooBig6, parseCidr6 } from '../src/wire/ip6';
import { parseIp, parseTransport } from '../src/wire/ip';
import { AddressPool, Pool6ExhaustedError, PoolExhaustedError } from '../src/device/pool';
import { Pool6Range } from '../src/device/pool6';
import { ConfigMsg, encodeControl, decodeControl, validateControl } from '../src/wire/control';
import { parseServerArgs, ConfigError } from '../src/config';
import { checkPushed } from '../src/client/pushed';
import { oldValidateControl } from './fixtures/control-before-ipv6';

/** An IPv6 packet: 40-byte header, then `payload` bytes (next header `nh`). */
function ip6(src: string, dst: string, nh: number, payload: Buffer): Buffer {
  const p = Buffer.alloc(40 + payload.length);
  p[0] = 0x60;
  p.writeUInt16BE(payload.length, 4);
  p[6] = nh;
  p[7] = 64;
  ipv6ToBytes(src).copy(p, 8);
  ipv6ToBytes(dst).copy(p, 24);
  payload.copy(p, 40);
  return p;
}

t.test('address helpers', async (t) => {
  t.equal(canonicalIpv6('FD6D:7670:6E00:0:0:0:0:2'), 'fd6d:7670:6e00::2');
  t.equal(canonicalIpv6('::ffff:192.0.2.1'), '::ffff:c000:201');
  t.throws(() => ipv6ToBytes('10.8.0.1'), /not an IPv6 address/);
  t.throws(() => ipv6ToBytes('fe80::1%eth0'), /not an IPv6 address/);
  t.equal(formatCidr6(parseCidr6('2001:db8:1:2::5/48')), '2001:db8:1::/48', 'host bits cleared');
  t.throws(() => parseCidr6('2001:db8::/129'), /prefix length/);
  t.ok(overlaps6(parseCidr6('2001:db8::/32'), parseCidr6('2001:db8:5::/64')));
  t.notOk(overlaps6(parseCidr6('2001:db8:4::/64'), parseCidr6('2001:db8:5::/64')));
  const icmp = Buffer.alloc(8);
  t.ok(isLinkChatter6(ip6('fe80::1', 'ff02::2', 58, icmp), 0), 'router solicitation');
  t.ok(isLinkChatter6(ip6('::', 'ff02::1:ff00:2', 58, icmp), 0), 'duplicate address detection');
  t.ok(isLinkChatter6(ip6('fd6d:7670:6e00::2', 'ff02::16', 58, icmp), 0), 'MLD report');
  t.notOk(isLinkChatter6(ip6('fd6d:7670:6e00::2', '2001:db8::1', 58, icmp), 0), 'ordinary traffic');
});

t.test('Packet Too Big', async (t) => {
  const echo = Buffer.alloc(1460);
  echo[0] = 128; // echo request
  const big = ip6('2001:db8:300::80', 'fd6d:7670:6e00::2', 58, echo);
  const from = ipv6ToBytes('fd6d:7670:6e00::1');
  const ptb = packetTooBig6(big, 0, big.length, 1420, from)!;
  t.ok(ptb.length <= 1280, `within the IPv6 minimum MTU (${ptb.length})`);
  const ip = parseIp(ptb);
  t.equal(ip.src, 'fd6d:7670:6e00::1');
  t.equal(ip.dst, '2001:db8:300::80', 'back to the sender');
  const tr = parseTransport(ip, ptb)!;
  t.match(tr, { kind: 'icmpv6', type: 2, code: 0, checksumValid: true });
  t.equal(ptb.readUInt32BE(44), 1420, 'the MTU');
  t.same(ptb.subarray(48, 88), big.subarray(0, 40), 'quotes the packet from its start');
  t.equal(packetTooBig6(ptb, 0, ptb.length, 1280, from), null, 'never an error about an error');
  t.equal(packetTooBig6(ip6('fe80::1', 'fd6d:7670:6e00::1', 17, Buffer.alloc(1500)), 0, 1540, 1420, from), null, 'not to link-local chatter');
});

t.test('the IPv6 pool', async (t) => {
  t.throws(() => new Pool6Range('fd00::/48'), /prefix length must be 64\.\.126/);
  const r = new Pool6Range('fd6d:7670:6e00::/64');
  t.equal(r.serverAddress, 'fd6d:7670:6e00::1');
  t.equal(r.keyOfText('fd6d:7670:6e00::1:0:2'), null, 'host numbers above 32 bits are none of the pool\'s');
  t.equal(r.keyOfText('fd6d:7670:6e00::2'), 2);

  const pool = new AddressPool('10.8.0.0/24', { pool6: 'fd6d:7670:6e00::/64' });
  const a = pool.acquire('alice');
  t.match(a, { addressStr: '10.8.0.2', address6Str: 'fd6d:7670:6e00::2' });
  t.match(pool.acquire('bob'), { address6Str: 'fd6d:7670:6e00::3' });
  pool.release('alice');
  pool.acquire('carol');
  t.match(pool.acquire('alice'), { address6Str: 'fd6d:7670:6e00::2' }, 'sticky per CN');

  // A full IPv6 pool refuses with its own reason, and leaves the IPv4 pool as it was.
  const small = new AddressPool('10.8.0.0/24', { pool6: 'fd6d:7670:6e00::/126' });
  small.acquire('a');
  small.acquire('b');
  t.throws(() => small.acquire('c'), Pool6ExhaustedError);
  t.throws(() => small.acquire('c'), /IPv6 address pool fd6d:7670:6e00::\/126 exhausted: all 2 client addresses/);
  t.equal(small.lookup('c'), undefined, 'no IPv4 lease taken either');
  small.release('a');
  t.match(small.acquire('c'), { address6Str: 'fd6d:7670:6e00::2' }, 'the address of the client gone longest');
  t.equal(small.lookup('a')!.address6, 0, 'its old owner has none now');
  // IPv4 exhausted first: still the IPv4 reason.
  const v4 = new AddressPool('10.8.0.0/30', { pool6: 'fd6d:7670:6e00::/64' });
  v4.acquire('a');
  t.throws(() => v4.acquire('b'), PoolExhaustedError);
});

t.test('the leases file keeps IPv6 addresses, and one from before IPv6 still loads', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-pool6-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'leases.json');
  fs.writeFileSync(file, JSON.stringify({ version: 1, pool: '10.8.0.0/24', leases: [
    { cn: 'old', address: '10.8.0.7', releasedAt: 1 },
  ] }));
  let pool = new AddressPool('10.8.0.0/24', { leasesFile: file, pool6: 'fd6d:7670:6e00::/64' });
  t.match(pool.acquire('old'), { addressStr: '10.8.0.7', address6Str: 'fd6d:7670:6e00::2' }, 'the old lease kept its IPv4 address and got an IPv6 one');
  t.match(pool.acquire('new'), { addressStr: '10.8.0.2', address6Str: 'fd6d:7670:6e00::3' });
  pool.flush();
  const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
  t.equal(saved.pool6, 'fd6d:7670:6e00::/64');
  t.same(saved.leases.map((l: any) => [l.cn, l.address, l.address6]), [['new', '10.8.0.2', 'fd6d:7670:6e00::3'], ['old', '10.8.0.7', 'fd6d:7670:6e00::2']]);
  pool = new AddressPool('10.8.0.0/24', { leasesFile: file, pool6: 'fd6d:7670:6e00::/64' });
  t.match(pool.acquire('new'), { address6Str: 'fd6d:7670:6e00::3' }, 'sticky across a restart');
  // Another pool6 now: the addresses that do not fit are dropped, the IPv4 leases stay.
  pool = new AddressPool('10.8.0.0/24', { leasesFile: file, pool6: 'fd00:1::/64' });
  t.match(pool.acquire('old'), { addressStr: '10.8.0.7', address6Str: 'fd00:1::2' });
  // And without IPv6 the same file still loads.
  pool = new AddressPool('10.8.0.0/24', { leasesFile: file });
  t.match(pool.acquire('old'), { addressStr: '10.8.0.7', address6: 0 });
});

const BASE: ConfigMsg = {
  type: 'config', v: 1, address: '10.8.0.2', prefix: 24, gateway: '10.8.0.1', mtu: 1420,
  routes: [], redirectGateway: true, dns: [], keepaliveSec: 10, timeoutSec: 60,
};
const V6 = { address6: 'fd6d:7670:6e00::2', prefix6: 64, gateway6: 'fd6d:7670:6e00::1', routes6: ['2001:db8:300::/64'], redirectGateway6: true, dns6: ['fd6d:7670:6e00::1'] };

t.test('config: the optional IPv6 fields, and both mixes of protocol versions', async (t) => {
  const msg = decodeControl(encodeControl({ ...BASE, ...V6 }));
  t.same(msg, { ...BASE, ...V6 }, 'a new server to a new client: round trip');
  // A new client and a server from before IPv6 (no such fields): IPv4 only.
  const old = decodeControl(encodeControl(BASE));
  t.equal(old.type, 'config');
  t.equal((old as ConfigMsg).address6, undefined, 'no IPv6');
  // A client from before IPv6 and a new server: the old check takes the message, IPv4 intact.
  const wire = JSON.parse(encodeControl({ ...BASE, ...V6 }).toString());
  const seenByOld = oldValidateControl(wire);
  t.same(seenByOld, BASE, 'the old client gets its IPv4 config and ignores the IPv6 fields');
  // Bad IPv6 fields name the field.
  const bad = (o: object) => validateControl({ ...BASE, ...V6, ...o });
  t.match(bad({ address6: '10.8.0.2' }), { type: 'invalid', field: 'address6' });
  t.match(bad({ gateway6: '2001:db8::1' }), { type: 'invalid', field: 'gateway6', error: /not in fd6d:7670:6e00::\/64/ });
  t.match(bad({ prefix6: 48 }), { type: 'invalid', field: 'prefix6' });
  t.match(bad({ mtu: 1200 }), { type: 'invalid', field: 'mtu', error: /at least 1280 with IPv6/ });
  t.match(bad({ routes6: ['2001:db8:300::1/64'] }), { type: 'invalid', field: 'routes6[0]', error: /host bits/ });
  t.match(bad({ dns6: ['x'] }), { type: 'invalid', field: 'dns6[0]' });
  t.match(validateControl({ ...BASE, mtu: 1200 }), { type: 'config' }, 'an IPv4-only config may be below 1280');
});

t.test('server options: pool6, --no-ipv6, and a tunnel MTU under 1280 refused naming the fields', async (t) => {
  const env = {};
  t.equal(parseServerArgs([], env).pool6, 'fd6d:7670:6e00::/64');
  t.equal(parseServerArgs(['--pool6', 'fd00:1:2:3::/64'], env).pool6, 'fd00:1:2:3::/64');
  t.throws(() => parseServerArgs(['--pool6', 'fd00::/48'], env), /"pool6": expected an IPv6 CIDR .* prefix length from 64 to 126/);
  t.throws(() => parseServerArgs(['--pool6', 'fd00::1/64'], env), /host bits zero/);
  const err = (() => { try { parseServerArgs(['--underlay-mtu', '1300'], env); } catch (e) { return e as ConfigError; } })();
  t.ok(err instanceof ConfigError);
  t.equal(err!.field, 'mtu');
  t.match(err!.message, /at least 1280, got 1234 \(computed from underlayMtu 1300/);
  t.throws(() => parseServerArgs(['--mtu', '1200'], env), /"mtu": IPv6 inside the tunnel needs a tunnel MTU of at least 1280, got 1200/);
  t.equal(parseServerArgs(['--mtu', '1200', '--no-ipv6'], env).mtu, 1200, 'IPv4 only: fine');
  t.same(parseServerArgs(['--routes6', '2001:db8:300::/64', '--dns6', 'FD6D:7670:6E00::1'], env).dns6, ['fd6d:7670:6e00::1']);
});

t.test('client: what it takes of the pushed IPv6 config', async (t) => {
  const c: ConfigMsg = { ...BASE, ...V6 };
  const local = { serverIp: '198.51.100.2', lans: [], lans6: [parseCidr6('2001:db8:100::/64')] };
  const opts = { routeNopull: false, pullFilters: [] };
  const ok = checkPushed(c, local, opts);
  t.ok(ok.ok && ok.config.address6 === V6.address6 && ok.config.redirectGateway6);
  const over = checkPushed({ ...c, routes6: ['2001:db8::/32'] }, local, opts);
  t.match(over, { ok: false, reason: /routes6: 2001:db8::\/32 overlaps this host's network 2001:db8:100::\/64/ });
  const self = checkPushed({ ...c, routes6: ['2001:db8:200::/64'] }, { ...local, serverIp: '2001:db8:200::2' }, opts);
  t.match(self, { ok: false, reason: /covers the server's own address/ });
  const sub = checkPushed({ ...c, address6: '2001:db8:100::9', gateway6: '2001:db8:100::1' }, local, opts);
  t.match(sub, { ok: false, reason: /address6: the tunnel subnet 2001:db8:100::\/64 overlaps/ });
  const off = checkPushed(c, local, { routeNopull: false, pullFilters: [{ action: 'ignore', text: 'ifconfig-ipv6' }] });
  t.ok(off.ok && off.config.address6 === undefined && off.config.redirectGateway6 === undefined, 'ignore:ifconfig-ipv6 makes it IPv4 only');
  const noRedirect = checkPushed(c, local, { routeNopull: false, pullFilters: [{ action: 'ignore', text: 'redirect-gateway ipv6' }] });
  t.ok(noRedirect.ok && noRedirect.config.redirectGateway && !noRedirect.config.redirectGateway6, 'the IPv6 redirect alone can be ignored');
});
