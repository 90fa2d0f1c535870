import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  parseServerArgs, parseClientArgs, computeTunnelMtu, usage, ConfigError, HelpRequested, MAX_PUSHED_ROUTES, MAX_PUSHED_DNS,
} from '../src/config';
import { ConfigMsg, encodeControl } from '../src/wire/control';
import { encodeFrame, FrameType } from '../src/wire/frame';

const NOENV = {};

function tmpFile(t: { teardown(fn: () => void): unknown }, content: string): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-config-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  const f = path.join(d, 'config.json');
  fs.writeFileSync(f, content);
  return f;
}

type Asserts = Pick<typeof t, 'ok' | 'equal' | 'match' | 'fail'>;

/** Asserts that `fn` throws a ConfigError for `field` whose message matches `re`. */
function throwsField(t: Asserts, fn: () => unknown, field: string, re: RegExp, what: string): void {
  try {
    fn();
    t.fail(`${what}: expected a ConfigError for "${field}"`);
  } catch (err) {
    t.ok(err instanceof ConfigError, `${what}: is a ConfigError`);
    t.equal((err as ConfigError).field, field, `${what}: names field ${field}`);
    t.match((err as Error).message, re, `${what}: message`);
  }
}

t.test('MTU arithmetic', async (t) => {
  t.equal(computeTunnelMtu(1500, false, false), 1434, 'DTLS over IPv4: 1500-20-8-37-1');
  t.equal(computeTunnelMtu(1500, true, false), 1471, 'plaintext over IPv4: 1500-20-8-1');
  t.equal(computeTunnelMtu(1500, false, true), 1414, 'DTLS over IPv6: 1500-40-8-37-1');
  t.equal(computeTunnelMtu(1500, true, true), 1451, 'plaintext over IPv6');
  t.equal(computeTunnelMtu(9000, false, false), 8934);
  // The server's default follows its listen address: one IPv6 address means an IPv6 underlay.
  const mtu = (argv: string[]) => parseServerArgs(argv, {}).mtu;
  t.equal(mtu(['--listen', '[2001:db8:200::2]:1194']), 1414, 'on an IPv6 address: 1414');
  t.equal(mtu(['--listen', '[2001:db8:200::2]:1194', '--insecure-plaintext']), 1451, 'plaintext: 1451');
  t.equal(mtu(['--listen', '[::]:1194']), 1434, 'on both families ("::"): the IPv4 figure');
  t.equal(mtu(['--listen', '198.51.100.2:1194']), 1434);
  t.equal(mtu(['--listen', '[2001:db8:200::2]:1194', '--mtu', '1400']), 1400, '--mtu wins');
});

t.test('roaming, admission and pull options', async (t) => {
  const s = parseServerArgs(['--no-float', '--on-move', '/bin/true', '--move-trials-per-sec', '10', '--handshakes-per-source', '2'], NOENV);
  t.same([s.float, s.onMove, s.moveTrialsPerSec, s.handshakesPerSource], [false, '/bin/true', 10, 2]);
  t.throws(() => parseServerArgs(['--handshakes-per-source', '0'], NOENV), /handshakesPerSource/, 'at least one handshake per source');
  const c = parseClientArgs(['--server', '192.0.2.1:1194', '--name', 'alice', '--route-nopull', '--pull-filter', 'ignore:route 10.', '--pull-filter', 'reject:redirect-gateway'], NOENV);
  t.equal(c.routeNopull, true);
  t.same(c.pullFilters, [{ action: 'ignore', text: 'route 10.' }, { action: 'reject', text: 'redirect-gateway' }], 'filters in order');
  t.throws(() => parseClientArgs(['--server', '192.0.2.1:1194', '--name', 'alice', '--pull-filter', 'drop:route'], NOENV), /pullFilters.*ACTION:TEXT/, 'a bad action names the field');
});

t.test('server defaults', async (t) => {
  const c = parseServerArgs([], NOENV);
  t.same(c, {
    listen: { host: '::', port: 1194 },
    topology: 'subnet',
    linkProgram: [],
    pool: { network: '10.8.0.0', prefix: 24 },
    pool6: 'fd6d:7670:6e00::/64',
    ipv6: true,
    tunName: 'mvpn0',
    dev: 'tun',
    macLimit: 4,
    broadcastPerSec: 200,
    dhcp: false,
    bridge: null,
    underlayMtu: 1500,
    mtu: 1434,
    ca: 'pki/ca.crt', cert: 'pki/server.crt', key: 'pki/server.key',
    authorizedDir: 'pki/authorized',
    leasesFile: 'run/leases.json',
    clientToClient: true,
    routes: [],
    redirectGateway: false,
    dns: [],
    routes6: [],
    dns6: [],
    natOut: null,
    mssClamp: true,
    udpGso: false,
    tunGro: true,
    handoffYield: true,
    keepaliveSec: 10,
    timeoutSec: 60,
    onConnect: null, onDisconnect: null,
    float: true, onMove: null, moveTrialsPerSec: 4000,
    handshakesPerSource: 8,
    statusSocket: 'run/minivpn.sock',
    plaintext: false,
    keylog: null,
    user: null, group: null,
    logLevel: 'info',
  });
  t.equal(parseServerArgs(['--insecure-plaintext'], NOENV).mtu, 1471, 'plaintext default MTU');
  t.equal(parseServerArgs(['--underlay-mtu', '2000'], NOENV).mtu, 1934, 'MTU follows the underlay');
  t.equal(parseServerArgs(['--mtu', '1300'], NOENV).mtu, 1300, 'explicit MTU wins');
  t.equal(parseServerArgs([], { MINIVPN_LOG: 'debug' }).logLevel, 'debug', 'MINIVPN_LOG sets the level');
  t.equal(parseServerArgs(['--log-level', 'warn'], { MINIVPN_LOG: 'debug' }).logLevel, 'warn', 'flag beats env');
});

t.test('server flags', async (t) => {
  const c = parseServerArgs([
    '--listen', '192.0.2.1:1195', '--pool=10.9.0.0/16', '--tun-name', 'vpn0', '--no-client-to-client',
    '--routes', '10.20.0.0/24,10.21.0.0/24', '--route', '10.22.0.0/16', '--redirect-gateway', '--dns', '10.9.0.1',
    '--nat-out', 'eth0', '--keepalive-sec', '5', '--timeout-sec', '20', '--on-connect', '/bin/true',
    '--status-socket', '/tmp/x.sock', '--keylog', 'keys.log', '--user', 'nobody', '--group', 'nogroup',
  ], NOENV);
  t.same(c.listen, { host: '192.0.2.1', port: 1195 });
  t.same(c.pool, { network: '10.9.0.0', prefix: 16 });
  t.equal(c.tunName, 'vpn0');
  t.equal(c.clientToClient, false);
  t.same(c.routes, ['10.20.0.0/24', '10.21.0.0/24', '10.22.0.0/16']);
  t.equal(c.redirectGateway, true);
  t.same(c.dns, ['10.9.0.1']);
  t.equal(c.natOut, 'eth0');
  t.equal(c.keepaliveSec, 5);
  t.equal(c.timeoutSec, 20);
  t.equal(c.onConnect, '/bin/true');
  t.equal(c.onDisconnect, null);
  t.equal(c.statusSocket, '/tmp/x.sock');
  t.equal(c.keylog, 'keys.log');
  t.equal(c.user, 'nobody');
  t.equal(c.group, 'nogroup');

  // The listen address forms.
  t.same(parseServerArgs(['--listen', ':1200'], NOENV).listen, { host: '::', port: 1200 });
  t.same(parseServerArgs(['--listen', '1201'], NOENV).listen, { host: '::', port: 1201 });
  t.same(parseServerArgs(['--listen', '[2001:db8::1]:1202'], NOENV).listen, { host: '2001:db8::1', port: 1202 });
  t.same(parseServerArgs(['--listen', '[::]:0'], NOENV).listen, { host: '::', port: 0 }, 'port 0: the OS picks');
  t.same(parseServerArgs(['--listen', '0.0.0.0:1194'], NOENV).listen, { host: '0.0.0.0', port: 1194 });
});

t.test('the config file, and flags overriding it', async (t) => {
  const f = tmpFile(t, JSON.stringify({
    listen: '198.51.100.1:1300', pool: '10.50.0.0/24', clientToClient: false, routes: ['10.60.0.0/24'],
    natOut: 'eth1', mtu: 1400, logLevel: 'debug',
  }));
  const fromFile = parseServerArgs(['--config', f], NOENV);
  t.same(fromFile.listen, { host: '198.51.100.1', port: 1300 });
  t.same(fromFile.pool, { network: '10.50.0.0', prefix: 24 });
  t.equal(fromFile.clientToClient, false);
  t.same(fromFile.routes, ['10.60.0.0/24']);
  t.equal(fromFile.natOut, 'eth1');
  t.equal(fromFile.mtu, 1400);
  t.equal(fromFile.logLevel, 'debug');
  t.equal(fromFile.tunName, 'mvpn0', 'fields not in the file keep their defaults');

  // Flags win, wherever --config appears.
  const both = parseServerArgs(['--pool', '10.70.0.0/24', '--config', f, '--client-to-client', '--route', '10.80.0.0/24', '--no-nat-out'], { MINIVPN_LOG: 'error' });
  t.same(both.pool, { network: '10.70.0.0', prefix: 24 });
  t.equal(both.clientToClient, true);
  t.same(both.routes, ['10.80.0.0/24'], 'a list flag replaces the file\'s list');
  t.equal(both.natOut, null, '--no-nat-out clears the file value');
  t.same(both.listen, { host: '198.51.100.1', port: 1300 });
  t.equal(both.logLevel, 'debug', 'file beats the environment');

  const client = tmpFile(t, JSON.stringify({ server: '192.0.2.10:1194', name: 'bob', tunName: 'tun7' }));
  const c = parseClientArgs(['--config', client, '--tun-name', 'tun8'], NOENV);
  t.same(c.server, { host: '192.0.2.10', port: 1194 });
  t.equal(c.name, 'bob');
  t.equal(c.cert, 'pki/clients/bob.crt');
  t.equal(c.tunName, 'tun8');
});

t.test('bad values name their field and say what is expected', async (t) => {
  const S = (args: string[]) => () => parseServerArgs(args, NOENV);
  throwsField(t, S(['--pool', '10.8.0/24']), 'pool', /^config: "pool": expected an IPv4 CIDR like 10\.8\.0\.0\/24, got "10\.8\.0\/24"/, 'pool shape');
  throwsField(t, S(['--pool', '10.8.0.1/24']), 'pool', /network address .* like 10\.8\.0\.0\/24/, 'pool host bits');
  throwsField(t, S(['--pool', '10.0.0.0/4']), 'pool', /prefix length from 8 to 30/, 'pool prefix');
  throwsField(t, S(['--pool', '10.8.0.0/31']), 'pool', /prefix length from 8 to 30/, 'pool /31');
  throwsField(t, S(['--listen', '1.2.3.4']), 'listen', /"listen": expected an address like .*got "1\.2\.3\.4"/, 'listen without port');
  throwsField(t, S(['--listen', 'example.org:1194']), 'listen', /"listen"/, 'listen on a name');
  throwsField(t, S(['--listen', ':70000']), 'listen', /port 0-65535/, 'listen port range');
  throwsField(t, S(['--listen', '[zz::1]:5']), 'listen', /"listen"/, 'listen bad v6');
  throwsField(t, S(['--tun-name', 'a-very-long-name-x']), 'tunName', /"tunName": expected an interface name of 1-15/, 'tun name length');
  throwsField(t, S(['--tun-name', 'bad/name']), 'tunName', /"tunName"/, 'tun name chars');
  throwsField(t, S(['--underlay-mtu', '500']), 'underlayMtu', /"underlayMtu": expected an integer from 576 to 2000, got 500/, 'underlay MTU range');
  throwsField(t, S(['--mtu', '1400.5']), 'mtu', /"mtu": expected an integer/, 'fractional MTU');
  throwsField(t, S(['--mtu', 'big']), 'mtu', /got "big"/, 'non-numeric MTU');
  throwsField(t, S(['--routes', '10.9.0.0/24,10.9.1.0']), 'routes', /"routes": expected .*got "10\.9\.1\.0"/, 'bad route names the element');
  throwsField(t, S(['--dns', '10.8.0.300']), 'dns', /"dns": expected IPv4 addresses/, 'bad dns');
  throwsField(t, S(['--nat-out', 'eth 0']), 'natOut', /"natOut"/, 'nat-out');
  throwsField(t, S(['--keepalive-sec', '0']), 'keepaliveSec', /"keepaliveSec": expected a number of seconds/, 'keepalive');
  t.equal(parseServerArgs(['--keepalive-sec', '.5', '--timeout-sec', '2'], NOENV).keepaliveSec, 0.5, 'a number written ".5" is a number');
  throwsField(t, S(['--timeout-sec', '10']), 'timeoutSec', /"timeoutSec": expected more than keepaliveSec \(10\), got 10/, 'timeout <= keepalive');
  throwsField(t, S(['--log-level', 'loud']), 'logLevel', /"logLevel": expected one of debug, info, warn, error, got "loud"/, 'log level');
  throwsField(t, () => parseServerArgs([], { MINIVPN_LOG: 'loud' }), 'logLevel', /environment MINIVPN_LOG/, 'env level');
  throwsField(t, S(['--user', 'no body']), 'user', /"user"/, 'user');
  throwsField(t, S(['--status-socket', '/' + 'x'.repeat(120)]), 'statusSocket', /at most 107 bytes/, 'socket path length');
  throwsField(t, S(['--client-to-client=yes']), 'clientToClient', /takes no value .*--no-client-to-client/, 'bool with value');
  throwsField(t, S(['--pool']), 'pool', /--pool needs a value/, 'missing value');
  throwsField(t, S(['--ca', '']), 'ca', /"ca": expected a file path/, 'empty path');

  // In a file: wrong JSON types name the field too, and the file.
  const f = tmpFile(t, JSON.stringify({ underlayMtu: '1500' }));
  throwsField(t, S(['--config', f]), 'underlayMtu', /"underlayMtu": expected an integer from 576 to 2000, got "1500" \(file .*config\.json\)/, 'string for number in file');
  const g = tmpFile(t, JSON.stringify({ clientToClient: 'no' }));
  throwsField(t, S(['--config', g]), 'clientToClient', /expected true or false, got "no"/, 'bool in file');
  const h = tmpFile(t, JSON.stringify({ routes: '10.9.0.0/24' }));
  throwsField(t, S(['--config', h]), 'routes', /expected a list like/, 'list in file');

  const C = (args: string[]) => () => parseClientArgs(args, NOENV);
  throwsField(t, C([]), 'server', /"server": required/, 'missing server');
  throwsField(t, C(['--server', 'nohost:']), 'server', /"server"/, 'empty port');
  throwsField(t, C(['--server', '10.8.0:1194', '--name', 'a']), 'server', /got "10\.8\.0:1194"/, 'truncated IP');
  throwsField(t, C(['--server', '192.0.2.1:1194']), 'cert', /"cert": required: give --name NAME/, 'no cert, no name');
  throwsField(t, C(['--server', '192.0.2.1:1194', '--name', '.alice']), 'name', /"name": expected a client name/, 'bad name');
  throwsField(t, C(['--server', '192.0.2.1:1194', '--name', 'a', '--server-name', 'bad name']), 'serverName', /"serverName"/, 'bad server name');
  throwsField(t, C(['--server', '192.0.2.1:1194', '--insecure-plaintext']), 'plaintextCn', /required with --insecure-plaintext/, 'plaintext without identity');
  throwsField(t, C(['--server', '192.0.2.1:1194', '--name', 'a', '--reconnect-max-sec', '0.5']), 'reconnectMaxSec', /at least reconnectMinSec \(1\)/, 'reconnect order');
});

t.test('unknown flags and fields are named', async (t) => {
  throwsField(t, () => parseServerArgs(['--tun-nam', 'x'], NOENV), '--tun-nam', /unknown flag --tun-nam \(did you mean --tun-name\?\)/, 'typo flag');
  throwsField(t, () => parseServerArgs(['--frobnicate'], NOENV), '--frobnicate', /unknown flag --frobnicate/, 'unknown flag');
  throwsField(t, () => parseClientArgs(['--pool', '10.8.0.0/24'], NOENV), '--pool', /unknown flag --pool/, 'server flag given to the client');
  throwsField(t, () => parseServerArgs(['stray'], NOENV), 'stray', /unexpected argument "stray"/, 'positional');
  const f = tmpFile(t, JSON.stringify({ listen: ':1194', 'tun-name': 'x' }));
  throwsField(t, () => parseServerArgs(['--config', f], NOENV), 'tun-name', /unknown field "tun-name" in .*\(did you mean tunName\?\)/, 'unknown file field');
  const bad = tmpFile(t, '{"listen": ');
  throwsField(t, () => parseServerArgs(['--config', bad], NOENV), 'config', /is not valid JSON/, 'bad JSON');
  const arr = tmpFile(t, '[]');
  throwsField(t, () => parseServerArgs(['--config', arr], NOENV), 'config', /must hold a JSON object/, 'not an object');
  throwsField(t, () => parseServerArgs(['--config', '/nonexistent/minivpn.json'], NOENV), 'config', /cannot read config file \/nonexistent\/minivpn\.json: ENOENT/, 'missing file');
});

t.test('client defaults and forms', async (t) => {
  const c = parseClientArgs(['--server', '192.0.2.1:1194', '--name', 'alice'], NOENV);
  t.same(c, {
    linkProgram: [],
    server: { host: '192.0.2.1', port: 1194 },
    serverName: 'server.minivpn.test',
    ca: 'pki/ca.crt', cert: 'pki/clients/alice.crt', key: 'pki/clients/alice.key',
    name: 'alice',
    tunName: 'mvpn1',
    dev: 'tun',
    plaintext: false,
    plaintextCn: 'alice',
    keylog: null,
    reconnectMinSec: 1,
    reconnectMaxSec: 30,
    stateDir: '/run/minivpn',
    routeNopull: false,
    pullFilters: [],
    allowIpv6Leak: false,
    udpGso: false,
    tunGro: true,
    handoffYield: true,
    logLevel: 'info',
  });
  t.same(parseClientArgs(['--server', '[2001:db8::5]:99', '--name', 'a'], NOENV).server, { host: '2001:db8::5', port: 99 });
  t.same(parseClientArgs(['--server', 'vpn.example.org', '--name', 'a'], NOENV).server, { host: 'vpn.example.org', port: 1194 }, 'port defaults to 1194');
  const explicit = parseClientArgs(['--server', '192.0.2.1:1194', '--name', 'alice', '--cert', 'my.crt'], NOENV);
  t.equal(explicit.cert, 'my.crt', 'an explicit cert beats the --name default');
  t.equal(explicit.key, 'pki/clients/alice.key');
  const p = parseClientArgs(['--server', '192.0.2.1:1194', '--insecure-plaintext', '--plaintext-cn', 'eve'], NOENV);
  t.equal(p.plaintext, true);
  t.equal(p.plaintextCn, 'eve');
  t.equal(p.cert, '', 'no cert needed in plaintext mode');
  t.equal(parseClientArgs(['--server', '192.0.2.1:1194', '--name', 'a', '--reconnect-min-sec', '0.2'], NOENV).reconnectMinSec, 0.2);
});

t.test('--help and usage()', async (t) => {
  t.throws(() => parseServerArgs(['--pool', 'garbage', '--help'], NOENV), HelpRequested, '--help wins over bad values');
  try {
    parseClientArgs(['-h'], NOENV);
    t.fail('expected HelpRequested');
  } catch (err) {
    t.ok(err instanceof HelpRequested);
    t.match((err as Error).message, /usage: minivpn client/);
  }
  const s = usage('server');
  for (const flag of ['--listen HOST:PORT', '--pool CIDR', '--[no-]client-to-client', '--[no-]insecure-plaintext', '--config FILE', '--nat-out IFACE']) {
    t.match(s, flag, `server usage mentions ${flag}`);
  }
  t.match(usage('client'), '--server HOST:PORT');
});

t.test('--tun-gro: merging on the TUN is on by default on both sides, --no-tun-gro turns it off', async (t) => {
  t.equal(parseServerArgs([], NOENV).tunGro, true);
  t.equal(parseServerArgs(['--no-tun-gro'], NOENV).tunGro, false);
  t.equal(parseClientArgs(['--server', '192.0.2.1', '--name', 'a'], NOENV).tunGro, true);
  t.equal(parseClientArgs(['--server', '192.0.2.1', '--name', 'a', '--no-tun-gro'], NOENV).tunGro, false);
  const f = tmpFile(t, JSON.stringify({ tunGro: 1 }));
  throwsField(t, () => parseServerArgs(['--config', f], NOENV), 'tunGro', /"tunGro": expected/, 'a number for a boolean in the file names the field');
  t.match(usage('client'), /--\[no-\]tun-gro .*capture/, 'the help says what it changes in a capture');
});

t.test('--udp-gso turns UDP segmentation offload on (off by default, on both sides)', async (t) => {
  t.equal(parseServerArgs([], NOENV).udpGso, false);
  t.equal(parseServerArgs(['--udp-gso'], NOENV).udpGso, true);
  t.equal(parseClientArgs(['--server', '192.0.2.1', '--name', 'a', '--udp-gso'], NOENV).udpGso, true);
  const f = tmpFile(t, JSON.stringify({ udpGso: 'yes' }));
  throwsField(t, () => parseServerArgs(['--config', f], NOENV), 'udpGso', /"udpGso": expected/, 'a string for a boolean in the file names the field');
  t.match(usage('server'), /--\[no-\]udp-gso .*capture/, 'the help says what it changes in a capture');
});

t.test('--no-mss-clamp turns MSS clamping off', async (t) => {
  t.equal(parseServerArgs([]).mssClamp, true);
  t.equal(parseServerArgs(['--no-mss-clamp']).mssClamp, false);
});

t.test('what the server pushes always fits one control frame of a 2048-byte slot', async (t) => {
  // The most of every list; 3-digit octets in 10.x (17 characters; the longest form of an
  // address, 18, is allowed for by the margin below), seconds that print with 17 digits.
  const routes = Array.from({ length: MAX_PUSHED_ROUTES }, (_, i) => `10.${100 + i}.200.255/32`);
  const dns = Array.from({ length: MAX_PUSHED_DNS }, (_, i) => `10.100.200.${100 + i}`);
  const cfg = parseServerArgs(['--routes', routes.join(','), '--dns', dns.join(',')], NOENV);
  t.equal(cfg.routes.length, 64);
  const msg: ConfigMsg = {
    type: 'config', v: 1, address: '10.100.100.254', prefix: 24, gateway: '10.100.100.100', mtu: 2000,
    routes: cfg.routes, redirectGateway: true, dns: cfg.dns, keepaliveSec: 0.30000000000000004, timeoutSec: 86399.30000000001,
  };
  const frame = encodeFrame(FrameType.CONTROL, encodeControl(msg));
  const margin = MAX_PUSHED_ROUTES + MAX_PUSHED_DNS + 2; // one more character per address
  t.ok(frame.length + margin <= 2048, `the worst case is ${frame.length} + ${margin} bytes`);
  // One more of either is a config error that names the field, at startup.
  const S = (args: string[]) => () => parseServerArgs(args, NOENV);
  throwsField(t, S(['--routes', [...routes, '10.99.0.0/24'].join(',')]), 'routes', /"routes": expected at most 64 entries, got "65 entries"/, 'too many routes');
  throwsField(t, S(['--dns', [...dns, '10.100.201.1'].join(',')]), 'dns', /"dns": expected at most 4 entries, got "5 entries"/, 'too many DNS servers');
});

t.test('topology p2p: the template, the program after "--", and what does not go with them', async (t) => {
  const c = parseServerArgs(['--topology', 'p2p', '--', '/bin/prog', 'a', '--b'], NOENV);
  t.equal(c.topology, 'p2p');
  t.equal(c.tunName, 'mvp%d', 'a TUN per client: the default name is a template');
  t.same(c.linkProgram, ['/bin/prog', 'a', '--b'], 'everything after "--" is the program and its arguments');
  t.equal(parseServerArgs(['--topology', 'p2p', '--tun-name', 'vpn%d'], NOENV).tunName, 'vpn%d');
  t.equal(parseServerArgs(['--tun-name', 'tun%d'], NOENV).tunName, 'tun%d', 'subnet: the kernel may number the one TUN too');
  const bad: [string[], string, RegExp][] = [
    [['--topology', 'mesh'], 'topology', /expected one of subnet, p2p/],
    [['--topology', 'p2p', '--tun-name', 'mvp0'], 'tunName', /a template ending in %d/],
    [['--tun-name', 'toolongstem1%d'], 'tunName', /at most 10 characters/],
    [['--tun-name', 'a%db'], 'tunName', /or a template like mvp%d/],
    [['--', '/bin/prog'], 'topology', /needs --topology p2p/],
    [['--topology', 'p2p', '--'], '--', /must be followed by a program/],
    [['--topology', 'p2p', '--user', 'nobody'], 'user', /no privilege drop with topology p2p/],
  ];
  for (const [argv, field, re] of bad) {
    try {
      parseServerArgs(argv, NOENV);
      t.fail(`${argv.join(' ')} was accepted`);
    } catch (err) {
      t.ok(err instanceof ConfigError, argv.join(' '));
      t.equal((err as ConfigError).field, field, `${argv.join(' ')}: names ${field}`);
      t.match((err as Error).message, re);
    }
  }
  const cl = parseClientArgs(['--server', '192.0.2.1:1194', '--name', 'alice', '--', './up.sh', 'x'], NOENV);
  t.same(cl.linkProgram, ['./up.sh', 'x'], 'the client takes a program too');
  t.match(usage('server'), /-- PROG ARGS\.\.\..*TUN_EVENT=up/);
});

t.test('the pushed topology field: p2p kept, subnet the default, anything else refused', async (t) => {
  const base = { type: 'config', v: 1, address: '10.8.0.2', prefix: 24, gateway: '10.8.0.1', mtu: 1400, routes: [], redirectGateway: false, dns: [], keepaliveSec: 10, timeoutSec: 60 };
  const { validateControl } = await import('../src/wire/control');
  t.equal((validateControl({ ...base, topology: 'p2p' }) as ConfigMsg).topology, 'p2p');
  t.equal((validateControl({ ...base, topology: 'subnet' }) as ConfigMsg).topology, undefined, 'subnet is the absence of the field');
  t.equal((validateControl(base) as ConfigMsg).topology, undefined);
  const bad = validateControl({ ...base, topology: 'mesh' });
  t.match(bad, { type: 'invalid', field: 'topology' });
});
