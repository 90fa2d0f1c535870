#!/usr/bin/env bash
# npm run demo (as root): the whole story in one command, on network namespaces.
#
#  1. installs what is missing (apt packages, npm dependencies, the native addon)
#  2. makes a PKI (a CA, the server, client "alice")
#  3. brings up the lab topology (scripts/lab.sh: client1, inet, server, web, lan)
#  4. runs the tunnel twice, in plaintext mode and in DTLS mode, and shows each time:
#     what's-my-IP before/after (full tunnel + NAT), the private LAN host reachable only
#     through the tunnel, and what tcpdump saw on the underlay
#  5. tears everything down (unless --keep)
#
# Every check is asserted: the demo exits non-zero if the VPN does not do what it shows.
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1
export LAB_PREFIX=${LAB_PREFIX:-demo}
WORK=$(mktemp -d /tmp/minivpn-demo.XXXXXX)
SERVER_PID= CLIENT_PID= DUMP_PID=
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() { printf '    FAILED: %s\n' "$*" >&2; exit 1; }
lab() { bash scripts/lab.sh "$@"; }
on() { local host=$1; shift; ip netns exec "$LAB_PREFIX-$host" "$@"; }

stop_pid() { # stop one process we started, by PID, and wait for it
  local pid=$1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  # Up to 15 s: the server undoes its firewall rules on the way out (slow on a busy machine).
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
wait_log() { # wait_log FILE REGEX SECONDS: true once a line of FILE matches (FILE may not exist yet)
  local i
  for ((i = 0; i < $3 * 10; i++)); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# tcpdump drops the packets still in its buffer when it is stopped: first wait until it has
# written every packet the kernel passed it (its counters, printed on SIGUSR1 to its log).
dump_drained() { # dump_drained PID LOG
  local i n c r d
  for ((i = 0; i < 300; i++)); do
    n=$(grep -c 'received by filter' "$2" || true)
    kill -USR1 "$1" 2>/dev/null || return 1
    for ((c = 0; c < 100; c++)); do [ "$(grep -c 'received by filter' "$2")" -gt "$n" ] && break; sleep 0.05; done
    read -r c r d < <(grep 'received by filter' "$2" | tail -1 | grep -oE '[0-9]+' | paste -sd' ') || true
    [ $((c + ${d:-0})) -ge "${r:-0}" ] && return 0
    sleep 0.05
  done
  return 1
}
cleanup() {
  stop_pid "$DUMP_PID"; stop_pid "$CLIENT_PID"; stop_pid "$SERVER_PID"
  if [ "$KEEP" = 1 ]; then echo "lab kept up: sudo LAB_PREFIX=$LAB_PREFIX scripts/lab.sh down removes it"; else lab down >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || fail "the demo creates network namespaces and TUN devices: run it as root (sudo npm run demo)"

step "1/6 installing what is missing"
if [ "${MINIVPN_SKIP_DEPS:-0}" = 1 ]; then ok "skipped (MINIVPN_SKIP_DEPS=1)"; else bash scripts/deps.sh demo; fi

step "2/6 making a PKI: CA, server certificate, client 'alice'"
node dist/src/pki/cli.js --out "$WORK/pki" --clients alice | sed 's/^/    /'

step "3/6 bringing up the lab topology"
lab up --clients 1 | sed 's/^/    /'
cat <<'PIC'
    client1 192.0.2.11 --- inet (router) --- server 198.51.100.2 --- lan 10.9.0.10 (private)
                                  |
                              web 203.0.113.80 (what's-my-IP)
PIC

BEFORE=$(on client1 curl -s -m 20 http://203.0.113.80/)
[ "$BEFORE" = 192.0.2.11 ] || fail "before the tunnel the web host should see 192.0.2.11, got '$BEFORE'"
ok "before the tunnel, the web host sees the client's own address: $BEFORE"
on client1 curl -s -m 2 http://10.9.0.10/ >/dev/null 2>&1 && fail "the private LAN must not be reachable without the tunnel"
ok "the private LAN host 10.9.0.10 is unreachable without the tunnel"

run_mode() { # run_mode plaintext|dtls
  local mode=$1 flag=()
  [ "$mode" = plaintext ] && flag=(--insecure-plaintext)
  step "$([ "$mode" = plaintext ] && echo 4/6 || echo 5/6) the tunnel in $mode mode"
  # The logs exist before tail -f opens them (the background redirects may come later).
  : >"$WORK/server-$mode.log"; : >"$WORK/client-$mode.log"
  # (ip netns exec replaces itself with node, so $! is the server's own PID)
  ip netns exec "$LAB_PREFIX-server" node dist/src/server/main.js --listen 198.51.100.2:1194 "${flag[@]}" \
    --ca "$WORK/pki/ca.crt" --cert "$WORK/pki/server.crt" --key "$WORK/pki/server.key" \
    --authorized-dir "$WORK/pki/authorized" --leases-file "$WORK/leases.json" --status-socket "$WORK/status.sock" \
    --redirect-gateway --routes 10.9.0.0/24 --nat-out eth0 >"$WORK/server-$mode.log" 2>&1 &
  SERVER_PID=$!
  wait_log "$WORK/server-$mode.log" 'listening on udp' 60 || fail "server did not start: $(tail -5 "$WORK/server-$mode.log")"
  ok "server listening on 198.51.100.2:1194"
  ip netns exec "$LAB_PREFIX-client1" node dist/src/client/main.js --server 198.51.100.2:1194 --name alice "${flag[@]}" \
    --ca "$WORK/pki/ca.crt" --cert "$WORK/pki/clients/alice.crt" --key "$WORK/pki/clients/alice.key" \
    --state-dir "$WORK/state" >"$WORK/client-$mode.log" 2>&1 &
  CLIENT_PID=$!
  wait_log "$WORK/client-$mode.log" 'tunnel up' 60 || fail "client did not connect: $(tail -5 "$WORK/client-$mode.log")"
  ok "$(grep -o 'tunnel up: .*' "$WORK/client-$mode.log" | head -1)"

  ip netns exec "$LAB_PREFIX-server" tcpdump -i eth0 --immediate-mode -U -n -s 0 -w "$WORK/$mode.pcap" udp port 1194 2>"$WORK/dump-$mode.log" &
  DUMP_PID=$!
  wait_log "$WORK/dump-$mode.log" 'listening on' 60 || fail "tcpdump did not start: $(tail -3 "$WORK/dump-$mode.log")"
  AFTER=$(on client1 curl -s -m 20 http://203.0.113.80/)
  [ "$AFTER" = 198.51.100.2 ] || fail "through the full tunnel the web host should see the VPN server 198.51.100.2, got '$AFTER'"
  ok "what's-my-IP through the tunnel: $AFTER (was $BEFORE): the server NATs the client's traffic"
  PAGE=$(on client1 curl -s -m 20 http://10.9.0.10/hello)
  echo "$PAGE" | grep -q minivpn-secret-page || fail "the LAN host did not answer through the tunnel"
  ok "the private LAN host 10.9.0.10 answers through the tunnel"
  dump_drained "$DUMP_PID" "$WORK/dump-$mode.log" || fail "tcpdump did not write what it saw: $(tail -3 "$WORK/dump-$mode.log")"
  kill -INT "$DUMP_PID"; stop_pid "$DUMP_PID"; DUMP_PID=
  local n
  n=$(tcpdump -r "$WORK/$mode.pcap" 2>/dev/null | wc -l)
  echo "    tcpdump on the underlay saw $n UDP datagrams; the first bytes of the HTTP exchange:"
  tcpdump -r "$WORK/$mode.pcap" -A -n 2>/dev/null | grep -m 3 -E 'GET /hello|minivpn-secret-page|HTTP/1.1 200' | sed 's/^/      | /' || true
  if grep -qa minivpn-secret-page "$WORK/$mode.pcap"; then SEEN[$mode]=yes; else SEEN[$mode]=no; fi
  stop_pid "$CLIENT_PID"; CLIENT_PID=
  stop_pid "$SERVER_PID"; SERVER_PID=
  ok "client and server stopped; routes and firewall rules restored"
}
declare -A SEEN
run_mode plaintext
[ "${SEEN[plaintext]}" = yes ] || fail "in plaintext mode the HTTP page should be readable on the wire"
run_mode dtls
[ "${SEEN[dtls]}" = no ] || fail "in DTLS mode the HTTP page must not be readable on the wire"
TYPES=$(tshark -r "$WORK/dtls.pcap" -d udp.port==1194,dtls -T fields -e dtls.record.content_type 2>/dev/null | tr ',' '\n' | sort | uniq -c | tr -s ' ' | paste -sd, - || true)

step "6/6 what tcpdump saw on the underlay"
printf '    %-10s %-28s %s\n' mode "HTTP page readable on wire?" "note"
printf '    %-10s %-28s %s\n' plaintext "${SEEN[plaintext]}" "the inner IP packet is the UDP payload (after 1 frame byte)"
printf '    %-10s %-28s %s\n' dtls "${SEEN[dtls]}" "DTLS records (count content-type):${TYPES:- (tshark not installed)}"
echo
echo "demo OK: plaintext shows your traffic to anyone on the path; DTLS shows only record headers."
