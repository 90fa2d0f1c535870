// The client's checks of what the server pushes, before anything is applied. A server (or
// whoever holds its key) must not be able to cut the client off its own network: a route
// that covers the server's own underlay address swallows the tunnel's own datagrams (unless
// it is the full tunnel, for which client-init.sh keeps a host route to the server); a route
// or a tunnel subnet that overlaps a LAN the client is on takes that LAN away from it. The
// user's own controls come first, as in OpenVPN: --route-nopull drops pushed routes and the
// redirect, --pull-filter accepts, ignores or rejects pushed items by their text.
import type { PullAction, PullFilter } from '../config';
import { ConfigMsg } from '../wire/control';
import { Cidr, formatCidr, ipv4ToInt, inCidr, isIpv4, parseCidr } from '../wire/ip';
import { Cidr6, formatCidr6, inCidr6, ipv6ToBytes, isIpv6, overlaps6, parseCidr6 } from '../wire/ip6';

/** At most this many pushed routes and DNS servers are taken (the server's own limits). */
export const MAX_PULLED_ROUTES = 64;
export const MAX_PULLED_DNS = 4;


export interface LocalView {
  /** The server's underlay address, which the tunnel's datagrams go to. */
  serverIp: string;
  /** Networks of this host's interfaces (the tunnel's own excluded). */
  lans: Cidr[];
  /** IPv6 networks of this host's interfaces (link-local and the tunnel's own excluded). */
  lans6?: Cidr6[];
}

export interface PullOptions { routeNopull: boolean; pullFilters: PullFilter[] }

export type Checked = { ok: true; config: ConfigMsg; ignored: string[] } | { ok: false; reason: string };

/**
 * The pushed config as the client will apply it (filtered), or why it refuses it. Pushed items
 * are named as OpenVPN names them, so filters read the same: `route 10.9.0.0/24`,
 * `redirect-gateway`, `dns 10.8.0.1`, `ifconfig 10.8.0.2/24`, `mtu 1400`; for IPv6
 * `ifconfig-ipv6 fd6d:7670:6e00::2/64`, `route-ipv6 2001:db8:50::/64`, `redirect-gateway ipv6`,
 * `dns6 fd6d:7670:6e00::1`. Ignoring `ifconfig-ipv6` drops all of IPv6 (an IPv4-only tunnel).
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
  let v6: Partial<ConfigMsg>;
  try {
    v6 = pulled6(c, opts, decide, take, ignored);
  } catch (err) {
    if (err instanceof Refused) return { ok: false, reason: err.message };
    throw err;
  }
  if (routes.length > MAX_PULLED_ROUTES) return { ok: false, reason: `routes: ${routes.length} pushed, more than ${MAX_PULLED_ROUTES}` };
  if (dns.length > MAX_PULLED_DNS) return { ok: false, reason: `dns: ${dns.length} pushed, more than ${MAX_PULLED_DNS}` };

  // (An IPv6 underlay: no IPv4 route can take the server's address away.)
  const server = isIpv4(local.serverIp) ? ipv4ToInt(local.serverIp) : null;
  const subnet = parseCidr(`${c.address}/${c.prefix}`);
  if (server !== null && inCidr(server, subnet)) return { ok: false, reason: `address: the tunnel subnet ${formatCidr(subnet)} contains the server's own address ${local.serverIp}` };
  const lan = overlapping(subnet, local.lans);
  if (lan) return { ok: false, reason: `address: the tunnel subnet ${formatCidr(subnet)} overlaps this host's network ${formatCidr(lan)}` };
  for (const r of routes) {
    const route = parseCidr(r);
    if (server !== null && inCidr(server, route)) return { ok: false, reason: `routes: ${r} covers the server's own address ${local.serverIp} (the tunnel would carry itself)` };
    const l = overlapping(route, local.lans);
    if (l) return { ok: false, reason: `routes: ${r} overlaps this host's network ${formatCidr(l)}` };
  }
  const why6 = v6.address6 ? conflicts6(v6, local) : null;
  if (why6) return { ok: false, reason: why6 };
  const base: ConfigMsg = { ...c, routes, redirectGateway, dns };
  for (const k of ['address6', 'prefix6', 'gateway6', 'routes6', 'redirectGateway6', 'dns6'] as const) delete base[k];
  return { ok: true, config: { ...base, ...v6 }, ignored };
}

/** The IPv6 part of a pushed config as the client takes it (filtered); throws Refused. */
function pulled6(c: ConfigMsg, opts: PullOptions, decide: (item: string) => PullAction,
  take: (item: string) => boolean, ignored: string[]): Partial<ConfigMsg> {
  if (!c.address6) return {};
  const ifc = `ifconfig-ipv6 ${c.address6}/${c.prefix6}`;
  const a = decide(ifc);
  if (a === 'reject') throw new Refused(`"${ifc}" is rejected by --pull-filter`);
  if (a === 'ignore') { ignored.push(ifc); return {}; }
  const routes6 = opts.routeNopull ? [] : (c.routes6 ?? []).filter((r) => take(`route-ipv6 ${r}`));
  const redirectGateway6 = !opts.routeNopull && c.redirectGateway6 === true && take('redirect-gateway ipv6');
  const dns6 = (c.dns6 ?? []).filter((d) => take(`dns6 ${d}`));
  if (routes6.length > MAX_PULLED_ROUTES) throw new Refused(`routes6: ${routes6.length} pushed, more than ${MAX_PULLED_ROUTES}`);
  if (dns6.length > MAX_PULLED_DNS) throw new Refused(`dns6: ${dns6.length} pushed, more than ${MAX_PULLED_DNS}`);
  return { address6: c.address6, prefix6: c.prefix6, gateway6: c.gateway6, routes6, redirectGateway6, dns6 };
}

/** Why the IPv6 subnet or routes would cut the client off its own networks or the server, or null. */
function conflicts6(c: Partial<ConfigMsg>, local: LocalView): string | null {
  const server = isIpv6(local.serverIp) ? ipv6ToBytes(local.serverIp) : null;
  const lans = local.lans6 ?? [];
  const subnet = parseCidr6(`${c.address6}/${c.prefix6}`);
  const clash = (n: Cidr6) => lans.find((l) => overlaps6(l, n));
  if (server && inCidr6(server, 0, subnet)) return `address6: the tunnel subnet ${formatCidr6(subnet)} contains the server's own address ${local.serverIp}`;
  let l = clash(subnet);
  if (l) return `address6: the tunnel subnet ${formatCidr6(subnet)} overlaps this host's network ${formatCidr6(l)}`;
  for (const r of c.routes6 ?? []) {
    const route = parseCidr6(r);
    if (server && inCidr6(server, 0, route)) return `routes6: ${r} covers the server's own address ${local.serverIp} (the tunnel would carry itself)`;
    if ((l = clash(route))) return `routes6: ${r} overlaps this host's network ${formatCidr6(l)}`;
  }
  return null;
}

class Refused extends Error {}

/** A LAN that shares addresses with `c`, if any (two CIDRs overlap when one contains the other's network). */
function overlapping(c: Cidr, lans: Cidr[]): Cidr | null {
  for (const l of lans) {
    if (inCidr(l.network, c) || inCidr(c.network, l)) return l;
  }
  return null;
}
