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

# tun_up: MTU, address, link up. A smaller MTU than the wire's leaves room for the
# UDP + DTLS + framing bytes each tunnelled packet gains on the way. Sets ADDR_ADDED=1
# when it added the address (so the caller can record it for undoing).
tun_up() {
  ADDR_ADDED=0
  [[ -n $MTU ]] && run ip link set dev "$TUN" mtu "$MTU"
  if ip -4 -o addr show dev "$TUN" | grep -qF " inet $ADDR "; then
    say "address $ADDR already on $TUN"
  else
    run ip addr add "$ADDR" dev "$TUN"
    ADDR_ADDED=1
  fi
  run ip link set dev "$TUN" up
}
