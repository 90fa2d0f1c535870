// The client's checks of what the server pushes, before anything is applied. A server (or
// whoever holds its key) must not be able to cut the client off its own network: a route
// that covers the server's own underlay address swallows the tunnel's own datagrams (unless
// it is the full tunnel, for which client-init.sh keeps a host route to the server); a route
// or a tunnel subnet that overlaps a LAN the client is on takes that LAN away from it. The
// user's own controls come first, as in OpenVPN: --route-nopull drops pushed routes and the
// redirect, --pull-filter accepts, ignores or rejects pushed items by their text.
import type { PullAction, PullFilter } from '../config';
import { ConfigMsg } from '../wire/control';
import { Cidr, formatCidr, ipv4ToInt, inCidr, parseCidr } from '../wire/ip';

/** At most this many pushed routes and DNS servers are taken (the server's own limits). */
export const MAX_PULLED_ROUTES = 64;
export const MAX_PULLED_DNS = 4;


export interface LocalView {
  /** The server's underlay address, which the tunnel's datagrams go to. */
  serverIp: string;
  /** Networks of this host's interfaces (the tunnel's own excluded). */
  lans: Cidr[];
}

export interface PullOptions { routeNopull: boolean; pullFilters: PullFilter[] }

export type Checked = { ok: true; config: ConfigMsg; ignored: string[] } | { ok: false; reason: string };

/**
 * The pushed config as the client will apply it (filtered), or why it refuses it. Pushed items
 * are named as OpenVPN names them, so filters read the same: `route 10.9.0.0/24`,
 * `redirect-gateway`, `dns 10.8.0.1`, `ifconfig 10.8.0.2/24`, `mtu 1400`.
 */
export function checkPushed(c: ConfigMsg, local: LocalView, opts: PullOptions): Checked {
  const ignored: string[] = [];
  const decide = (item: string): PullAction => {
    for (const f of opts.pullFilters) if (item.startsWith(f.text)) return f.action;
    return 'accept';
  };
  // ifconfig and mtu cannot be ignored (the tunnel needs them), only rejected.
  for (const item of [`ifconfig ${c.address}/${c.prefix}`, `mtu ${c.mtu}`]) {
    if (decide(item) === 'reject') return { ok: false, reason: `"${item}" is rejected by --pull-filter` };
  }
  const take = (item: string): boolean => {
    const a = decide(item);
    if (a === 'reject') throw new Refused(`"${item}" is rejected by --pull-filter`);
    if (a === 'ignore') ignored.push(item);
    return a === 'accept';
  };
  let routes: string[];
  let redirectGateway: boolean;
  let dns: string[];
  try {
    routes = opts.routeNopull ? [] : c.routes.filter((r) => take(`route ${r}`));
    redirectGateway = !opts.routeNopull && c.redirectGateway && take('redirect-gateway');
    dns = c.dns.filter((d) => take(`dns ${d}`));
  } catch (err) {
    if (err instanceof Refused) return { ok: false, reason: err.message };
    throw err;
  }
  if (opts.routeNopull && (c.routes.length || c.redirectGateway)) ignored.push('routes (--route-nopull)');
  if (routes.length > MAX_PULLED_ROUTES) return { ok: false, reason: `routes: ${routes.length} pushed, more than ${MAX_PULLED_ROUTES}` };
  if (dns.length > MAX_PULLED_DNS) return { ok: false, reason: `dns: ${dns.length} pushed, more than ${MAX_PULLED_DNS}` };

  const server = ipv4ToInt(local.serverIp);
  const subnet = parseCidr(`${c.address}/${c.prefix}`);
  if (inCidr(server, subnet)) return { ok: false, reason: `address: the tunnel subnet ${formatCidr(subnet)} contains the server's own address ${local.serverIp}` };
  const lan = overlapping(subnet, local.lans);
  if (lan) return { ok: false, reason: `address: the tunnel subnet ${formatCidr(subnet)} overlaps this host's network ${formatCidr(lan)}` };
  for (const r of routes) {
    const route = parseCidr(r);
    if (inCidr(server, route)) return { ok: false, reason: `routes: ${r} covers the server's own address ${local.serverIp} (the tunnel would carry itself)` };
    const l = overlapping(route, local.lans);
    if (l) return { ok: false, reason: `routes: ${r} overlaps this host's network ${formatCidr(l)}` };
  }
  return { ok: true, config: { ...c, routes, redirectGateway, dns }, ignored };
}

class Refused extends Error {}

/** A LAN that shares addresses with `c`, if any (two CIDRs overlap when one contains the other's network). */
function overlapping(c: Cidr, lans: Cidr[]): Cidr | null {
  for (const l of lans) {
    if (inCidr(l.network, c) || inCidr(c.network, l)) return l;
  }
  return null;
}
