// Drives a DTLS client and server against each other in memory, with an optional lossy
// datagram path and real retransmission timers. No sockets: the connections are sans-IO.
import { DtlsConnection, DtlsContext } from '../../src/dtls/dtls';
import { PacketBatch } from '../../src/batch';

/** A small deterministic PRNG so that a lossy test does the same thing every run. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface LinkResult {
  client: DtlsConnection;
  server: DtlsConnection | null;
  datagrams: number;
  dropped: number;
}

/**
 * Runs a handshake: client datagrams go to server.listen() until a connection exists, then to
 * it. `loss` is the probability that any datagram is dropped on the way.
 */
export async function handshake(serverCtx: DtlsContext, clientCtx: DtlsContext, opts: { loss?: number; seed?: number; timeoutMs?: number; serverName?: string } = {}): Promise<LinkResult> {
  const rnd = prng(opts.seed ?? 1);
  const loss = opts.loss ?? 0;
  const out = new PacketBatch(16, 2048);
  const client = clientCtx.connect(opts.serverName ?? 'server.minivpn.test');
  let server: DtlsConnection | null = null;
  let datagrams = 0;
  let dropped = 0;
  const lose = () => { datagrams++; if (loss > 0 && rnd() < loss) { dropped++; return true; } return false; };
  const toServer = (list: Buffer[] | null) => {
    for (const d of list ?? []) {
      if (lose()) continue;
      if (!server) {
        const r = serverCtx.listen(d, '192.0.2.10:40000');
        if (r && 'reply' in r) toClient(r.reply);
        else if (r && 'conn' in r) { server = r.conn; toClient(server.takeOutput()); }
      } else {
        server.openOne(d, out);
        toClient(server.takeOutput());
      }
    }
  };
  const toClient = (list: Buffer[] | null) => {
    for (const d of list ?? []) {
      if (lose()) continue;
      client.openOne(d, out);
      toServer(client.takeOutput());
    }
  };
  client.handshake();
  toServer(client.takeOutput());
  const deadline = Date.now() + (opts.timeoutMs ?? 30000);
  const srv = () => server as DtlsConnection | null;
  const done = () => {
    const s = srv();
    return client.state === 'failed' || (s !== null && s.state === 'failed') ||
      (client.state === 'open' && s !== null && s.state === 'open');
  };
  // Timers: run whichever side's retransmission timer is due, as an event loop would.
  while (!done() && Date.now() < deadline) {
    const waits = [client.timeoutMs(), srv()?.timeoutMs() ?? -1].filter((t) => t >= 0);
    const wait = waits.length ? Math.min(...waits) : 10;
    await new Promise((r) => setTimeout(r, Math.max(1, Math.min(wait, 50))));
    if (client.timeoutMs() === 0) { client.onTimeout(); toServer(client.takeOutput()); }
    const s = srv();
    if (s && s.timeoutMs() === 0) { s.onTimeout(); toClient(s.takeOutput()); }
  }
  return { client, server, datagrams, dropped };
}
