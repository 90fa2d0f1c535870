// One client's throughput through the subnet topology (one shared TUN) and through the p2p
// topology (a TUN per client), for npm run bench:scale. Both servers run at once in the pair
// lab (different ports and pools), and iperf3 goes through one, then the other, in turns
// (ABBA: subnet first in even rounds, p2p first in odd ones): each ratio compares runs
// seconds apart under the same load, which a machine shared with other work needs.
import { Lab, uniquePrefix, withLab } from '../src/lab/topology';
import { iperf, median } from './vpn';
import { MINIVPN, MinivpnInstance, stop, withMinivpn } from './systems';

/** The p2p server beside the subnet one: its own port and pools (IPv4 and IPv6), the links named mvp0, mvp1... */
const P2P: MinivpnInstance = { port: 1196, pool: '10.9.0.0/24', serverTun: 'mvp%d', clientTun: 'mvpn3' };
/** (Both servers' clients are in client1: their IPv6 tunnel subnets must differ too.) */
const P2P_POOL6 = 'fd6d:7670:6e01::/64';
const TARGET = { subnet: '10.8.0.1', p2p: '10.9.0.1' } as const;

export type Topo = keyof typeof TARGET;

export interface ThroughputResult {
  seconds: number;
  rounds: number;
  /** Mbit/s of every iperf3 run, per topology and direction (client -> server: fwd). */
  mbps: Record<Topo, { fwd: number[]; rev: number[] }>;
  /** p2p / subnet, medians of each direction. */
  ratioFwd: number;
  ratioRev: number;
}

/** iperf3 both ways through each topology, `rounds` times in ABBA order, `seconds` a run. */
export async function compareThroughput(dir: string, pki: string, seconds: number, rounds: number, say: (l: string) => void): Promise<ThroughputResult> {
  const mbps: ThroughputResult['mbps'] = { subnet: { fwd: [], rev: [] }, p2p: { fwd: [], rev: [] } };
  await withLab({ prefix: uniquePrefix('tput'), pair: true }, async (lab: Lab) => {
    const iperfServer = lab.spawn('server', ['iperf3', '-s', '--forceflush']);
    await lab.waitForLine(iperfServer, /Server listening/, 10_000);
    try {
      await withMinivpn(lab, dir, pki, [], () => withMinivpn(lab, dir, pki, [], async () => {
        for (let r = 0; r < rounds; r++) {
          const order: Topo[] = r % 2 === 0 ? ['subnet', 'p2p'] : ['p2p', 'subnet'];
          for (const topo of order) {
            const fwd = await iperf(lab, TARGET[topo], seconds, false);
            const rev = await iperf(lab, TARGET[topo], seconds, true);
            mbps[topo].fwd.push(fwd.mbps);
            mbps[topo].rev.push(rev.mbps);
            say(`throughput round ${r + 1}/${rounds}, ${topo}: ${fwd.mbps.toFixed(0)} Mbit/s client -> server, ${rev.mbps.toFixed(0)} back`);
          }
        }
      }, { inst: P2P, serverFlags: ['--topology', 'p2p', '--pool6', P2P_POOL6] }), { inst: MINIVPN });
    } finally {
      await stop(iperfServer);
    }
  });
  return {
    seconds, rounds, mbps,
    ratioFwd: median(mbps.p2p.fwd) / median(mbps.subnet.fwd),
    ratioRev: median(mbps.p2p.rev) / median(mbps.subnet.rev),
  };
}

/** The markdown table of a comparison, with the bar: p2p at least 0.95 of subnet. */
export function throughputTable(t: ThroughputResult): string {
  const f = (xs: number[]) => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
  const bar = (x: number) => `${x.toFixed(2)} (${x >= 0.95 ? 'met' : 'missed'}: ≥ 0.95)`;
  return [
    `| one client, iperf3 TCP ${t.seconds} s, ${t.rounds} rounds in turns | subnet Mbit/s | p2p Mbit/s | p2p / subnet |`,
    '| --- | ---: | ---: | ---: |',
    `| client -> server | ${f(t.mbps.subnet.fwd)} | ${f(t.mbps.p2p.fwd)} | ${bar(t.ratioFwd)} |`,
    `| server -> client | ${f(t.mbps.subnet.rev)} | ${f(t.mbps.p2p.rev)} | ${bar(t.ratioRev)} |`,
  ].join('\n');
}
