#!/usr/bin/env bash
# lab.sh - a small "internet" on one machine, built from Linux network namespaces.
#
# Each host below is a network namespace named "<prefix>-<host>" (prefix "mv" unless
# LAB_PREFIX says otherwise). A namespace has its own interfaces, addresses, routes,
# iptables rules and sysctls, so the hosts behave like separate machines. Cables are veth
# pairs; the client side is a switch (a Linux bridge) inside "inet".
#
#   client1 eth0 192.0.2.11 ---+
#   client2 eth0 192.0.2.12 ---+   (--clients N: up to 8, 192.0.2.(10+i), default via .1)
#   ...                        |
#                 +------------+---------------------------+
#                 | inet: the "internet", a plain router   |
#                 |   br0 192.0.2.1/24   (switch for the   |
#                 |                       client ports)    |
#                 |   ip_forward=1, NO NAT, and no route   |
#                 |   to 10.9.0.0/24                       |
#                 +-----+-----------------------------+----+
#    to-server 198.51.100.1/24           to-web 203.0.113.1/24
#                       |                             |
#         eth0 198.51.100.2/24            eth0 203.0.113.80/24
#                 +-----+------+               +------+------+
#                 |   server   |               |     web     |
#                 | (the VPN   |               | whatsmyip.js|
#                 |  server)   |               |   port 80   |
#                 +-----+------+               +-------------+
#         eth1 10.9.0.1/24
#                       |      private LAN: reachable only through the VPN
#         eth0 10.9.0.10/24    (the server does not forward until server-init.sh says so)
#                 +-----+------+
#                 |    lan     |
#                 | whatsmyip.js port 80
#                 +------------+
#
# IPv6 on the underlay (up --ipv6: both families; up --ipv6-only: no IPv4 on the underlay,
# for a tunnel that reaches its server over IPv6 only). The documentation prefix 2001:db8::/32:
#   client i eth0 2001:db8:100::(10+i)/64, default via 2001:db8:100::1 (inet br0)
#   inet to-server 2001:db8:200::1/64 --- server eth0 2001:db8:200::2/64
#   inet to-web    2001:db8:300::1/64 --- web eth0 2001:db8:300::80/64 (whatsmyip.js on both families)
# The private LAN behind the server stays IPv4 only (10.9.0.0/24) in every variant.
# Each client also gets a resolv.conf of its own (/etc/netns/<namespace>/resolv.conf, which
# "ip netns exec" mounts over /etc/resolv.conf): the cafe's resolver 2001:db8:100::1 (inet;
# nothing answers there), so a DNS query has somewhere to go, and a VPN client that writes
# /etc/resolv.conf (DNS_APPLY=1) writes that file, never the machine's own.
#
# Usage (as root):
#   lab.sh up [--clients N] [--ipv6 | --ipv6-only]
#                             build the lab (does nothing if it is already up); --ipv6 adds
#                             IPv6 to the underlay, --ipv6-only puts it there instead of IPv4
#   lab.sh up --pair          only client1 and server, joined by one cable (no router, web
#                             or LAN): the benchmark's topology, so that the kernel's work
#                             per packet is one veth hop, not a routed path
#   lab.sh down               remove everything the lab made, even after a crash
#   lab.sh status             hosts, addresses and running services
#   lab.sh exec HOST CMD...   run CMD inside HOST, e.g.: lab.sh exec client1 curl http://203.0.113.80/
#   lab.sh hosts              print the host names
#
# State (pid files, service logs) lives in /run/minivpn-lab/<prefix>/.
# LAB_PREFIX=t1234 gives an independent copy of the lab (the tests use this).
set -euo pipefail

PREFIX=${LAB_PREFIX:-mv}
RUN_DIR=/run/minivpn-lab
STATE=$RUN_DIR/$PREFIX
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_CLIENTS=8

say() { echo "[lab $PREFIX] $*"; }
die() { echo "lab.sh: error: $*" >&2; exit 1; }

ns() { echo "$PREFIX-$1"; }                                  # host name -> namespace name
in_ns() { local host=$1; shift; ip netns exec "$(ns "$host")" "$@"; }

# The namespaces of this lab that exist right now. Only exact host names match, so prefix
# "t1" never touches a lab with prefix "t12" or anything else on the machine.
lab_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' |
    grep -E "^${PREFIX}-(inet|server|web|lan|client[1-9][0-9]*)\$" || true
}

# Host names of this lab in a fixed, readable order.
lab_hosts() {
  local names
  names=$(lab_namespaces | sed "s/^${PREFIX}-//")
  for h in inet server web lan; do grep -qx "$h" <<<"$names" && echo "$h"; done
  grep -E '^client' <<<"$names" | sort -V || true
}

# Is PID a live process? (A zombie has exited already; it only waits to be reaped.)
alive() {
  [[ -r /proc/$1/stat ]] || return 1
  [[ $(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

# One lock per prefix so two "up"/"down" runs on the same lab do not interleave.
# fd 9 holds it; services started later close fd 9 so they do not keep the lock.
take_lock() {
  mkdir -p "$RUN_DIR"
  exec 9>"$RUN_DIR/$PREFIX.lock"
  flock -w 60 9 || say "warning: another lab.sh run holds the lock; going on anyway"
}

# ---------------------------------------------------------------------------------------
# Building blocks

# A namespace that behaves like a fresh, simple host.
make_host() {
  local host=$1 forward=${2:-0} v6=${3:-0}
  ip netns add "$(ns "$host")"
  ip -n "$(ns "$host")" link set lo up
  # Set every sysctl we rely on, so the host machine's own settings never leak in.
  # IPv6 off unless this host is on an IPv6 underlay, and no duplicate-address-detection
  # delays (for interfaces made later too: "default").
  if [[ $v6 == 1 ]]; then
    in_ns "$host" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
      net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
      net.ipv6.conf.all.forwarding="$forward"
  else
    in_ns "$host" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  fi
  # Only inet routes between its interfaces. The server starts as a plain host:
  # server-init.sh turns forwarding on when the VPN starts.
  in_ns "$host" sysctl -qw net.ipv4.ip_forward="$forward"
  # No reverse-path filtering: the lab should never drop a packet silently.
  in_ns "$host" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

# cable HOST_A IF_A HOST_B IF_B: a veth pair with one end in each namespace. It is created
# inside HOST_A with its peer placed straight into HOST_B, so it never exists in the
# machine's own (root) namespace, even if we are killed half way.
cable() {
  ip -n "$(ns "$1")" link add "$2" type veth peer name "$4" netns "$(ns "$3")"
}

# addr HOST IF CIDR: give an interface an address and bring it up.
addr() {
  ip -n "$(ns "$1")" addr add "$3" dev "$2"
  ip -n "$(ns "$1")" link set "$2" up
}

# addr6 HOST IF CIDR: an IPv6 address, usable at once (no duplicate address detection).
addr6() {
  ip -n "$(ns "$1")" -6 addr add "$3" dev "$2" nodad
  ip -n "$(ns "$1")" link set "$2" up
}

# Start whatsmyip.js on HOST, port 80, and wait until it listens (BIND: "::" for both families).
start_web() {
  local host=$1 bind=${2:-0.0.0.0} node log=$STATE/$1.log
  node=${NODE:-$(command -v node)} || die "node not found in PATH (set NODE=/path/to/node)"
  say "starting whatsmyip.js on $host (port 80, log $log)"
  # setsid: its own session, so it outlives this script and the terminal it ran in.
  # ip netns exec and setsid both exec, so $! is the PID of node itself.
  setsid ip netns exec "$(ns "$host")" "$node" "$HERE/whatsmyip.js" --port 80 --host "$bind" \
    </dev/null >>"$log" 2>&1 9>&- &
  echo $! >"$STATE/$host.pid"
  # Up to 30 s: node's first start on a fresh or busy machine can take several seconds.
  for _ in $(seq 600); do
    grep -q 'listening' "$log" 2>/dev/null && return 0
    alive "$(cat "$STATE/$host.pid")" || break
    sleep 0.05
  done
  die "whatsmyip.js on $host did not start; its log says: $(tail -3 "$log" 2>/dev/null)"
}

# ---------------------------------------------------------------------------------------
# Tear down: works from any state (complete, half-built, crashed, killed).
teardown() {
  local pids=() f pid host n
  # 1. The services we started, by the PIDs we saved. A PID is only trusted while that
  #    process is still inside our namespace (after a reboot the number may be reused).
  for f in "$STATE"/*.pid; do
    [[ -f $f ]] || continue
    pid=$(cat "$f"); host=$(basename "$f" .pid)
    if [[ $pid =~ ^[0-9]+$ ]] && ip netns identify "$pid" 2>/dev/null | grep -qx "$(ns "$host")"; then
      say "stopping $host service (pid $pid)"
      pids+=("$pid")
    fi
  done
  # 2. Anything else still running inside our namespaces (a VPN, tcpdump, a shell...).
  for n in $(lab_namespaces); do
    for pid in $(ip netns pids "$n" 2>/dev/null); do
      [[ " ${pids[*]} " == *" $pid "* ]] || { say "stopping pid $pid in $n"; pids+=("$pid"); }
    done
  done
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 40); do               # up to 2 s to exit cleanly
      local left=0
      for pid in "${pids[@]}"; do alive "$pid" && left=1; done
      [[ $left -eq 0 ]] && break
      sleep 0.05
    done
    for pid in "${pids[@]}"; do
      alive "$pid" && { say "pid $pid ignored SIGTERM; sending SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
    done
    for _ in $(seq 100); do              # and up to 5 s for the kernel to finish them off
      local left=0
      for pid in "${pids[@]}"; do alive "$pid" && left=1; done
      [[ $left -eq 0 ]] && break
      sleep 0.05
    done
  fi
  # 3. The namespaces. Deleting one deletes its interfaces; a veth dies with either end.
  for n in $(lab_namespaces); do
    say "deleting namespace $n"
    ip netns del "$n" 2>/dev/null || true
  done
  # 4. The clients' own resolv.conf (IPv6 underlays), also one a crash left without its namespace.
  for n in /etc/netns/"$PREFIX"-client*; do
    [[ -d $n && $(basename "$n") =~ ^${PREFIX}-client[1-9][0-9]*$ ]] && rm -rf "$n"
  done
  rm -rf "$STATE"
}

# Is the lab completely up: every namespace there, both web services alive?
complete() {
  [[ -f $STATE/ready ]] || return 1
  local h want
  if [[ $(cat "$STATE/topology" 2>/dev/null) == pair ]]; then
    for h in client1 server; do [[ -e /run/netns/$(ns "$h") ]] || return 1; done
    return 0
  fi
  want=$(cat "$STATE/clients" 2>/dev/null) || return 1
  for h in inet server web lan $(seq -f 'client%g' 1 "$want"); do
    [[ -e /run/netns/$(ns "$h") ]] || return 1
  done
  for h in web lan; do alive "$(cat "$STATE/$h.pid" 2>/dev/null || echo x)" || return 1; done
}

# ---------------------------------------------------------------------------------------
# Commands

cmd_up() {
  local clients=1 i topology=full underlay=ipv4
  while [[ $# -gt 0 ]]; do
    case $1 in
      --clients) [[ $# -ge 2 ]] || die "--clients needs a number"; clients=$2; shift 2 ;;
      --clients=*) clients=${1#*=}; shift ;;
      --pair) topology=pair; shift ;;
      --ipv6) underlay=dual; shift ;;
      --ipv6-only) underlay=ipv6; shift ;;
      *) die "up: unknown option '$1' (usage: lab.sh up [--clients N] [--ipv6 | --ipv6-only] | up --pair)" ;;
    esac
  done
  if ! [[ $clients =~ ^[1-9][0-9]*$ ]] || ((clients > MAX_CLIENTS)); then
    die "--clients must be a number from 1 to $MAX_CLIENTS (got '$clients')"
  fi
  [[ $topology == pair && $clients != 1 ]] && die "--pair has exactly one client (drop --clients)"
  [[ $topology == pair && $underlay != ipv4 ]] && die "--pair is IPv4 only (drop --ipv6 / --ipv6-only)"

  take_lock
  if complete; then
    local have have6
    have=$(cat "$STATE/topology" 2>/dev/null || echo full)
    have6=$(cat "$STATE/underlay" 2>/dev/null || echo ipv4)
    say "already up ($have, $(cat "$STATE/clients") client(s), underlay $have6); nothing to do (lab.sh down to rebuild)"
    [[ $have == "$topology" && $(cat "$STATE/clients") == "$clients" && $have6 == "$underlay" ]] ||
      say "note: you asked for a different lab ($topology, $clients client(s), underlay $underlay); run 'lab.sh down' first to change it"
    return 0
  fi
  if [[ -n $(lab_namespaces) || -d $STATE ]]; then
    say "found a half-built lab (crashed or interrupted); cleaning it first"
    teardown
  fi
  mkdir -p "$STATE"
  echo "$clients" >"$STATE/clients"
  echo "$topology" >"$STATE/topology"
  echo "$underlay" >"$STATE/underlay"

  if [[ $topology == pair ]]; then
    up_pair
    return 0
  fi

  local v4=1 v6=0
  [[ $underlay == ipv6 ]] && v4=0
  [[ $underlay != ipv4 ]] && v6=1
  nets() { if ((v4 && v6)); then echo "$1 and $2"; elif ((v4)); then echo "$1"; else echo "$2"; fi; }
  say "creating hosts: inet server web lan and $clients client(s) (underlay: $underlay)"
  make_host inet 1 "$v6"
  for h in server web; do make_host "$h" 0 "$v6"; done
  make_host lan 0
  for ((i = 1; i <= clients; i++)); do make_host "client$i" 0 "$v6"; done

  say "wiring the client side: switch br0 in inet, $(nets 192.0.2.0/24 2001:db8:100::/64)"
  ip -n "$(ns inet)" link add br0 type bridge
  ((v4)) && addr inet br0 192.0.2.1/24
  ((v6)) && addr6 inet br0 2001:db8:100::1/64
  for ((i = 1; i <= clients; i++)); do
    cable inet "to-client$i" "client$i" eth0
    ip -n "$(ns inet)" link set "to-client$i" master br0 up
    if ((v4)); then
      addr "client$i" eth0 "192.0.2.$((10 + i))/24"
      ip -n "$(ns "client$i")" route add default via 192.0.2.1
    fi
    if ((v6)); then
      addr6 "client$i" eth0 "2001:db8:100::$((10 + i))/64"
      ip -n "$(ns "client$i")" -6 route add default via 2001:db8:100::1
      mkdir -p "/etc/netns/$(ns "client$i")"
      printf 'nameserver 2001:db8:100::1\noptions timeout:1 attempts:1\n' >"/etc/netns/$(ns "client$i")/resolv.conf"
    fi
  done

  say "wiring the server side: $(nets 198.51.100.0/24 2001:db8:200::/64)"
  cable inet to-server server eth0
  if ((v4)); then
    addr inet to-server 198.51.100.1/24
    addr server eth0 198.51.100.2/24
    ip -n "$(ns server)" route add default via 198.51.100.1
  fi
  if ((v6)); then
    addr6 inet to-server 2001:db8:200::1/64
    addr6 server eth0 2001:db8:200::2/64
    ip -n "$(ns server)" -6 route add default via 2001:db8:200::1
  fi

  say "wiring the web side: $(nets 203.0.113.0/24 2001:db8:300::/64)"
  cable inet to-web web eth0
  if ((v4)); then
    addr inet to-web 203.0.113.1/24
    addr web eth0 203.0.113.80/24
    ip -n "$(ns web)" route add default via 203.0.113.1
  fi
  if ((v6)); then
    addr6 inet to-web 2001:db8:300::1/64
    addr6 web eth0 2001:db8:300::80/64
    ip -n "$(ns web)" -6 route add default via 2001:db8:300::1
  fi

  say "wiring the private LAN behind the server: 10.9.0.0/24"
  cable server eth1 lan eth0
  addr server eth1 10.9.0.1/24
  addr lan eth0 10.9.0.10/24
  ip -n "$(ns lan)" route add default via 10.9.0.1

  if ((v6)); then start_web web ::; else start_web web; fi
  start_web lan

  touch "$STATE/ready"
  if ((v4)); then say "up: $clients client(s); try: $0 exec client1 curl -s http://203.0.113.80/"
  else say "up: $clients client(s), IPv6-only underlay; try: $0 exec client1 curl -s http://[2001:db8:300::80]/"; fi
}

# The pair: one cable, each end on its own subnet with a route to the other one "on link"
# (the addresses stay those of the full lab, so every command works on both).
#
#   client1 eth0 192.0.2.11/24 ---------- eth0 198.51.100.2/24 server
up_pair() {
  say "creating hosts: client1 server (pair: one cable, no router)"
  make_host client1 0
  make_host server 0
  cable client1 eth0 server eth0
  addr client1 eth0 192.0.2.11/24
  addr server eth0 198.51.100.2/24
  ip -n "$(ns client1)" route add 198.51.100.0/24 dev eth0
  ip -n "$(ns server)" route add 192.0.2.0/24 dev eth0
  touch "$STATE/ready"
  say "up (pair); try: $0 exec client1 ping -c 1 198.51.100.2"
}

cmd_down() {
  take_lock
  if [[ -z $(lab_namespaces) && ! -d $STATE ]] && ! compgen -G "/etc/netns/$PREFIX-client*" >/dev/null; then
    say "nothing to remove"
  else
    teardown
    say "down"
  fi
  rm -f "$RUN_DIR/$PREFIX.lock"
}

cmd_status() {
  local hosts h pid f
  hosts=$(lab_hosts)
  if [[ -z $hosts ]]; then
    say "not up"
    return 1
  fi
  if complete; then say "up ($(cat "$STATE/topology" 2>/dev/null || echo full)), $(cat "$STATE/clients") client(s), underlay $(cat "$STATE/underlay" 2>/dev/null || echo ipv4), state in $STATE"
  else say "INCOMPLETE (crashed or still building?): run 'lab.sh down' then 'lab.sh up'"; fi
  printf '%-9s %-16s %s\n' HOST NAMESPACE ADDRESSES
  for h in $hosts; do
    printf '%-9s %-16s %s\n' "$h" "$(ns "$h")" \
      "$(ip -n "$(ns "$h")" -o addr show scope global | awk '{printf "%s %s  ", $2, $4}')"
  done
  echo "processes:"
  for h in $hosts; do
    for pid in $(ip netns pids "$(ns "$h")" 2>/dev/null); do
      printf '  %-9s pid %-7s %s\n' "$h" "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
    done
  done
  for f in "$STATE"/*.pid; do
    [[ -f $f ]] || continue
    alive "$(cat "$f")" || echo "  WARNING: $(basename "$f" .pid) service (pid $(cat "$f")) is not running"
  done
  return 0
}

cmd_exec() {
  [[ $# -ge 2 ]] || die "usage: lab.sh exec HOST CMD..."
  local host=$1; shift
  [[ -e /run/netns/$(ns "$host") ]] || die "no host '$host' in lab '$PREFIX' (lab.sh hosts lists them)"
  exec ip netns exec "$(ns "$host")" "$@"
}

cmd_hosts() {
  local hosts
  hosts=$(lab_hosts)
  [[ -n $hosts ]] || die "lab '$PREFIX' is not up"
  echo "$hosts"
}

usage() {
  sed -n '/^# Usage/,/^# LAB_PREFIX/p' "$0" | sed 's/^# \{0,1\}//'
}

# ---------------------------------------------------------------------------------------
[[ $PREFIX =~ ^[A-Za-z0-9]{1,12}$ ]] || die "LAB_PREFIX must be 1-12 letters or digits (got '$PREFIX')"
cmd=${1:-help}
[[ $# -gt 0 ]] && shift
if [[ $cmd != help && $cmd != -h && $cmd != --help && $(id -u) -ne 0 ]]; then
  die "must run as root (network namespaces need it)"
fi
case $cmd in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  exec) cmd_exec "$@" ;;
  hosts) cmd_hosts ;;
  help | -h | --help) usage ;;
  *) usage >&2; die "unknown command '$cmd'" ;;
esac
