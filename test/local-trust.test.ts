// Local trust: the status socket is born 0600 and never replaces a symbolic link; the client's
// state directory is private or refused; a channel that fails after the session was up means
// "reconnect", not "give up".
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { StatusServer } from '../src/server/status';
import { ensurePrivateDir } from '../src/os/statedir';
import { Counters } from '../src/device/counters';
import { Channel, FrameRange } from '../src/session/channel';
import { SessionCore } from '../src/session/core';
import { ConnState } from '../src/dtls/dtls';
import { PacketBatch } from '../src/batch';
import { encodeControl } from '../src/wire/control';
import { encodeFrame, FrameType } from '../src/wire/frame';

const tmp = (t: { teardown(f: () => void): void }) => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'minivpn-trust-'));
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
};

t.test('status socket: made 0600 under a umask (no chmod window), the old umask back; a symlink in its place is refused', async (t) => {
  const dir = tmp(t);
  const file = path.join(dir, 'status.sock');
  const before = process.umask();
  const s = new StatusServer(file, () => ({ ok: true }));
  await s.listen();
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'the socket is 0600');
  t.equal(process.umask(), before, 'the process umask is as it was');
  await new Promise<void>((resolve) => net.connect(file).on('data', () => resolve()));
  await s.close();

  const target = path.join(dir, 'precious');
  fs.writeFileSync(target, 'keep me');
  fs.symlinkSync(target, file);
  await t.rejects(new StatusServer(file, () => ({})).listen(), /is a symbolic link; refusing to replace it/);
  t.equal(fs.readFileSync(target, 'utf8'), 'keep me', 'the link target is untouched');
  t.ok(fs.lstatSync(file).isSymbolicLink(), 'and the link itself is still there');
  fs.unlinkSync(file);
  fs.writeFileSync(file, 'a plain file');
  await t.rejects(new StatusServer(file, () => ({})).listen(), /exists and is not a socket/);
});

t.test('state directory: made 0700; a symlink, another user\'s, or a world-writable one is refused', async (t) => {
  const dir = tmp(t);
  const fresh = path.join(dir, 'a', 'state');
  ensurePrivateDir(fresh);
  t.equal(fs.statSync(fresh).mode & 0o777, 0o700, 'created 0700');
  ensurePrivateDir(fresh); // (again: fine)
  const link = path.join(dir, 'link');
  fs.symlinkSync(fresh, link);
  t.throws(() => ensurePrivateDir(link), /is a symbolic link; refusing it/);
  const open = path.join(dir, 'open');
  fs.mkdirSync(open, { mode: 0o777 });
  fs.chmodSync(open, 0o777);
  t.throws(() => ensurePrivateDir(open), /may be written by others \(mode 777\)/);
  if (process.getuid?.() === 0) {
    const theirs = path.join(dir, 'theirs');
    fs.mkdirSync(theirs, { mode: 0o700 });
    fs.chownSync(theirs, 65534, 65534);
    t.throws(() => ensurePrivateDir(theirs), /belongs to uid 65534, not to us \(uid 0\)/);
  } else {
    t.fail('run as root: the test of another user\'s directory needs chown');
  }
});

/** A channel whose state the test sets: the core needs nothing else of it. */
class FakeChannel implements Channel {
  readonly kind = 'dtls' as const;
  state: ConnState = 'open';
  error: string | null = null;
  dropped = 0;
  private readonly range: FrameRange = { buf: Buffer.alloc(0), offs: new Uint32Array(4), lens: new Uint32Array(4), count: 0, first: 0 };
  receive(d: PacketBatch, i: number): FrameRange {
    this.range.buf = d.buf; this.range.offs[0] = d.offs[i]; this.range.lens[0] = d.lens[i]; this.range.count = 1;
    return this.range;
  }
  seal(frames: PacketBatch, count: number): PacketBatch { frames.count = count; return frames; }
  begin(): void {}
  takeOutput(): Buffer[] | null { return null; }
  timeoutMs(): number { return -1; }
  onTimeout(): void {}
  shutdown(): void {}
  destroy(): void {}
}

t.test('a channel that fails after the session was up: the client reconnects; before: a failed handshake', async (t) => {
  const one = (b: Buffer) => { const p = new PacketBatch(1, 2048); p.push(b); return p; };
  const config = encodeFrame(FrameType.CONTROL, encodeControl({ type: 'config', v: 1, address: '10.8.0.2', prefix: 24, gateway: '10.8.0.1', mtu: 1400, routes: [], redirectGateway: false, dns: [], keepaliveSec: 1, timeoutSec: 5 }));
  const ch = new FakeChannel();
  const core = new SessionCore('client', ch, { keepaliveMs: 0, deadMs: 10_000, upWithinMs: 10_000 }, new Counters(), 0);
  core.decapsulate(one(config), 0, 1);
  t.equal(core.up, true);
  ch.state = 'failed';
  ch.error = 'an alert after the handshake';
  core.decapsulate(one(Buffer.from([FrameType.KEEPALIVE_REPLY])), 0, 2);
  t.same(core.out.close, { code: 'peer-closed', reason: 'an alert after the handshake' }, 'a lost connection: worth a reconnect');

  const early = new FakeChannel();
  const c2 = new SessionCore('client', early, { keepaliveMs: 0, deadMs: 10_000, upWithinMs: 10_000 }, new Counters(), 0);
  early.state = 'failed';
  early.error = 'certificate verify failed';
  c2.decapsulate(one(Buffer.from([FrameType.KEEPALIVE_REPLY])), 0, 1);
  t.same(c2.out.close, { code: 'handshake-failed', reason: 'certificate verify failed' }, 'before it was up: a failed handshake');
});
