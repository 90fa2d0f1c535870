#!/usr/bin/env bash
# client-init.sh up|down - what the VPN client's machine needs around the tunnel.
#
# The VPN client program opens the TUN device, learns its address and routes from the
# server, then runs "client-init.sh up"; when it disconnects it runs "client-init.sh down".
# Every action is printed as one line, so the VPN log shows what was changed.
#
# Configured by environment variables:
#   TUN               the TUN device, e.g. tun0 (must exist already: the VPN creates it)
#   ADDR              the client's tunnel address, e.g. 10.8.0.2/24; "dhcp" (a TAP only):
#                     taken from a DHCP server on the server's side of the link, by
#                     udhcpc (once, at up: the address stays until down, not renewed)
#   PEER              the server's tunnel address on a point-to-point link (the server's p2p
#                     topology), e.g. 10.8.0.1: the TUN gets "10.8.0.2 peer 10.8.0.1/24", so
#                     the tunnel subnet is routed to the link's other end (empty: subnet)
#   PEER6             the same for IPv6 (with ADDR6), e.g. fd6d:7670:6e00::1
#   MTU               MTU of the TUN device, e.g. 1400 (empty: leave it)
#   ROUTES            space-separated networks to send through the tunnel ("split tunnel"),
#                     e.g. "10.9.0.0/24"
#   REDIRECT_GATEWAY  1: send ALL traffic through the tunnel ("full tunnel"); 0 (default): don't
#   SERVER_IP         the VPN server's real (underlay) address, IPv4 or IPv6; needed when
#                     REDIRECT_GATEWAY=1, REDIRECT_GATEWAY6=1 or BLOCK_IPV6_LEAK=1
#   DNS               optional DNS servers pushed by the server, e.g. "10.8.0.1"; only printed
#   DNS_APPLY         1: really write them (and DNS6) to /etc/resolv.conf (restored at down)
#   ADDR6             the client's tunnel IPv6 address, e.g. fd6d:7670:6e00::2/64 (empty: none)
#   ROUTES6           space-separated IPv6 networks to send through the tunnel
#   REDIRECT_GATEWAY6 1: send all IPv6 traffic through the tunnel; 0 (default): don't
#   DNS6              optional IPv6 DNS servers pushed by the server
#   BLOCK_IPV6_LEAK   1: while up, no IPv6 leaves by the other interfaces (a full tunnel whose
#                     server offers no IPv6); link-local, loopback and the server stay open
#   GATEWAY           the server's tunnel address, the next hop of every route (a TAP, an
#                     Ethernet link: without one the kernel would ARP for each destination);
#                     empty on a TUN (a point-to-point link needs none)
#   GATEWAY6          the same for IPv6 routes
#   STATE_DIR         where up records what it did, so down undoes exactly that
#                     (default /run/minivpn/client-<namespace>-<TUN>)
#
# up:   MTU, address, link up; routes through the tunnel; records each change in STATE_DIR.
# down: undoes the recorded changes, newest first, and nothing else. Idempotent.
set -euo pipefail

# say, die and run (print each command, then run it): scripts/common.sh
. "$(dirname "$0")/common.sh"

ACTION=${1:-}
TUN=${TUN:-}
ADDR=${ADDR:-}
PEER=${PEER:-}
PEER6=${PEER6:-}
MTU=${MTU:-}
ROUTES=${ROUTES:-}
REDIRECT_GATEWAY=${REDIRECT_GATEWAY:-0}
SERVER_IP=${SERVER_IP:-}
DNS=${DNS:-}
DNS_APPLY=${DNS_APPLY:-0}
ADDR6=${ADDR6:-}
ROUTES6=${ROUTES6:-}
REDIRECT_GATEWAY6=${REDIRECT_GATEWAY6:-0}
DNS6=${DNS6:-}
BLOCK_IPV6_LEAK=${BLOCK_IPV6_LEAK:-0}
GATEWAY=${GATEWAY:-}
GATEWAY6=${GATEWAY6:-}
IP6T=${IP6TABLES:-ip6tables}
# The leak block's own chain (names are at most 28 characters: "mvleak-" and 15).
LEAK_CHAIN=mvleak-$TUN


[[ $ACTION == up || $ACTION == down ]] || die "usage: TUN=tun0 ADDR=10.8.0.2/24 ... $0 up|down"
[[ $TUN =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || die "TUN must be an interface name of 1-15 letters, digits, '_', '.', '-' (got '$TUN')"

# Named after the network namespace too: in the lab several clients each have a "tun0".
netns=$(ip netns identify 2>/dev/null || true)
STATE_DIR=${STATE_DIR:-/run/minivpn/client-${netns:-root}-$TUN}
STATE=$STATE_DIR/undo # one line per change: "route <ip route args>", "addr <cidr>", "dns",
                      # "route6 <ip -6 route args>", "addr6 <cidr>", "leak6 <chain>"

# ---------------------------------------------------------------------------------------
# The IPv6 leak block: a chain of ours, jumped to first from OUTPUT and FORWARD. It lets
# through loopback, the tunnel, link-local traffic (neighbour discovery keeps the LAN
# working) and the server (an IPv6 underlay), and refuses the rest at once (an application
# sees an error, not a timeout). Undone by chain name, also after a crash (the undo list).
block_leak6() {
  local chain=$1
  run "$IP6T" -w -N "$chain"
  echo "leak6 $chain" >>"$STATE" # (recorded at once: a failure below is undone by down)
  run "$IP6T" -w -A "$chain" -o lo -j RETURN
  run "$IP6T" -w -A "$chain" -o "$TUN" -j RETURN
  run "$IP6T" -w -A "$chain" -d fe80::/10 -j RETURN
  run "$IP6T" -w -A "$chain" -d ff02::/16 -j RETURN
  [[ $SERVER_IP =~ $IP6_RE ]] && run "$IP6T" -w -A "$chain" -d "$SERVER_IP" -j RETURN
  run "$IP6T" -w -A "$chain" -j REJECT --reject-with icmp6-adm-prohibited
  run "$IP6T" -w -I OUTPUT 1 -j "$chain"
  run "$IP6T" -w -I FORWARD 1 -j "$chain"
}
unblock_leak6() {
  local chain=$1 hook
  say "removing the IPv6 leak block ($IP6T chain $chain)"
  for hook in OUTPUT FORWARD; do
    while "$IP6T" -w -D "$hook" -j "$chain" 2>/dev/null; do :; done
  done
  if "$IP6T" -w -L "$chain" -n >/dev/null 2>&1; then
    "$IP6T" -w -F "$chain" && "$IP6T" -w -X "$chain"
  fi
}

# ---------------------------------------------------------------------------------------
# down: undo what the state file lists, newest first. Things that are gone already (the
# TUN device disappears when the VPN closes it, taking its routes along) are fine.
do_down() {
  local kind rest out failed=0
  if [[ ! -s $STATE ]]; then
    say "nothing recorded in $STATE (already down)"
    rm -f "$STATE"
    return 0
  fi
  while read -r kind rest; do
    case $kind in
      route)
        say "ip route del $rest"
        # shellcheck disable=SC2086 # $rest is the route spec we wrote ourselves, split on purpose
        if ! out=$(ip route del $rest 2>&1); then
          if [[ $out == *"No such process"* || $out == *"Cannot find device"* ]]; then
            say "  (already gone)"
          else
            echo "client-init: error: could not remove route $rest: $out" >&2; failed=1
          fi
        fi ;;
      route6)
        say "ip -6 route del $rest"
        # shellcheck disable=SC2086 # as above
        if ! out=$(ip -6 route del $rest 2>&1); then
          if [[ $out == *"No such process"* || $out == *"Cannot find device"* ]]; then
            say "  (already gone)"
          else
            echo "client-init: error: could not remove route $rest: $out" >&2; failed=1
          fi
        fi ;;
      addr6)
        if ip -6 -o addr show dev "$TUN" 2>/dev/null | grep -qF " inet6 $rest "; then
          say "ip -6 addr del $rest dev $TUN"
          # shellcheck disable=SC2086 # "ADDR" or "ADDR peer PEER/LEN", written by us
          ip -6 addr del $rest dev "$TUN" || failed=1
        else
          say "address $rest already gone from $TUN"
        fi ;;
      leak6) unblock_leak6 "$rest" || failed=1 ;;
      addr)
        if ip -4 -o addr show dev "$TUN" 2>/dev/null | grep -qF " inet $rest "; then
          say "ip addr del $rest dev $TUN"
          # shellcheck disable=SC2086 # as above
          ip addr del $rest dev "$TUN" || failed=1
        else
          say "address $rest already gone from $TUN"
        fi ;;
      dns)
        say "restoring /etc/resolv.conf from $STATE_DIR/resolv.conf.orig"
        # "cat >" rather than "mv": keeps /etc/resolv.conf's inode (it may be a symlink or
        # bind mount that other programs watch).
        cat "$STATE_DIR/resolv.conf.orig" >/etc/resolv.conf || failed=1 ;;
    esac
  done < <(tac "$STATE")
  [[ $failed -eq 0 ]] || die "some changes could not be undone; $STATE kept for another try"
  rm -f "$STATE" "$STATE_DIR/resolv.conf.orig"
  rmdir "$STATE_DIR" 2>/dev/null || true
}

if [[ $ACTION == down ]]; then
  do_down
  say "down done for $TUN"
  exit 0
fi

# ---------------------------------------------------------------------------------------
# up: check everything first, so a typo does not leave a half-configured machine.
if [[ $ADDR == dhcp ]]; then
  command -v udhcpc >/dev/null || die "ADDR=dhcp needs udhcpc (apt-get install udhcpc)"
  ADDR=0.0.0.0/32 check_tun "VPN client"
else
  check_tun "VPN client"
fi
for r in $ROUTES; do
  [[ $r =~ $CIDR_RE ]] || die "ROUTES: '$r' is not an IPv4 network like 10.9.0.0/24"
done
[[ $REDIRECT_GATEWAY == 0 || $REDIRECT_GATEWAY == 1 ]] || die "REDIRECT_GATEWAY must be 0 or 1 (got '$REDIRECT_GATEWAY')"
[[ $REDIRECT_GATEWAY6 == 0 || $REDIRECT_GATEWAY6 == 1 ]] || die "REDIRECT_GATEWAY6 must be 0 or 1 (got '$REDIRECT_GATEWAY6')"
[[ $BLOCK_IPV6_LEAK == 0 || $BLOCK_IPV6_LEAK == 1 ]] || die "BLOCK_IPV6_LEAK must be 0 or 1 (got '$BLOCK_IPV6_LEAK')"
if [[ $REDIRECT_GATEWAY == 1 || $REDIRECT_GATEWAY6 == 1 || $BLOCK_IPV6_LEAK == 1 ]]; then
  [[ $SERVER_IP =~ $IP_RE || $SERVER_IP =~ $IP6_RE ]] || die "SERVER_IP must be the VPN server's IP address when REDIRECT_GATEWAY, REDIRECT_GATEWAY6 or BLOCK_IPV6_LEAK is 1 (got '$SERVER_IP')"
fi
for d in $DNS; do
  [[ $d =~ $IP_RE ]] || die "DNS: '$d' is not an IPv4 address"
done
[[ -z $GATEWAY || $GATEWAY =~ $IP_RE ]] || die "GATEWAY must be an IPv4 address or empty (got '$GATEWAY')"
[[ -z $GATEWAY6 || $GATEWAY6 =~ $IP6_RE ]] || die "GATEWAY6 must be an IPv6 address or empty (got '$GATEWAY6')"
check_addr6
if [[ -z $ADDR6 && ( -n $ROUTES6 || $REDIRECT_GATEWAY6 == 1 ) ]]; then die "ROUTES6 and REDIRECT_GATEWAY6 need ADDR6"; fi
[[ -z $PEER || $PEER =~ $IP_RE ]] || die "PEER must be an IPv4 address, e.g. 10.8.0.1, or empty (got '$PEER')"
[[ -z $PEER6 || ( -n $ADDR6 && $PEER6 =~ $IP6_RE ) ]] || die "PEER6 must be an IPv6 address, with ADDR6, or empty (got '$PEER6')"
for r in $ROUTES6; do
  [[ $r =~ $CIDR6_RE ]] || die "ROUTES6: '$r' is not an IPv6 network like 2001:db8:50::/64"
done
for d in $DNS6; do
  [[ $d =~ $IP6_RE ]] || die "DNS6: '$d' is not an IPv6 address"
done
if [[ $BLOCK_IPV6_LEAK == 1 ]]; then
  command -v "$IP6T" >/dev/null || die "'$IP6T' not found: cannot block IPv6 leaks (install iptables, or run the client with --allow-ipv6-leak)"
fi

# Up twice in a row: undo the first one, then do it again, so nothing is recorded twice.
if [[ -s $STATE ]]; then
  say "found an earlier up in $STATE; undoing it first"
  do_down
fi
mkdir -p "$STATE_DIR"
: >"$STATE"

# add_route ROUTE...: add a route and record it for down. A route that is already there
# and was not added by us is not ours to change: say so and stop.
add_route() {
  local out
  say "ip route add $*"
  if out=$(ip route add "$@" 2>&1); then
    echo "route $*" >>"$STATE"
  else
    die "could not add route $*: $out (existing: $(ip route show exact "$1" | head -1))"
  fi
}

# add_route6 ROUTE...: add_route for IPv6.
add_route6() {
  local out
  say "ip -6 route add $*"
  if out=$(ip -6 route add "$@" 2>&1); then
    echo "route6 $*" >>"$STATE"
  else
    die "could not add route $*: $out (existing: $(ip -6 route show exact "$1" | head -1))"
  fi
}

# Pin the route to the VPN server to the path it takes now (normally the default
# gateway). Otherwise, once "everything goes into the tunnel", the tunnel's own encrypted
# UDP packets to the server would be sent into the tunnel too: a loop that kills the
# connection. Only in the family of the server's address (its own default route is what a
# full tunnel of that family would take over).
pin_server_route() {
  local fam=-4 host=32 add=add_route gw dev
  if [[ $SERVER_IP =~ $IP6_RE ]]; then fam=-6 host=128 add=add_route6; fi
  read -r gw dev < <(ip "$fam" -o route get "$SERVER_IP" |
    awk '{ for (i = 1; i < NF; i++) { if ($i == "via") g = $(i+1); if ($i == "dev") d = $(i+1) } }
         END { print (g == "" ? "-" : g), d }')
  [[ -n ${dev:-} ]] || die "no route to SERVER_IP $SERVER_IP"
  [[ $dev != "$TUN" ]] || die "the route to SERVER_IP $SERVER_IP already goes through $TUN"
  if ip "$fam" route show exact "$SERVER_IP/$host" | grep -q .; then
    say "route to server $SERVER_IP/$host exists already: $(ip "$fam" route show exact "$SERVER_IP/$host") (leaving it)"
  elif [[ $gw == - ]]; then
    $add "$SERVER_IP/$host" dev "$dev"                   # server is on our own link
  else
    $add "$SERVER_IP/$host" via "$gw" dev "$dev"
  fi
}

# The tunnel interface (scripts/common.sh: MTU, address, link up; IPv6 address).
if [[ $ADDR == dhcp ]]; then
  # The link up without an address, then a DHCP exchange over it (broadcasts through the
  # tunnel to the server's side); scripts/dhcp-lease.sh adds the address and records it.
  [[ -n $MTU ]] && run ip link set dev "$TUN" mtu "$MTU"
  run ip link set dev "$TUN" up
  say "udhcpc -i $TUN -f -q -n -t 5 -T 2 -s $(dirname "$0")/dhcp-lease.sh"
  STATE=$STATE udhcpc -i "$TUN" -f -q -n -t 5 -T 2 -s "$(dirname "$0")/dhcp-lease.sh" 2>&1 | sed "s/^/$NAME: /" ||
    die "no DHCP lease on $TUN (is a DHCP server on the server's side of the link?)"
  ip -4 -o addr show dev "$TUN" | grep -q ' inet ' || die "no DHCP lease on $TUN (is a DHCP server on the server's side of the link?)"
else
  # On a point-to-point link the server's address is the other end, the subnet routed to it.
  [[ -n $PEER ]] && ADDR="${ADDR%/*} peer $PEER/${ADDR#*/}"
  [[ -n $PEER6 ]] && ADDR6="${ADDR6%/*} peer $PEER6/${ADDR6#*/}"
  tun_up
  [[ $ADDR_ADDED == 1 ]] && echo "addr $ADDR" >>"$STATE"
fi

# 1. The server's own route, when a full tunnel of its family would take it over.
if [[ ( $REDIRECT_GATEWAY == 1 && $SERVER_IP =~ $IP_RE ) || ( $REDIRECT_GATEWAY6 == 1 && $SERVER_IP =~ $IP6_RE ) ]]; then
  pin_server_route
fi

if [[ $REDIRECT_GATEWAY == 1 ]]; then
  # 2. Everything else into the tunnel, as two halves: 0.0.0.0/1 and 128.0.0.0/1.
  #    Together they cover every address, and each is more specific than the default
  #    route (0.0.0.0/0), so they win without the default route being touched.
  #    Replacing the default route instead would mean saving and restoring it exactly,
  #    and a crash in between would leave the machine with no way out; with the halves,
  #    removing two routes (or the TUN vanishing) brings the old state back by itself.
  add_route 0.0.0.0/1 ${GATEWAY:+via "$GATEWAY"} dev "$TUN"
  add_route 128.0.0.0/1 ${GATEWAY:+via "$GATEWAY"} dev "$TUN"
fi

# Split tunnel: only these networks go through the tunnel.
for r in $ROUTES; do
  add_route "$r" ${GATEWAY:+via "$GATEWAY"} dev "$TUN"
done

DNS="$DNS${DNS6:+ $DNS6}"
DNS=${DNS# }
if [[ -n $DNS ]]; then
  if [[ $DNS_APPLY == 1 ]]; then
    # Careful: inside "ip netns exec", /etc/resolv.conf is the machine's own file unless
    # /etc/netns/<name>/resolv.conf exists. That is why this is off by default.
    cp /etc/resolv.conf "$STATE_DIR/resolv.conf.orig"
    echo dns >>"$STATE"
    say "writing nameserver(s) $DNS to /etc/resolv.conf"
    # shellcheck disable=SC2086 # unquoted on purpose: one "nameserver" line per address
    printf 'nameserver %s\n' $DNS >/etc/resolv.conf
  else
    say "DNS pushed by the server: $DNS (not applied; DNS_APPLY=1 would write /etc/resolv.conf)"
  fi
fi

# IPv6 inside the tunnel: the address, the same halves (::/1 and 8000::/1), the pushed
# networks. Or, for a full tunnel without IPv6, the leak block.
tun_up6
[[ $ADDR6_ADDED == 1 ]] && echo "addr6 $ADDR6" >>"$STATE"
if [[ $REDIRECT_GATEWAY6 == 1 ]]; then
  add_route6 ::/1 ${GATEWAY6:+via "$GATEWAY6"} dev "$TUN"
  add_route6 8000::/1 ${GATEWAY6:+via "$GATEWAY6"} dev "$TUN"
fi
for r in $ROUTES6; do
  add_route6 "$r" ${GATEWAY6:+via "$GATEWAY6"} dev "$TUN"
done
if [[ $BLOCK_IPV6_LEAK == 1 ]]; then
  say "full tunnel without IPv6 from the server: blocking IPv6 on the other interfaces while up"
  block_leak6 "$LEAK_CHAIN"
fi
say "up done for $TUN (undo list: $STATE)"
