#!/usr/bin/env bash
# server-init.sh up|down|link-up - what the VPN server's machine needs around the tunnel.
#
# The VPN server program opens the TUN device, then runs "server-init.sh up"; when it
# stops it runs "server-init.sh down". Every action is printed as one line, so the VPN log
# shows exactly what was changed on the machine.
#
# With TOPOLOGY=p2p (a TUN per client, each a point-to-point link) "up" and "down" cover the
# links as a group: TUN is then the template's stem with "+" (mvp+ for mvp%d), iptables'
# wildcard for every link, and there is no shared TUN to configure. Each client's TUN is
# configured by "link-up" when the client connects (LINKS, ADDR, MTU, ADDR6); it needs no
# "down": the kernel removes the interface, its addresses and routes when the VPN closes it.
#
# Configured by environment variables:
#   TUN        the TUN device, e.g. tun0 (must exist already: the VPN creates it)
#   TOPOLOGY   subnet (default) or p2p (see above)
#   ADDR       the server's tunnel address with prefix length, e.g. 10.8.0.1/24
#              (link-up: the server's address alone, e.g. 10.8.0.1)
#   LINKS      link-up: the links to configure, one a line: "DEV PEER [PEER6]", e.g.
#              "mvp0 10.8.0.2 fd6d:7670:6e00::2": the device and the client's addresses
#   MTU        MTU of the TUN device, e.g. 1400 (empty: leave it)
#   POOL       the clients' address pool, e.g. 10.8.0.0/24 (needed for NAT)
#   NAT_OUT    interface to masquerade out of, e.g. eth0 (empty: no NAT); IPv4 and IPv6 (NAT66)
#   MSS_CLAMP  1 (default): clamp TCP MSS on the tunnel; 0: don't
#   CLIENT_TO_CLIENT  with TOPOLOGY=p2p: 1 (default) the kernel forwards between the clients'
#              links; 0: a rule drops what would go from one link to another
#   ADDR6      the server's tunnel IPv6 address, e.g. fd6d:7670:6e00::1/64 (empty: no IPv6;
#              link-up: without the prefix length)
#   POOL6      the clients' IPv6 pool, e.g. fd6d:7670:6e00::/64 (needed for NAT66)
#   BRIDGE     a Linux bridge for a TAP (--dev tap --bridge br0; empty: none): the TAP becomes
#              one of its ports, and ADDR/ADDR6 go on the bridge. A bridge that does not exist
#              is created (with the alias "minivpn:$TUN", by which down finds and removes it);
#              one that exists (e.g. with a LAN port) is used as it is and left at down.
#   VPN_PID    with TOPOLOGY=p2p: the VPN server's process; up raises its open-file limit
#              (soft to hard: a file descriptor per client) with prlimit
#   IPTABLES   the iptables command (default: iptables; Debian's is the nftables backend)
#   IP6TABLES  the ip6tables command (default: ip6tables)
#
# up:   MTU, address, link up; IP forwarding on; NAT and MSS clamping rules; with ADDR6 the
#       same for IPv6 (without NAT_OUT, routed: the other side needs a route to POOL6).
# down: removes the iptables and ip6tables rules that up added, and nothing else. Each rule carries the
#       comment "minivpn:$TUN", so down finds exactly those (and never another tunnel's).
#       The TUN device and its address vanish by themselves when the VPN closes it.
# link-up: for each link of LINKS: reverse-path filtering on; MTU, link up; ADDR with the
#       client's address as the other end (a /32 pair: every link shares the server's address);
#       with ADDR6 the same for IPv6. One "ip -batch" for all of them: a thousand clients that
#       connect at once cost a few runs of this script, not thousands of "ip" processes. Prints
#       "link-up done for DEV" or "link-up failed for DEV: WHY" for each (one failing link
#       does not stop the others). With BRIDGE (each client's TAP, --dev tap): MTU, the TAP a
#       port of the bridge, link up; no address, no rp_filter (the bridge has the address).
# All are idempotent: running them twice does no harm.
#
# Anti-spoofing with TOPOLOGY=p2p is the kernel's: strict reverse-path filtering (rp_filter=1
# on each link) drops a packet that arrives on a link its source address is not routed to,
# so a client can only send from its own address (or from networks routed to its link, e.g.
# by OSPF). For IPv6, which has no rp_filter, the rpfilter match in the raw table does it.
set -euo pipefail

# say, die and run (print each command, then run it): scripts/common.sh
. "$(dirname "$0")/common.sh"

ACTION=${1:-}
TUN=${TUN:-}
TOPOLOGY=${TOPOLOGY:-subnet}
ADDR=${ADDR:-}
PEER=${PEER:-}
PEER6=${PEER6:-}
MTU=${MTU:-}
POOL=${POOL:-}
NAT_OUT=${NAT_OUT:-}
MSS_CLAMP=${MSS_CLAMP:-1}
CLIENT_TO_CLIENT=${CLIENT_TO_CLIENT:-1}
IPT=${IPTABLES:-iptables}
IP6T=${IP6TABLES:-ip6tables}
ADDR6=${ADDR6:-}
POOL6=${POOL6:-}
BRIDGE=${BRIDGE:-}

IFNAME_RE='^[A-Za-z0-9_.-]{1,15}$'

[[ $ACTION == up || $ACTION == down || $ACTION == link-up ]] || die "usage: TUN=tun0 ADDR=10.8.0.1/24 ... $0 up|down|link-up"
[[ $TOPOLOGY == subnet || $TOPOLOGY == p2p ]] || die "TOPOLOGY must be subnet or p2p (got '$TOPOLOGY')"
if [[ $ACTION == link-up ]]; then
  : # (LINKS names the devices)
elif [[ $TOPOLOGY == p2p ]]; then
  [[ $TUN =~ ^[A-Za-z0-9_.-]{1,14}\+$ ]] || die "TUN must be the links' wildcard with TOPOLOGY=p2p, e.g. mvp+ (got '$TUN')"
else
  [[ $TUN =~ $IFNAME_RE ]] || die "TUN must be an interface name of 1-15 letters, digits, '_', '.', '-' (got '$TUN')"
fi
command -v "$IPT" >/dev/null || die "'$IPT' not found: install the iptables package (apt-get install iptables)"

# All rules of this tunnel carry this comment; it is how down finds them.
COMMENT="minivpn:$TUN"

# add_rule TABLE CHAIN RULE...: append the rule unless it is already there (-C checks).
# add_rule6: the same with ip6tables.
add_rule() { add_rule_with "$IPT" "$@"; }
add_rule6() { add_rule_with "$IP6T" "$@"; }
add_rule_with() {
  local ipt=$1 table=$2 chain=$3
  shift 3
  if "$ipt" -w -t "$table" -C "$chain" "$@" 2>/dev/null; then
    say "already present: $ipt -t $table -A $chain $*"
  else
    run "$ipt" -w -t "$table" -A "$chain" "$@"
  fi
}

# Delete every rule tagged with our comment, in every table we use, IPv4 and IPv6.
remove_tagged_rules() {
  remove_tagged_with "$IPT"
  # (A host without ip6tables never had IPv6 rules of ours.)
  if command -v "$IP6T" >/dev/null; then remove_tagged_with "$IP6T"; fi
}
remove_tagged_with() {
  local IPT=$1 table line found=0
  local -a rules args
  for table in nat mangle filter raw; do
    # "iptables -S" prints rules as the -A commands that would recreate them, e.g.
    #   -A POSTROUTING -s 10.8.0.0/24 -o eth0 -m comment --comment "minivpn:tun0" -j MASQUERADE
    # The closing quote in the pattern keeps "minivpn:tun0" from matching "minivpn:tun01".
    mapfile -t rules < <("$IPT" -w -t "$table" -S 2>/dev/null | grep -F -- "--comment \"$COMMENT\"" || true)
    for line in "${rules[@]}"; do
      # Our comment has no spaces, so dropping the quotes and splitting on spaces is safe.
      read -ra args <<<"${line//\"/}"
      args[0]=-D # turn "-A CHAIN ..." into "-D CHAIN ..."
      run "$IPT" -w -t "$table" "${args[@]}"
      found=1
    done
  done
  [[ $found -eq 1 ]] || say "no $IPT rules tagged $COMMENT (nothing to remove)"
}

# The bridge we created for this tunnel carries this alias; down removes only such a bridge.
ALIAS="minivpn:$TUN"
if [[ -n $BRIDGE ]]; then [[ $BRIDGE =~ $IFNAME_RE ]] || die "BRIDGE must be an interface name (got '$BRIDGE')"; fi

# bridge_create: BRIDGE, made if missing (then marked with our alias, for down).
bridge_create() {
  if ip link show dev "$BRIDGE" >/dev/null 2>&1; then
    ip -d link show dev "$BRIDGE" | grep -q " bridge " || die "BRIDGE '$BRIDGE' exists and is not a bridge"
    say "bridge $BRIDGE exists: using it as it is (down leaves it)"
  else
    run ip link add name "$BRIDGE" type bridge
    run ip link set dev "$BRIDGE" alias "$ALIAS"
  fi
}
# bridge_port DEV: a TAP as a port of BRIDGE (the kernel learns its MACs and floods to it).
bridge_port() {
  ip -d link show dev "$BRIDGE" 2>/dev/null | grep -q " bridge " || die "BRIDGE '$BRIDGE' is not a bridge (server-init.sh up makes it)"
  [[ -n $MTU ]] && run ip link set dev "$1" mtu "$MTU"
  run ip link set dev "$1" master "$BRIDGE"
  run ip link set dev "$1" up
}

if [[ $ACTION == down ]]; then
  remove_tagged_rules
  if [[ -n $BRIDGE ]] && ip -o link show dev "$BRIDGE" 2>/dev/null | grep -qF "alias $ALIAS"; then
    run ip link del dev "$BRIDGE"
  elif [[ -n $BRIDGE ]]; then
    say "bridge $BRIDGE was not made for $TUN (or is gone): leaving it"
  fi
  # Forwarding stays on: other services on this machine may route too, and turning it off
  # under them would be a surprise. (In the lab, lab.sh down removes the whole host.)
  say "leaving net.ipv4.ip_forward and net.ipv6.conf.all.forwarding as they are"
  exit 0
fi

# ---- link-up: clients' point-to-point links (TOPOLOGY=p2p) ------------------------------
# link_up DEV PEER PEER6: checks one link, turns reverse-path filtering on, and adds its "ip"
# commands to the batch (bline: the batch's lines; bdev: the link of each line).
link_up() {
  local dev=$1 peer=$2 peer6=$3
  if ! [[ $dev =~ $IFNAME_RE && $peer =~ $IP_RE && ( -z $ADDR6 || $peer6 =~ $IP6_RE ) ]]; then
    failed[$dev]="not a link line (DEV PEER${ADDR6:+ PEER6}): '$dev $peer $peer6'"; return
  fi
  [[ -d /sys/class/net/$dev ]] || { failed[$dev]="device '$dev' does not exist (the VPN server creates it first)"; return; }
  if [[ -n $BRIDGE ]]; then
    # A client's TAP (--dev tap): a port of the bridge, no address of its own; the kernel
    # switches between the ports (the server's layer-2 guard checked each client's frames).
    bline+=("link set dev $dev${MTU:+ mtu $MTU} master $BRIDGE up") bdev+=("$dev")
    # Without client to client: an isolated port reaches the bridge (the server, a LAN port)
    # but no other isolated port, i.e. no other client.
    if [[ $CLIENT_TO_CLIENT == 0 ]]; then bline+=("link set dev $dev type bridge_slave isolated on") bdev+=("$dev"); fi
    return
  fi
  # Anti-spoofing by the kernel: a packet whose source is not routed out of this link is dropped.
  say "echo 1 > /proc/sys/net/ipv4/conf/$dev/rp_filter"
  echo 1 >"/proc/sys/net/ipv4/conf/$dev/rp_filter" || { failed[$dev]="cannot set rp_filter"; return; }
  if [[ -n $ADDR6 ]]; then
    say "echo 0 > /proc/sys/net/ipv6/conf/$dev/disable_ipv6"
    echo 0 >"/proc/sys/net/ipv6/conf/$dev/disable_ipv6" || { failed[$dev]="cannot turn IPv6 on"; return; }
  fi
  # ("replace": the same address again is no error, so link-up may run twice.)
  bline+=("link set dev $dev${MTU:+ mtu $MTU} up") bdev+=("$dev")
  bline+=("address replace $ADDR peer $peer/32 dev $dev") bdev+=("$dev")
  if [[ -n $ADDR6 ]]; then bline+=("address replace $ADDR6 peer $peer6/128 dev $dev nodad") bdev+=("$dev"); fi
}

if [[ $ACTION == link-up ]]; then
  [[ $ADDR =~ $IP_RE ]] || die "ADDR must be the server's IPv4 address, e.g. 10.8.0.1 (got '$ADDR')"
  [[ -z $ADDR6 || $ADDR6 =~ $IP6_RE ]] || die "ADDR6 must be the server's IPv6 address without prefix length, or empty (got '$ADDR6')"
  [[ -z $MTU || ($MTU =~ ^[0-9]+$ && $MTU -ge 576 && $MTU -le 65535) ]] || die "MTU must be a number from 576 to 65535 (got '$MTU')"
  [[ -n ${LINKS:-} ]] || die "LINKS must name the links, one a line: DEV PEER [PEER6]"
  declare -A failed=()
  devs=() bline=() bdev=()
  while read -r dev peer peer6 _; do
    [[ -n $dev ]] || continue
    devs+=("$dev")
    link_up "$dev" "$peer" "${peer6:-}"
  done <<<"$LINKS"
  if [[ ${#bline[@]} -gt 0 ]]; then
    for line in "${bline[@]}"; do say "ip $line"; done
    # -force: a failing line does not stop the rest; ip names it as "Command failed -:N".
    errors=$(printf '%s\n' "${bline[@]}" | ip -force -batch - 2>&1 >/dev/null) || true
    last=""
    while IFS= read -r e; do
      if [[ $e =~ ^Command\ failed\ -:([0-9]+) ]]; then
        n=${BASH_REMATCH[1]}
        failed[${bdev[n-1]}]="ip ${bline[n-1]}: ${last:-failed}"
      else
        last=$e
      fi
    done <<<"$errors"
  fi
  for dev in "${devs[@]}"; do
    if [[ -n ${failed[$dev]:-} ]]; then say "link-up failed for $dev: ${failed[$dev]}"; else say "link-up done for $dev"; fi
  done
  exit 0
fi

# ---- up: check everything first, so a typo does not leave a half-configured machine ----
if [[ $TOPOLOGY == subnet ]]; then check_tun "VPN server"; fi
[[ $MSS_CLAMP == 0 || $MSS_CLAMP == 1 ]] || die "MSS_CLAMP must be 0 or 1 (got '$MSS_CLAMP')"
[[ $CLIENT_TO_CLIENT == 0 || $CLIENT_TO_CLIENT == 1 ]] || die "CLIENT_TO_CLIENT must be 0 or 1 (got '$CLIENT_TO_CLIENT')"
if [[ -n $NAT_OUT ]]; then
  [[ $NAT_OUT =~ $IFNAME_RE ]] || die "NAT_OUT must be an interface name (got '$NAT_OUT')"
  ip link show dev "$NAT_OUT" >/dev/null 2>&1 || die "NAT_OUT interface '$NAT_OUT' does not exist"
  [[ $POOL =~ $CIDR_RE ]] || die "POOL must be the client pool, e.g. 10.8.0.0/24, when NAT_OUT is set (got '$POOL')"
fi
check_addr6
if [[ -n $ADDR6 ]]; then
  command -v "$IP6T" >/dev/null || die "'$IP6T' not found: install the iptables package, or run the server with --no-ipv6"
  [[ -z $NAT_OUT || $POOL6 =~ $CIDR6_RE ]] || die "POOL6 must be the IPv6 client pool, e.g. fd6d:7670:6e00::/64, when NAT_OUT and ADDR6 are set (got '$POOL6')"
fi

# The tunnel interface itself (scripts/common.sh: MTU, address, link up). With TOPOLOGY=p2p
# there is none yet: each client's link is configured by link-up when it connects. With
# BRIDGE the addresses go on the bridge, and the TAP (subnet) or each client's TAP (p2p,
# at link-up) is one of its ports: from here on the layer-3 device is L3.
L3=$TUN
if [[ -n $BRIDGE ]]; then
  bridge_create
  [[ $TOPOLOGY == subnet ]] && bridge_port "$TUN"
  L3=$BRIDGE
fi
if [[ $TOPOLOGY == subnet || -n $BRIDGE ]]; then TUN=$L3 tun_up; fi

# A TUN per client is a file descriptor per client: the usual soft limit (1024) would stop
# new clients at about a thousand. Raised to the hard limit, which root set.
if [[ $TOPOLOGY == p2p && -n ${VPN_PID:-} ]]; then
  [[ $VPN_PID =~ ^[0-9]+$ ]] || die "VPN_PID must be a process id (got '$VPN_PID')"
  if command -v prlimit >/dev/null; then
    hard=$(prlimit --pid "$VPN_PID" --nofile --output HARD --noheadings | tr -d ' ')
    run prlimit --pid "$VPN_PID" --nofile="$hard:$hard"
  else
    say "prlimit not found (util-linux): the open-file limit stays as it is, at most that many clients"
  fi
fi

# Routing between the tunnel and the other interfaces (the LAN, the internet).
run sysctl -qw net.ipv4.ip_forward=1

# Client to client with TOPOLOGY=p2p: the kernel routes between the links; turned off, a
# rule drops the forwarding from one client's link to another's (subnet: the VPN decides).
if [[ $TOPOLOGY == p2p && $CLIENT_TO_CLIENT == 0 ]]; then
  add_rule filter FORWARD -i "$TUN" -o "$TUN" -m comment --comment "$COMMENT" -j DROP
fi

# NAT: packets from the pool leave with this machine's address on NAT_OUT, so hosts out
# there can answer without knowing a route back to 10.8.0.0/24.
if [[ -n $NAT_OUT ]]; then
  add_rule nat POSTROUTING -s "$POOL" -o "$NAT_OUT" -m comment --comment "$COMMENT" -j MASQUERADE
else
  say "NAT_OUT empty: no NAT (the other side needs a route back to the pool)"
fi

# MSS clamping: a TCP SYN announces the largest segment its sender accepts (MSS), based on
# its own link, usually 1500. Through the tunnel the path MTU is smaller; if a full-sized
# segment then needs fragmenting and ICMP "fragmentation needed" is blocked somewhere,
# the connection hangs after the handshake. Rewriting the MSS in SYNs crossing the
# tunnel (both directions) to fit the route's MTU avoids that.
if [[ $MSS_CLAMP == 1 ]]; then
  for dir in -i -o; do
    add_rule mangle FORWARD "$dir" "$L3" -p tcp --tcp-flags SYN,RST SYN \
      -m comment --comment "$COMMENT" -j TCPMSS --clamp-mss-to-pmtu
  done
fi

# IPv6 inside the tunnel: the same steps for IPv6 (address, forwarding, NAT66, MSS clamp).
if [[ -n $ADDR6 ]]; then
  if [[ $TOPOLOGY == subnet || -n $BRIDGE ]]; then TUN=$L3 tun_up6; fi
  run sysctl -qw net.ipv6.conf.all.forwarding=1
  if [[ $TOPOLOGY == p2p && -z $BRIDGE ]]; then
    # IPv6 has no rp_filter sysctl: the rpfilter match drops what arrives on a link its source
    # is not routed to (IPv6 link-local and multicast sources pass: they are the link's own).
    add_rule6 raw PREROUTING -i "$TUN" -m rpfilter --invert -m comment --comment "$COMMENT" -j DROP
    if [[ $CLIENT_TO_CLIENT == 0 ]]; then
      add_rule6 filter FORWARD -i "$TUN" -o "$TUN" -m comment --comment "$COMMENT" -j DROP
    fi
  fi
  if [[ -n $NAT_OUT ]]; then
    # NAT66: the pool is a unique local prefix, which the internet does not route. With a
    # global prefix instead (routed mode) run without --nat-out.
    add_rule6 nat POSTROUTING -s "$POOL6" -o "$NAT_OUT" -m comment --comment "$COMMENT" -j MASQUERADE
  else
    say "NAT_OUT empty: no NAT66 (routed: the other side needs a route to $POOL6 via this host)"
  fi
  if [[ $MSS_CLAMP == 1 ]]; then
    for dir in -i -o; do
      add_rule6 mangle FORWARD "$dir" "$L3" -p tcp --tcp-flags SYN,RST SYN \
        -m comment --comment "$COMMENT" -j TCPMSS --clamp-mss-to-pmtu
    done
  fi
fi
say "up done for $TUN"
