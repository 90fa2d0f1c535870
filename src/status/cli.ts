// npm run status -- [--socket run/minivpn.sock] [--json]: what the server is doing right now.
import { readStatus } from '../server/status';
import type { ServerStatus } from '../server/server';

function human(n: number): string {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const i = args.indexOf('--socket');
  const file = i >= 0 ? args[i + 1] : 'run/minivpn.sock';
  let st: ServerStatus;
  try {
    st = (await readStatus(file)) as ServerStatus;
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(1);
  }
  if (args.includes('--json')) {
    process.stdout.write(JSON.stringify(st, null, 2) + '\n');
    return;
  }
  const out: string[] = [];
  out.push(`minivpn server (${st.mode}) on ${st.listen}, ${st.tun}, pool ${st.pool}${st.pool6 ? ` and ${st.pool6}` : ' (no IPv6)'}, up ${st.uptimeSec}s`);
  out.push(`${st.clients.length} client(s)`);
  const rows = [['CN', 'ADDRESS', 'REMOTE', 'IN', 'PKTS IN', 'OUT', 'PKTS OUT', 'DROPPED', 'LAST SEEN', 'ADDRESS6']];
  for (const c of st.clients) {
    rows.push([c.cn, c.address, c.remote, human(c.rxBytes), String(c.rxPackets), human(c.txBytes), String(c.txPackets),
      String(c.droppedRecords + c.droppedSpoofed), `${c.lastSeenSec}s ago`, c.address6 || '-']);
  }
  const w = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  for (const r of rows) out.push(r.map((v, k) => v.padEnd(w[k])).join('  '));
  // The OSes' own IPv6 link traffic (solicitations, MLD) is expected, not a problem: its own line.
  const drops = Object.entries(st.drops).filter(([k, n]) => n > 0 && k !== 'ipv6_link_local');
  out.push(`drops: ${drops.length ? drops.map(([k, n]) => `${k}=${n}`).join(' ') : 'none'}`);
  if (st.drops.ipv6_link_local > 0) out.push(`IPv6 link-local packets kept out of the tunnel: ${st.drops.ipv6_link_local}`);
  process.stdout.write(out.join('\n') + '\n');
}

void main();
