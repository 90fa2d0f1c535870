#!/usr/bin/env bash
# dhcp-lease.sh EVENT - what udhcpc runs for each DHCP event on a client's TAP (client-init.sh
# starts udhcpc with it when the server pushes "dhcp": a DHCP server on its side of the link).
# udhcpc gives the lease in the environment: interface, ip, mask (prefix length), router, lease,
# serverid. Only the address is applied: the routes are client-init.sh's, from the pushed
# config. STATE (from client-init.sh) is its undo list: the address is recorded there.
set -euo pipefail
say() { echo "dhcp-lease: $*"; }
case ${1:-} in
  deconfig)
    # Before the first request, and when a lease is lost: the link up, no address.
    ip link set dev "$interface" up ;;
  bound|renew)
    cidr="$ip/${mask:-24}"
    if ! ip -4 -o addr show dev "$interface" | grep -qF " inet $cidr "; then
      say "ip addr add $cidr dev $interface"
      ip addr add "$cidr" dev "$interface"
      [[ -n ${STATE:-} ]] && echo "addr $cidr" >>"$STATE"
    fi
    say "lease $cidr on $interface from ${serverid:-?} (router ${router:-none}, ${lease:-?}s)" ;;
  leasefail|nak)
    say "$1 on $interface" ;;
esac
