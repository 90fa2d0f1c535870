// The shapes parseServerArgs / parseClientArgs return (src/config/parse.ts).

export type PullAction = 'accept' | 'ignore' | 'reject';
/** `--pull-filter ACTION:TEXT`: the first filter whose TEXT starts a pushed item decides it. */
export interface PullFilter { action: PullAction; text: string }

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export interface HostPort { host: string; port: number }

export type DevType = 'tun' | 'tap';

/** subnet: one shared TUN, clients routed by the server; p2p: one TUN (a point-to-point link) per client. */
export const TOPOLOGIES = ['subnet', 'p2p'] as const;
export type Topology = typeof TOPOLOGIES[number];

export interface ServerConfig {
  listen: HostPort;
  topology: Topology;
  /**
   * The program after "--" (argv: PROG ARGS...), run per link when it comes up and goes down
   * (p2p topology); empty for none.
   */
  linkProgram: string[];
  /** tun: IP packets; tap: Ethernet frames (layer 2). */
  dev: DevType;
  /** TAP: source MACs per client at most (the first ones it is seen with). */
  macLimit: number;
  /** TAP: broadcast/multicast frames per second per client (bursts of twice that). */
  broadcastPerSec: number;
  /** TAP: the Linux bridge the TAP (p2p: every client's TAP) joins (null: none). */
  bridge: string | null;
  /** TAP: clients take their address by DHCP (pushed as `dhcp`). */
  dhcp: boolean;
  pool: { network: string; prefix: number };
  /** The IPv6 pool (canonical CIDR), and whether there is IPv6 in the tunnel at all. */
  pool6: string;
  ipv6: boolean;
  tunName: string;
  underlayMtu: number;
  mtu: number;
  ca: string; cert: string; key: string;
  authorizedDir: string;
  leasesFile: string;
  clientToClient: boolean;
  routes: string[];
  redirectGateway: boolean;
  dns: string[];
  routes6: string[];
  dns6: string[];
  natOut: string | null;
  mssClamp: boolean;
  udpGso: boolean;
  tunGro: boolean;
  handoffYield: boolean;
  keepaliveSec: number;
  timeoutSec: number;
  onConnect: string | null;
  onDisconnect: string | null;
  /** Roaming: sessions follow their client's next authenticated, fresh record. */
  float: boolean;
  onMove: string | null;
  moveTrialsPerSec: number;
  /** Admission: DTLS handshakes in progress per source at most. */
  handshakesPerSource: number;
  statusSocket: string;
  plaintext: boolean;
  keylog: string | null;
  user: string | null;
  group: string | null;
  logLevel: LogLevel;
}

export interface ClientConfig {
  /** The program after "--" (PROG ARGS...), run when the tunnel comes up and goes down; empty for none. */
  linkProgram: string[];
  /** Pushed routes and redirect ignored (--route-nopull); pushed items filtered (--pull-filter). */
  routeNopull: boolean;
  pullFilters: PullFilter[];
  /** Full tunnel, server without IPv6: leave IPv6 on the other interfaces unblocked. */
  allowIpv6Leak: boolean;
  server: HostPort;
  serverName: string;
  ca: string; cert: string; key: string;   // cert/key are '' in plaintext mode when neither --name nor a path was given
  name: string | null;
  tunName: string;
  dev: DevType;
  plaintext: boolean;
  plaintextCn: string | null;
  keylog: string | null;
  reconnectMinSec: number;
  reconnectMaxSec: number;
  stateDir: string;
  udpGso: boolean;
  tunGro: boolean;
  handoffYield: boolean;
  logLevel: LogLevel;
}
