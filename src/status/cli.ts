// minivpn status [--socket PATH] [--json]: what the server is doing right now.
import fs from 'node:fs';
import { readStatus } from '../server/status';
import type { ServerStatus } from '../server/server';

const USAGE = `usage: minivpn status [--socket PATH] [--json]     (or: npm run status -- ...)
Asks the running server for its clients, addresses, counters and drops.
  --socket PATH   the server's status socket (default: run/minivpn.sock, or
                  /run/minivpn/minivpn.sock, where the systemd unit puts it, if only that exists)
  --json          everything, as JSON
`;

/** The server's socket: the default of a server run from here, else the service's. */
function defaultSocket(): string {
  const local = 'run/minivpn.sock';
  const service = '/run/minivpn/minivpn.sock';
  return !fs.existsSync(local) && fs.existsSync(service) ? service : local;
}

function human(n: number): string {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

export async function main(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const i = args.indexOf('--socket');
  if (i >= 0 && (args[i + 1] === undefined || args[i + 1].startsWith('--'))) {
    process.stderr.write('status: --socket needs a path\n');
    return 2;
  }
  const unknown = args.filter((a, k) => a !== '--json' && a !== '--socket' && !(i >= 0 && k === i + 1));
  if (unknown.length) {
    process.stderr.write(`status: unknown argument ${JSON.stringify(unknown[0])}\n\n${USAGE}`);
    return 2;
  }
  const file = i >= 0 ? args[i + 1] : defaultSocket();
  let st: ServerStatus;
  try {
    st = (await readStatus(file)) as ServerStatus;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 1;
  }
  if (args.includes('--json')) {
    process.stdout.write(JSON.stringify(st, null, 2) + '\n');
    return 0;
  }
  const out: string[] = [];
  // (With the p2p topology each client has a TUN of its own: a column for it.)
  const p2p = st.topology === 'p2p';
  // (--dev tap: Ethernet frames; each client's source MACs in a column of their own.)
  const tap = st.dev === 'tap';
  const kind = tap ? 'TAP' : 'TUN';
  const dev = p2p ? `topology p2p, a ${kind} per client (${st.tun})` : tap ? `${st.tun} (TAP)` : st.tun;
  out.push(`minivpn server (${st.mode}) on ${st.listen}, ${dev}, pool ${st.pool}${st.pool6 ? ` and ${st.pool6}` : ' (no IPv6)'}, up ${st.uptimeSec}s`);
  out.push(`${st.clients.length} client(s)`);
  const rows = [['CN', 'ADDRESS', ...(p2p ? [kind] : []), 'REMOTE', 'IN', 'PKTS IN', 'OUT', 'PKTS OUT', 'DROPPED', 'MOVES', 'LAST SEEN', 'ADDRESS6', ...(tap ? ['MACS'] : [])]];
  for (const c of st.clients) {
    rows.push([c.cn, c.address, ...(p2p ? [c.tun ?? '-'] : []), c.remote, human(c.rxBytes), String(c.rxPackets), human(c.txBytes), String(c.txPackets),
      String(c.droppedRecords + c.droppedSpoofed), String(c.moves ?? 0), `${c.lastSeenSec}s ago`, c.address6 || '-', ...(tap ? [(c.macs ?? []).join(',') || '-'] : [])]);
  }
  const w = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  for (const r of rows) out.push(r.map((v, k) => v.padEnd(w[k])).join('  '));
  // The OSes' own IPv6 link traffic (solicitations, MLD) is expected, not a problem: its own line.
  const drops = Object.entries(st.drops).filter(([k, n]) => n > 0 && k !== 'ipv6_link_local');
  out.push(`drops: ${drops.length ? drops.map(([k, n]) => `${k}=${n}`).join(' ') : 'none'}`);
  if (st.roaming) out.push(`roaming: ${st.roaming.moves} move(s), ${st.roaming.trials} trial decryption(s)`);
  if (st.unauthenticated) out.push(`before authentication: ${human(st.unauthenticated.rxBytes)} in, ${human(st.unauthenticated.txBytes)} answered`);
  if (st.drops.ipv6_link_local > 0) out.push(`IPv6 link-local packets kept out of the tunnel: ${st.drops.ipv6_link_local}`);
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}

if (require.main === module) void main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
