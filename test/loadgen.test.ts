// The load generator (src/loadgen/loadgen.ts) against a real server in the lab, small:
// 20 simulated clients get distinct pool addresses, stay alive only by answering the
// server's keepalives, a sample session's pings to the server come back through the
// tunnel, and closing the generator ends every session on the server.
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { withLab, uniquePrefix, ADDR } from '../src/lab/topology';
import { PingStats, RampResult } from '../src/loadgen/loadgen';
import { startWorker } from '../bench/scale';
import { inCidr, ipv4ToInt, parseCidr } from '../src/wire/ip';
import type { ServerStatus } from '../src/server/server';
import { vpnFixture, SERVER_MAIN, STATUS_MAIN, exited } from './helpers/vpn';

const run = promisify(execFile);
const N = 20;
const POOL = '10.8.0.0/21';
const KEEPALIVE_SEC = 1;
const TIMEOUT_SEC = 4;

async function status(socket: string): Promise<ServerStatus> {
  const { stdout } = await run(process.execPath, [STATUS_MAIN, '--socket', socket, '--json']);
  return JSON.parse(stdout) as ServerStatus;
}

/** Polls cond (every 50 ms) until it holds; rejects after timeoutMs, naming what it waited for. */
async function until(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test(`load generator: ${N} sessions against a lab server`, { timeout: 180_000 }, async (t) => {
  const cns = Array.from({ length: N }, (_, i) => `load${String(i + 1).padStart(2, '0')}`);
  const f = await vpnFixture(cns);
  t.teardown(f.cleanup);
  const prefix = uniquePrefix('lg');
  await withLab({ prefix, clients: 1 }, async (lab) => {
    const server = lab.spawn('server', [process.execPath, SERVER_MAIN,
      '--listen', `${ADDR.server}:1194`, '--pool', POOL,
      '--ca', `${f.pki}/ca.crt`, '--cert', `${f.pki}/server.crt`, '--key', `${f.pki}/server.key`,
      '--authorized-dir', `${f.pki}/authorized`, '--leases-file', `${f.dir}/leases.json`,
      '--status-socket', f.statusSocket, '--keepalive-sec', String(KEEPALIVE_SEC), '--timeout-sec', String(TIMEOUT_SEC)]);
    await lab.waitForLine(server, /listening on udp/, 30_000);

    // No keepalives of our own: the sessions stay alive at the server only if our answers arrive.
    const gen = startWorker(lab, f.pki, { serverName: 'server.minivpn.test', clientKeepalives: false });
    await gen.ready();
    const ramp = await gen.call<RampResult>({ cmd: 'ramp', cns, concurrency: 8 }, 60_000);
    t.equal(ramp.up, N, `all ${N} sessions up (errors: ${ramp.errors.join(' | ') || 'none'})`);
    t.equal(ramp.failed, 0, 'no session failed');
    t.ok(ramp.tunnelUpMs.median > 0 && ramp.handshakesPerSec > 0, `ramp measured: ${ramp.handshakesPerSec.toFixed(0)} handshakes/s, median tunnel-up ${ramp.tunnelUpMs.median.toFixed(1)} ms`);

    const st0 = await gen.call<{ up: number; addresses: string[] }>({ cmd: 'stats' });
    const pool = parseCidr(POOL);
    t.equal(new Set(st0.addresses).size, N, 'every session got its own address');
    t.ok(st0.addresses.every((a) => inCidr(ipv4ToInt(a), pool) && a !== '10.8.0.1'), `all addresses are client addresses in ${POOL}`);

    // A sample session pings the server's tunnel address; the server's kernel answers.
    // Until 20 are sent (about 0.4 s; longer on a loaded machine); the stop waits for the replies.
    await gen.call({ cmd: 'ping-start', cn: cns[0], dst: '10.8.0.1', intervalMs: 20 });
    await until(async () => (await gen.call<{ pingsSent: number }>({ cmd: 'stats' })).pingsSent >= 20, 30_000, 'the sample session to send 20 pings');
    const ping = await gen.call<PingStats>({ cmd: 'ping-stop', cn: cns[0], graceMs: 10_000 });
    t.ok(ping.sent >= 20, `sample session sent ${ping.sent} pings`);
    t.ok(ping.received >= ping.sent - 2, `and got ${ping.received} replies (max RTT ${ping.maxRttMs.toFixed(1)} ms)`);

    // More than twice the server's dead-peer timeout: only answered keepalives keep a session.
    await new Promise((r) => setTimeout(r, 2 * TIMEOUT_SEC * 1000 + 1000));
    const st1 = await gen.call<{ up: number; minKeepalivesAnswered: number; keepalivesSent: number }>({ cmd: 'stats' });
    t.equal(st1.up, N, 'all sessions still up at the generator');
    t.equal(st1.keepalivesSent, 0, 'the generator sent no keepalives of its own');
    t.ok(st1.minKeepalivesAnswered >= 3, `every session answered at least 3 server keepalives (min ${st1.minKeepalivesAnswered})`);
    const s1 = await status(f.statusSocket);
    t.equal(s1.clients.length, N, `the server lists all ${N} clients after ${2 * TIMEOUT_SEC + 1} s`);
    t.same(s1.clients.map((c) => c.address).sort(), [...st0.addresses].sort(), 'with the addresses the sessions were given');
    t.ok(s1.clients.every((c) => c.lastSeenSec <= 2), `all heard from recently (max last seen ${Math.max(...s1.clients.map((c) => c.lastSeenSec))} s)`);

    // Teardown: bye + close_notify for every session; the worker exits.
    await gen.call({ cmd: 'close' }, 30_000);
    t.equal(await exited(gen.child, 30_000), 0, 'worker exits 0');
    let left = -1;
    await until(async () => (left = (await status(f.statusSocket)).clients.length) === 0, 15_000, 'the server to drop every session').catch(() => undefined);
    t.equal(left, 0, 'the server dropped every session');
    t.notMatch(lab.output(server), /handshake failed|ERROR/, 'no failed handshakes or errors in the server log');
  });
  const { stdout } = await run('ip', ['netns', 'list']);
  t.notMatch(stdout, new RegExp(`^${prefix}-`, 'm'), 'the lab namespaces are gone');
});
