// Floods from spoofed sources at line rate for the integration tests: trafgen (netsniff-ng)
// on inet's cable to the server, with a configuration from src/tools/flood.ts: every frame's
// source, port and forged cookie random (a pcap replays the same few thousand), and at least
// tcpreplay's rate (these tests reported 32-52k/s with it; one trafgen process 53-296k/s).
import fs from 'node:fs';
import path from 'node:path';
import { ADDR, Lab } from '../../src/lab/topology';
import { PcapKind, RecordShape, trafgenConfig } from '../../src/tools/flood';
import { exited } from './vpn';

/** Spoofed sources: parts of the documentation ranges no lab host uses; inet drops answers to them. */
export const SPOOFED = ['192.0.2.128/25', '203.0.113.128/25'];

/**
 * Writes a trafgen configuration for datagrams of `kinds` (repeat one to weight it) from random
 * addresses of SPOOFED and random ports to the server's port 1194, and makes inet drop the
 * answers to those addresses. Returns the file.
 */
export async function spoofConfig(lab: Lab, dir: string, kinds: PcapKind[], shape: { hello?: Buffer; record?: RecordShape } = {}): Promise<string> {
  const mac = async (host: string, dev: string) => (await lab.exec(host, ['cat', `/sys/class/net/${dev}/address`])).stdout.trim();
  const file = path.join(dir, `spoofed-${[...new Set(kinds)].join('-')}.trafgen`);
  fs.writeFileSync(file, trafgenConfig({ to: { host: ADDR.server, port: 1194 }, sources: SPOOFED, kinds, ...shape,
    dstMac: await mac('server', 'eth0'), srcMac: await mac('inet', 'to-server') }));
  // Answers to the spoofed sources end here, silently (no ARP for addresses nobody has).
  for (const net of SPOOFED) await lab.exec('inet', ['ip', 'route', 'replace', 'blackhole', net]);
  return file;
}

export interface FloodResult { packets: number; pps: number; seconds: number }

/**
 * trafgen of `file` from inet into the server's cable for `seconds` (timeout(1) ends it, and
 * the process is killed by its PID if it outlives that), one process, at `pps` (0: as fast as
 * it goes). Resolves when it has ended, with what it sent.
 */
export async function trafgenFlood(lab: Lab, file: string, seconds: number, pps = 0): Promise<FloodResult> {
  const p = lab.spawn('inet', ['timeout', '-s', 'INT', String(seconds), 'trafgen', '-i', file, '-o', 'to-server',
    '--cpus', '1', '--no-sock-mem', ...(pps > 0 ? ['--rate', `${pps}pps`] : [])]);
  try {
    const code = await exited(p, seconds * 1000 + 30_000);
    const out = lab.output(p);
    const m = /(\d+) packets outgoing/.exec(out);
    // (timeout exits 124 when it had to stop trafgen: the normal end here.)
    if ((code !== 0 && code !== 124) || !m) throw new Error(`trafgen failed (exit ${code}): ${out.slice(-1000)}`);
    const packets = Number(m[1]);
    return { packets, pps: Math.round(packets / seconds), seconds };
  } finally {
    if (p.exitCode === null && p.signalCode === null && p.pid !== undefined) process.kill(p.pid, 'SIGKILL');
  }
}
