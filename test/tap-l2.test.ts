// TAP mode's pure parts: the Ethernet frame view (src/wire/ether.ts), the layer-2 guard and
// MAC table (src/device/l2guard.ts), the MTU arithmetic and options (src/config), and the
// `dev` fields of hello and config (src/wire/control.ts) with both mixes of versions.
import t from 'tap';
import {
  BROADCAST_MAC, checkEther, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, etherDst, etherSrc, etherType, etherTypeName,
  formatMac, isGroupDst, parseEther, parseMac, writeEtherHeader,
} from '../src/wire/ether';
import { L2Guard, MacTable } from '../src/device/l2guard';
import { computeTunnelMtu, ConfigError, parseClientArgs, parseServerArgs } from '../src/config';
import { ConfigMsg, decodeControl, devMismatch, encodeControl, HelloMsg, validateControl } from '../src/wire/control';
import { oldValidateControl } from './fixtures/control-before-ipv6';

const A = parseMac('02:00:00:00:00:0a');
const B = parseMac('02:00:00:00:00:0b');
const C = parseMac('02:00:00:00:00:0c');

/** A frame of `len` bytes (at offset 3 of a larger buffer: views must honour offsets). */
function frame(dst: number, src: number, type = ETHERTYPE_IPV4, len = 60): { buf: Buffer; off: number; len: number } {
  const buf = Buffer.alloc(len + 10, 0xee);
  writeEtherHeader(buf, 3, dst, src, type);
  return { buf, off: 3, len };
}

t.test('Ethernet view: fields at an offset, without allocation', async (t) => {
  const f = frame(BROADCAST_MAC, A, ETHERTYPE_ARP);
  t.equal(checkEther(f.buf, f.off, f.len, 1434), null, 'a broadcast ARP frame is fine');
  t.equal(etherDst(f.buf, f.off), BROADCAST_MAC);
  t.equal(etherSrc(f.buf, f.off), A);
  t.equal(etherType(f.buf, f.off), ETHERTYPE_ARP);
  t.ok(isGroupDst(f.buf, f.off), 'broadcast is a group address');
  const m = frame(parseMac('33:33:00:00:00:01'), A, ETHERTYPE_IPV6);
  t.ok(isGroupDst(m.buf, m.off), 'IPv6 multicast (33:33:...) is a group address');
  t.notOk(isGroupDst(frame(B, A).buf, 3), 'unicast is not');
});

t.test('Ethernet view: checkEther refuses what is not a frame to carry', async (t) => {
  const f = frame(B, A);
  t.equal(checkEther(f.buf, f.off, 13, 1434), 'truncated', '13 bytes: no whole header');
  t.equal(checkEther(f.buf, f.off, 14, 1434), null, 'a header alone passes (the kernel decides the rest)');
  t.equal(checkEther(f.buf, 63, 100, 1434), 'truncated', 'a length past the buffer is cut to the buffer (7 bytes left)');
  const big = frame(B, A, ETHERTYPE_IPV4, 1435);
  t.equal(checkEther(big.buf, big.off, 1435, 1434), 'too_big', 'one byte over the largest frame');
  t.equal(checkEther(big.buf, big.off, 1434, 1434), null, 'the largest frame itself');
  const g = frame(B, parseMac('01:00:5e:00:00:01'));
  t.equal(checkEther(g.buf, g.off, g.len, 1434), 'bad_source', 'a multicast source MAC');
  const z = frame(B, 0);
  t.equal(checkEther(z.buf, z.off, z.len, 1434), 'bad_source', 'an all-zero source MAC');
});

t.test('Ethernet parsed representation and MAC text', async (t) => {
  const f = frame(B, A, ETHERTYPE_IPV6, 80);
  t.same(parseEther(f.buf, f.off, f.len), { dst: '02:00:00:00:00:0b', src: '02:00:00:00:00:0a', etherType: ETHERTYPE_IPV6, payloadOffset: 14, payloadLength: 66 });
  const v = frame(B, A, 0x8100, 80);
  v.buf.writeUInt16BE(0x2064, v.off + 14); // priority 1, VLAN 100
  v.buf.writeUInt16BE(ETHERTYPE_IPV4, v.off + 16);
  t.match(parseEther(v.buf, v.off, v.len), { vlan: 100, etherType: ETHERTYPE_IPV4, payloadOffset: 18, payloadLength: 62 }, '802.1Q tag');
  t.throws(() => parseEther(Buffer.alloc(10)), /truncated Ethernet frame: 10 bytes/);
  t.equal(formatMac(parseMac('AA:bb:0C:dd:0e:FF')), 'aa:bb:0c:dd:0e:ff', 'round trip');
  t.equal(formatMac(BROADCAST_MAC), 'ff:ff:ff:ff:ff:ff');
  t.throws(() => parseMac('aa:bb:cc:dd:ee'), /not a MAC address/);
  t.equal(etherTypeName(ETHERTYPE_ARP), 'ARP');
  t.equal(etherTypeName(0x88cc), '0x88cc');
});

const LIMITS = { macLimit: 2, maxFrame: 1434, groupPerSec: 10 };

t.test('L2Guard: source MACs as first seen, up to the limit', async (t) => {
  const g = new L2Guard(LIMITS, 0);
  const send = (src: number, dst = C) => { const f = frame(dst, src); return g.check(f.buf, f.off, f.len, 0); };
  t.equal(send(A), 'learned', 'the first MAC is learned');
  t.equal(g.learnedMac, A);
  t.equal(send(A), 'ok', 'then carried');
  t.equal(send(B), 'learned', 'a second, within the limit');
  t.equal(send(C), 'spoofed_mac', 'a third: over the limit');
  t.equal(send(C), 'spoofed_mac', 'and stays so');
  t.same(g.macs, [A, B]);
  t.equal(send(A), 'ok', 'the first ones still pass');
});

t.test("L2Guard: another client's MAC is never learned", async (t) => {
  const table = new MacTable<string>();
  table.add(A, 'alice');
  const bob = new L2Guard(LIMITS, 0, (mac) => table.heldByOther(mac, 'bob'));
  const f = frame(C, A);
  t.equal(bob.check(f.buf, f.off, f.len, 0), 'spoofed_mac', "bob sending from alice's MAC");
  t.same(bob.macs, [], 'nothing learned');
  table.removeAll([A], 'alice');
  t.equal(bob.check(f.buf, f.off, f.len, 0), 'learned', 'once alice has left, the MAC is free');
  t.equal(table.size, 0);
});

t.test('L2Guard: sizes and bad frames', async (t) => {
  const g = new L2Guard(LIMITS, 0);
  const big = frame(C, A, ETHERTYPE_IPV4, 1435);
  t.equal(g.check(big.buf, big.off, big.len, 0), 'too_big');
  t.equal(g.check(Buffer.alloc(10), 0, 10, 0), 'bad_ethernet');
  const grp = frame(C, parseMac('03:00:00:00:00:01'));
  t.equal(g.check(grp.buf, grp.off, grp.len, 0), 'bad_ethernet', 'a group source');
  t.same(g.macs, [], 'nothing learned from dropped frames');
});

t.test('L2Guard: broadcast and multicast at a limited rate, unicast not', async (t) => {
  const g = new L2Guard(LIMITS, 0);
  const bc = frame(BROADCAST_MAC, A, ETHERTYPE_ARP);
  const uc = frame(C, A);
  let passed = 0;
  for (let i = 0; i < 100; i++) if (g.check(bc.buf, bc.off, bc.len, 0) !== 'broadcast_limit') passed++;
  t.equal(passed, 20, 'a burst of twice the rate, then none');
  t.equal(g.check(uc.buf, uc.off, uc.len, 0), 'ok', 'unicast is not limited');
  t.equal(g.check(bc.buf, bc.off, bc.len, 100), 'ok', 'after 100 ms one more token (10 a second)');
  t.equal(g.check(bc.buf, bc.off, bc.len, 100), 'broadcast_limit');
  const fresh = new L2Guard(LIMITS, 0);
  for (let i = 0; i < 20; i++) fresh.check(frame(BROADCAST_MAC, B).buf, 3, 60, 0);
  t.equal(fresh.check(bc.buf, bc.off, bc.len, 0), 'broadcast_limit', 'a new MAC on a dropped broadcast...');
  t.same(fresh.macs, [B], '...is not learned');
});

t.test('MTU: the Ethernet header is part of the arithmetic', async (t) => {
  t.equal(computeTunnelMtu(1500, false, false, true), 1420, 'DTLS over IPv4: 1500-20-8-37-1-14');
  t.equal(computeTunnelMtu(1500, true, false, true), 1457, 'plaintext: 1500-20-8-1-14');
  t.equal(computeTunnelMtu(1500, false, true, true), 1400, 'over IPv6: 1500-40-8-37-1-14');
  const s = parseServerArgs(['--dev', 'tap'], {});
  t.same([s.dev, s.mtu, s.macLimit, s.broadcastPerSec], ['tap', 1420, 4, 200], 'defaults');
  // The largest frame then fills the underlay packet exactly: 20 + 8 + 37 + 1 + 14 + 1420 = 1500.
  t.equal(20 + 8 + 37 + 1 + 14 + s.mtu, 1500, 'no outer fragments');
  t.equal(parseServerArgs([], {}).dev, 'tun', 'tun by default');
  t.equal(parseServerArgs(['--dev', 'tap', '--underlay-mtu', '2000'], {}).mtu, 1920);
  const err = (() => { try { parseServerArgs(['--dev', 'tap', '--mtu', '2000'], {}); } catch (e) { return e as ConfigError; } })();
  t.equal(err?.field, 'mtu');
  t.match(err?.message, /with dev tap at most 1986 \(the 14-byte Ethernet header comes on top\), got 2000/);
  t.throws(() => parseServerArgs(['--dev', 'tup'], {}), /"dev": expected one of tun, tap, got "tup"/);
  t.throws(() => parseServerArgs(['--mac-limit', '0'], {}), /"macLimit": expected an integer from 1 to 64/);
  t.equal(parseClientArgs(['--server', '192.0.2.1', '--name', 'a', '--dev', 'tap'], {}).dev, 'tap');
});

const BASE: ConfigMsg = {
  type: 'config', v: 1, address: '10.8.0.2', prefix: 24, gateway: '10.8.0.1', mtu: 1420,
  routes: [], redirectGateway: false, dns: [], keepaliveSec: 10, timeoutSec: 60,
};

t.test('control: dev in hello and config; the mixes of versions', async (t) => {
  t.same(decodeControl(encodeControl({ ...BASE, dev: 'tap' })), { ...BASE, dev: 'tap' }, 'config round trip');
  t.same(decodeControl(encodeControl({ type: 'hello', v: 1, dev: 'tap' })), { type: 'hello', v: 1, dev: 'tap' }, 'hello round trip');
  t.match(validateControl({ ...BASE, dev: 'tup' }), { type: 'invalid', field: 'dev', error: /config\.dev: must be "tun" or "tap"/ });
  t.match(validateControl({ type: 'hello', v: 1, dev: 5 }), { type: 'invalid', field: 'dev' });
  t.match(validateControl({ ...BASE, dhcp: true }), { type: 'invalid', field: 'dhcp', error: /needs dev "tap"/ });
  t.match(validateControl({ ...BASE, dev: 'tap', dhcp: true }), { type: 'config', dhcp: true });
  const oldHello: HelloMsg = { type: 'hello', v: 1 };
  const tapHello: HelloMsg = { type: 'hello', v: 1, dev: 'tap' };
  t.match(devMismatch(oldHello, { ...BASE, dev: 'tap' }), /^this server carries Ethernet frames \(dev tap\): start the client with --dev tap/, 'an old (or tun) client at a TAP server: refused, with the reason');
  t.ok(devMismatch(oldHello, { ...BASE, dev: 'tap' })!.length <= 200, 'the reason fits a refuse message');
  t.match(devMismatch(tapHello, BASE), /carries IP packets \(dev tun\)/, 'a TAP client at a TUN server');
  t.equal(devMismatch(tapHello, { ...BASE, dev: 'tap' }), null);
  t.equal(devMismatch(oldHello, BASE), null, 'tun and tun: as before');
  // An old client would read a TAP config as an ordinary one (it ignores unknown fields):
  // that is why the server refuses it at its hello instead of sending the config.
  const seenByOld = oldValidateControl(JSON.parse(encodeControl({ ...BASE, dev: 'tap' }).toString()));
  t.same(seenByOld, BASE, 'an old client would not notice dev');
});

t.test("tun-echo --tap describes a frame: MACs, then ARP's question or the IP packet", async (t) => {
  const { describeFrame } = await import('../src/tools/tun-echo');
  const arp = Buffer.alloc(42);
  writeEtherHeader(arp, 0, BROADCAST_MAC, A, ETHERTYPE_ARP);
  arp.writeUInt16BE(1, 14 + 6); // request
  Buffer.from([10, 77, 0, 1]).copy(arp, 14 + 14);
  Buffer.from([10, 77, 0, 2]).copy(arp, 14 + 24);
  t.equal(describeFrame(arp), 'Ethernet 02:00:00:00:00:0a -> ff:ff:ff:ff:ff:ff ARP who-has 10.77.0.2 tell 10.77.0.1');
  const ipf = frame(B, A, ETHERTYPE_IPV4, 14 + 20);
  ipf.buf.subarray(3 + 14, 3 + 34).set([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 99, 0, 0, 10, 77, 0, 1, 10, 77, 0, 2]);
  t.match(describeFrame(ipf.buf.subarray(3, 3 + 34)), /^Ethernet 02:00:00:00:00:0a -> 02:00:00:00:00:0b IPv4: IPv4 10\.77\.0\.1 -> 10\.77\.0\.2 protocol 99$/);
  t.equal(describeFrame(Buffer.alloc(10)), 'not an Ethernet frame (shorter than its 14-byte header)');
});
