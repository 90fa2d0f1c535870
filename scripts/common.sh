# Shared by server-init.sh and client-init.sh (sourced, not run). Every line the scripts
# print starts with the script's name, so the VPN's log shows who changed what.
NAME=$(basename "$0" .sh)
say() { echo "$NAME: $*"; }
die() { echo "$NAME: error: $*" >&2; exit 1; }
# Print a command, then run it; stop with a clear message if it fails.
run() {
  say "$*"
  "$@" || die "command failed (exit $?): $*"
}

IP_RE='^([0-9]{1,3}\.){3}[0-9]{1,3}$'
CIDR_RE='^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$'

# check_tun WHO: TUN, ADDR and MTU are usable (checked before anything is changed, so a
# typo does not leave a half-configured machine). WHO names the program that makes the TUN.
check_tun() {
  [[ $ADDR =~ $CIDR_RE ]] || die "ADDR must be an IPv4 address with prefix length, e.g. 10.8.0.1/24 (got '$ADDR')"
  [[ -z $MTU || ($MTU =~ ^[0-9]+$ && $MTU -ge 576 && $MTU -le 65535) ]] ||
    die "MTU must be a number from 576 to 65535 (got '$MTU')"
  ip link show dev "$TUN" >/dev/null 2>&1 ||
    die "device '$TUN' does not exist (the $1 creates it before running this script)"
}

# check_tun_p2p: as check_tun, for one link of the p2p topology (ADDR is "ADDR peer PEER/32").
check_tun_p2p() {
  [[ -z $MTU || ($MTU =~ ^[0-9]+$ && $MTU -ge 576 && $MTU -le 65535) ]] ||
    die "MTU must be a number from 576 to 65535 (got '$MTU')"
  ip link show dev "$TUN" >/dev/null 2>&1 ||
    die "device '$TUN' does not exist (the VPN server creates it before running this script)"
}

# tun_up: MTU, address, link up. A smaller MTU than the wire's leaves room for the
# UDP + DTLS + framing bytes each tunnelled packet gains on the way. Sets ADDR_ADDED=1
# when it added the address (so the caller can record it for undoing).
tun_up() {
  ADDR_ADDED=0
  [[ -n $MTU ]] && run ip link set dev "$TUN" mtu "$MTU"
  if ip -4 -o addr show dev "$TUN" | grep -qF " inet $ADDR "; then
    say "address $ADDR already on $TUN"
  else
    read -ra addr_args <<<"$ADDR" # ("10.8.0.2/24", or "10.8.0.2 peer 10.8.0.1/24" on a point-to-point link)
    run ip addr add "${addr_args[@]}" dev "$TUN"
    ADDR_ADDED=1
  fi
  run ip link set dev "$TUN" up
}

# IPv6 forms, loosely (ip(8) refuses what these let through, before anything is changed).
IP6_RE='^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*$'
CIDR6_RE='^[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$'

# check_addr6: ADDR6 is empty (no IPv6 in the tunnel) or an IPv6 address with prefix length.
check_addr6() {
  [[ -z ${ADDR6:-} || $ADDR6 =~ $CIDR6_RE ]] || die "ADDR6 must be an IPv6 address with prefix length, e.g. fd6d:7670:6e00::1/64, or empty (got '$ADDR6')"
}

# tun_up6: IPv6 on the TUN and its address ADDR6 (when set). A host may have IPv6 off by
# default (the lab's hosts do), so it is turned on for this one interface, which vanishes
# with it. "nodad": the address is the pool's to give, no duplicate address detection (it
# would hold the address back for a second or two). Sets ADDR6_ADDED=1 when it added it.
tun_up6() {
  ADDR6_ADDED=0
  [[ -n ${ADDR6:-} ]] || return 0
  say "echo 0 > /proc/sys/net/ipv6/conf/$TUN/disable_ipv6"
  echo 0 >"/proc/sys/net/ipv6/conf/$TUN/disable_ipv6" || die "cannot turn IPv6 on for $TUN"
  if ip -6 -o addr show dev "$TUN" | grep -qF " inet6 $ADDR6 "; then
    say "address $ADDR6 already on $TUN"
  else
    read -ra addr_args <<<"$ADDR6" # (as in tun_up)
    run ip -6 addr add "${addr_args[@]}" dev "$TUN" nodad
    ADDR6_ADDED=1
  fi
}
