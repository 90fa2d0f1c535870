// Interoperability with a DTLS implementation that is not ours: the openssl command line
// tools (s_client, s_server), on loopback only. Our side runs the real sans-IO DTLS layer on
// a UDP socket (test/helpers/udp-dtls.ts); certificates come from the project's own PKI.
import t, { Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { spawn, spawnSync, ChildProcessWithoutNullStreams } from 'node:child_process';
import { DtlsContext } from '../src/dtls/dtls';
import { testPki } from './helpers/certs';
import { DtlsUdpServer, dtlsConnect } from './helpers/udp-dtls';

const HOST = '127.0.0.1';
const SERVER_NAME = 'server.minivpn.test'; // the SAN in testPki()'s server certificate
const STEP_MS = 15000; // no single step may take longer: a stuck openssl fails the test, never hangs it
t.setTimeout(180_000); // the whole file, with room for a loaded machine

const which = spawnSync('openssl', ['version'], { encoding: 'utf8' });
if (which.status !== 0) throw new Error('openssl (the command line tool) is required for this test: apt-get install openssl');

// PEM files for openssl, written 0600 in a private temporary directory.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-interop-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string) => path.join(dir, name);

t.before(async () => {
  const p = await testPki();
  const files: Record<string, string> = {
    'ca.crt': p.ca.certPem,
    'server.crt': p.server.certPem, 'server.key': p.server.keyPem,
    'client.crt': p.client.certPem, 'client.key': p.client.keyPem,
  };
  for (const [name, pem] of Object.entries(files)) fs.writeFileSync(file(name), pem, { mode: 0o600 });
});

/** An openssl process with its output collected, killed (by PID) at teardown or after a hard limit. */
class Openssl {
  readonly proc: ChildProcessWithoutNullStreams;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly killer: NodeJS.Timeout;

  constructor(tt: Test, args: string[], hardLimitMs = 60000) {
    this.proc = spawn('openssl', args, { cwd: dir, stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stdout.on('data', (d) => { this.stdout += d; });
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    this.proc.stdin.on('error', () => {}); // EPIPE if it died: reported through the assertions instead
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    this.killer = setTimeout(() => this.kill(), hardLimitMs);
    this.exited.then(() => clearTimeout(this.killer));
    tt.teardown(() => this.kill());
  }

  get running(): boolean { return this.proc.exitCode === null && this.proc.signalCode === null; }

  kill(): void {
    clearTimeout(this.killer);
    if (this.running) this.proc.kill('SIGKILL'); // ChildProcess.kill signals exactly this PID
  }

  /** Resolves when stdout contains `want`; rejects on exit or timeout, with what openssl said. */
  waitOut(want: string | RegExp, timeoutMs = STEP_MS): Promise<void> {
    const has = () => (typeof want === 'string' ? this.stdout.includes(want) : want.test(this.stdout));
    return new Promise((resolve, reject) => {
      const finish = (err?: Error) => {
        clearTimeout(timer);
        this.proc.stdout.off('data', check);
        this.proc.off('exit', onExit);
        if (err) reject(err); else resolve();
      };
      const check = () => { if (has()) finish(); };
      const onExit = () => { if (!has()) finish(new Error(`openssl exited before printing ${want}: ${this.describe()}`)); };
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for openssl to print ${want}: ${this.describe()}`)), timeoutMs);
      this.proc.stdout.on('data', check);
      this.proc.on('exit', onExit);
      check();
      if (!this.running) onExit();
    });
  }

  /** Waits for the process to end by itself; kills it after timeoutMs. */
  async waitExit(timeoutMs = STEP_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const timer = setTimeout(() => this.kill(), timeoutMs);
    try { return await this.exited; } finally { clearTimeout(timer); }
  }

  describe(): string {
    const tail = (s: string) => JSON.stringify(s.slice(-600));
    return `stdout ${tail(this.stdout)}, stderr ${tail(this.stderr)}`;
  }
}

/** A UDP port that was free a moment ago (s_server binds it itself, so a race is possible: callers retry). */
async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, HOST);
  await once(s, 'listening');
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** openssl s_server on a free loopback port, requiring a client certificate; serves one client, then exits. */
async function startSServer(tt: Test): Promise<{ server: Openssl; port: number }> {
  // s_server binds the port itself; if another process took it in between, try another.
  for (let attempt = 1; ; attempt++) {
    const port = await freeUdpPort();
    const server = new Openssl(tt, ['s_server', '-dtls1_2', '-accept', `${HOST}:${port}`,
      '-cert', 'server.crt', '-key', 'server.key', '-CAfile', 'ca.crt', '-Verify', '1', '-naccept', '1']);
    try {
      await server.waitOut('ACCEPT');
      return { server, port };
    } catch (err) {
      server.kill();
      if (attempt === 3) throw err;
    }
  }
}

const ourServer = () => {
  const ca = fs.readFileSync(file('ca.crt'), 'utf8');
  return new DtlsContext({ role: 'server', ca, cert: fs.readFileSync(file('server.crt'), 'utf8'), key: fs.readFileSync(file('server.key'), 'utf8'), retransmitMs: 200 });
};

for (const cipher of ['ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
  t.test(`our server <-> openssl s_client (${cipher}): mutual auth, data both ways, close_notify`, async (t) => {
    const server = await DtlsUdpServer.start(ourServer(), HOST);
    t.teardown(() => server.close());
    const opened = server.nextOpen(STEP_MS);
    const client = new Openssl(t, ['s_client', '-dtls1_2', '-connect', `${HOST}:${server.port}`,
      '-servername', SERVER_NAME, '-verify_hostname', SERVER_NAME,
      '-cert', 'client.crt', '-key', 'client.key', '-CAfile', 'ca.crt', '-verify_return_error',
      '-cipher', cipher]);

    const peer = await opened;
    t.equal(peer.state, 'open', 'handshake with s_client completed');
    t.equal(peer.conn.peer()?.cn, 'alice', 'the server sees the client certificate CN');
    t.equal(peer.conn.info().version, 'DTLSv1.2');
    t.equal(peer.conn.info().cipher, cipher, 'the cipher s_client asked for');
    await client.waitOut(/Verify return code: 0 \(ok\)/);
    t.pass('s_client verified our server certificate against the CA (and the name)');
    t.match(client.stdout, new RegExp(`Cipher is ${cipher}`), 's_client reports the same cipher');

    // s_client -> us: the line written on its stdin arrives as application data.
    client.proc.stdin.write('hello from s_client\n');
    await peer.waitForText('hello from s_client\n', STEP_MS);
    t.pass('the server received the line s_client read from stdin');

    // us -> s_client: printed on its stdout.
    peer.send('reply from the minivpn server\n');
    await client.waitOut('reply from the minivpn server');
    t.pass("s_client printed the server's reply");

    // End of stdin: s_client sends close_notify and exits.
    client.proc.stdin.end();
    const why = await peer.waitClosed(STEP_MS);
    t.match(why, /close_notify/, 'the server saw close_notify');
    t.equal(peer.state, 'closed');
    const exit = await client.waitExit();
    t.equal(exit.code, 0, exit.code === 0 ? 's_client exited cleanly' : `s_client exit status: ${client.describe()}`);
  });
}

t.test('our server refuses an s_client without a client certificate, and s_client is told why', async (t) => {
  const server = await DtlsUdpServer.start(ourServer(), HOST);
  t.teardown(() => server.close());
  const failed = new Promise<string>((resolve) => server.once('failed', (_p, why: string) => resolve(why)));
  const client = new Openssl(t, ['s_client', '-dtls1_2', '-connect', `${HOST}:${server.port}`,
    '-servername', SERVER_NAME, '-CAfile', 'ca.crt', '-verify_return_error']);
  client.proc.stdin.end();
  const timeout = new Promise<string>((_r, reject) => setTimeout(() => reject(new Error('no refusal within the step limit')), STEP_MS).unref());
  const why = await Promise.race([failed, timeout]);
  t.match(why, /did not return a certificate/, `refusal reason: ${why}`);
  t.equal(server.peers.size, 0, 'no association is kept for the refused client');
  await client.waitExit();
  t.match(client.stdout + client.stderr, /alert|handshake failure|certificate required/i, 's_client reports the alert');
});

t.test('our client <-> openssl s_server (-Verify 1): mutual auth, data both ways, close_notify', async (t) => {
  const ca = fs.readFileSync(file('ca.crt'), 'utf8');
  const ctx = new DtlsContext({ role: 'client', ca, cert: fs.readFileSync(file('client.crt'), 'utf8'), key: fs.readFileSync(file('client.key'), 'utf8'), retransmitMs: 200 });

  const { server, port } = await startSServer(t);
  const { peer, sock } = await dtlsConnect(ctx, HOST, port, { serverName: SERVER_NAME, timeoutMs: STEP_MS });
  t.teardown(() => { peer.close(); sock.close(); });
  t.equal(peer.state, 'open', 'handshake with s_server completed');
  const who = peer.conn.peer();
  t.equal(who?.cn, 'server', 'our client verified the s_server certificate (CA and name)');
  t.match(who?.issuer ?? '', /minivpn test CA/);
  t.equal(peer.conn.info().version, 'DTLSv1.2');
  t.match(peer.conn.info().cipher, /^ECDHE-ECDSA-(AES256-GCM-SHA384|CHACHA20-POLY1305)$/);

  // us -> s_server: printed on its stdout.
  peer.send('hello from the minivpn client\n');
  await server.waitOut('hello from the minivpn client');
  t.pass('s_server printed what our client sent');
  t.match(server.stdout, /subject=.*CN\s*=\s*alice/, 's_server saw our client certificate (CN alice)');

  // s_server -> us: what is written to its stdin. (Lines starting with one of s_server's
  // command letters, like Q or r, would be commands, so this one does not.)
  server.proc.stdin.write('hello from s_server\n');
  await peer.waitForText('hello from s_server\n', STEP_MS);
  t.pass('our client received the line s_server read from stdin');

  // Our close_notify: s_server reads it as the end of the connection ("DONE") and, with
  // -naccept 1, exits. (s_server's own "Q" command closes the socket before its
  // close_notify, so the other direction is shown with s_client above.)
  peer.close();
  await server.waitOut('DONE');
  t.pass('s_server saw our close_notify');
  const exit = await server.waitExit();
  t.equal(exit.code, 0, exit.code === 0 ? 's_server exited cleanly' : `s_server exit status: ${server.describe()}`);
});

t.test('s_server refuses our client when it presents no certificate', async (t) => {
  const ca = fs.readFileSync(file('ca.crt'), 'utf8');
  const ctx = new DtlsContext({ role: 'client', ca, cert: '', key: '', retransmitMs: 200 });
  const { server, port } = await startSServer(t);
  const err = await dtlsConnect(ctx, HOST, port, { serverName: SERVER_NAME, timeoutMs: STEP_MS }).then(
    (r) => { r.peer.close(); r.sock.close(); return null; },
    (e: Error) => e);
  t.ok(err, 'the handshake does not complete');
  t.match(err?.message ?? '', /alert|certificate/i, `our client reports the refusal: ${err?.message}`);
  server.kill();
});
