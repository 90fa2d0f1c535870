// Flags and config files for the server and the client, validated.
//
// Both programs take long flags (`--listen 0.0.0.0:1194`, `--listen=0.0.0.0:1194`, booleans as
// `--client-to-client` / `--no-client-to-client`) and an optional JSON file (`--config FILE`).
// Precedence, lowest first: built-in defaults < environment (MINIVPN_LOG) < file < flags.
//
// Every field is described once, in a table (SERVER_FIELDS / CLIENT_FIELDS): its JSON key, its
// flag, how to check a value, and its help text. The parser, the error messages and usage()
// are all driven by that table, so they cannot drift apart. Errors name the field and say what
// was expected, e.g.
//   config: "pool": expected an IPv4 CIDR like 10.8.0.0/24, got "10.8.0/24" (flag --pool)
// See docs/CONFIG.md for every field.
//
// The parts: types.ts (the returned shapes), fields.ts (the option tables and usage()),
// checks.ts (value checks), parse.ts (merging and errors), mtu.ts (MTU arithmetic).

export type { ClientConfig, DevType, HostPort, LogLevel, PullAction, PullFilter, ServerConfig, Topology } from './types';
export { computeTunnelMtu, ETHER_HEADER } from './mtu';
export { CLIENT_NAME_RE, clientNameProblem, isHostname } from './checks';
export { MAX_PUSHED_DNS, MAX_PUSHED_ROUTES, usage } from './fields';
export { ConfigError, HelpRequested, listensOnIpv6Only, parseClientArgs, parseServerArgs, splitProgram } from './parse';
