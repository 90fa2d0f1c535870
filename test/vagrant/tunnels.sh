# tunnels.sh - step 6 of test/vagrant/run.sh (sourced by it; uses its vm, say, pass, fail):
# what labs 2 and 3 teach, in the two VMs. For MODE plaintext, then dtls: the server and
#   the client (plaintext as the labs start them, DTLS with npm run server / npm run
#   client), an HTTP request from the client VM through the tunnel to a web server on the
#   server VM, and tcpdump on the server VM's underlay interface while it crosses:
#   plaintext - the capture shows the request's text;
#   dtls      - every packet of the capture is DTLS application data (record content
#               type 23, as tshark decodes it), and the request's text is in none of them.
# Each program runs as a transient systemd service in its VM (systemd-run returns at once;
# a background job under ssh would keep the session open). Logs: journalctl -u UNIT.

WEB_PORT=8080
TUNNEL_SERVER_IP=10.8.0.1 # the server's tunnel address: the first of the default pool

# vm_wait VM UNIT PATTERN SECONDS: wait until UNIT's log has a line matching PATTERN (an
# extended regex). One `journalctl -f` read as lines come, not a poll: the VMs' CPU is slow
# and busy starting the very program we wait for. `timeout` ends its whole process group.
vm_wait() {
  vm "$1" "sudo timeout $4 bash -c 'coproc J { exec journalctl -u $2 -f -n all -o cat 2>/dev/null; }
    grep -m1 -qE \"$3\" <&\"\${J[0]}\"; r=\$?; kill \$J_PID; exit \$r' </dev/null"
}

# Shows a unit's last log lines, for a failure's report.
vm_log() { vm "$1" "sudo journalctl -u $2 --no-pager -o cat | tail -${3:-15}" 2>&1 | sed "s/^/    $1 $2: /"; }

start_web() {
  # The page names the path it was asked for, so each request's answer is its own.
  vm server "sudo systemd-run --quiet --collect --unit=minivpn-web node -e '
    require(\"http\").createServer((q, s) => s.end(\"minivpn-vagrant-page \" + q.url + \"\\n\"))
      .listen($WEB_PORT, () => console.log(\"web: listening on $WEB_PORT\"))'" ||
    fail "starting the web server on the server VM"
  vm_wait server minivpn-web 'web: listening' 60 || { vm_log server minivpn-web; fail "the web server on the server VM"; }
}

# tunnel_check plaintext|dtls
# Plaintext starts the programs as labs 2 and 3 do (node dist/src/...), DTLS as
# docs/VAGRANT.md tells Vagrant users to (npm run server, npm run client).
tunnel_check() {
  local mode=$1 server client how dev marker out
  if [[ $mode == plaintext ]]; then
    server="node dist/src/server/main.js --insecure-plaintext"
    client="node dist/src/client/main.js --insecure-plaintext --server $SERVER_IP:1194 --name alice"
    start_web
  else
    server="npm run server"
    client="npm run client -- --server $SERVER_IP:1194 --name alice"
  fi
  how="server VM: $server; client VM: $client"
  dev=$(vm server "ip -o -4 addr show to $SERVER_IP/32 | awk '{print \$2}'")
  [[ -n $dev ]] || fail "the server VM's underlay interface (the one with $SERVER_IP)"

  say "$mode: $how"
  vm server "sudo systemd-run --quiet --collect --unit=minivpn-server-$mode --working-directory=/vagrant $server"
  vm_wait server "minivpn-server-$mode" "listening on udp .* mode=$mode" 180 ||
    { vm_log server "minivpn-server-$mode"; fail "$mode: the server does not listen ($server)"; }
  vm client "sudo systemd-run --quiet --collect --unit=minivpn-client-$mode --working-directory=/vagrant $client"
  vm_wait client "minivpn-client-$mode" "tunnel up: .* mode=$mode" 180 ||
    { vm_log client "minivpn-client-$mode"; vm_log server "minivpn-server-$mode"; fail "$mode: the tunnel does not come up"; }
  vm client "sudo journalctl -u minivpn-client-$mode --no-pager -o cat | grep -E 'handshake done|tunnel up'" | sed 's/^/    client: /'
  pass "$mode: tunnel up between the VMs ($how)"

  vm server "sudo rm -f /tmp/minivpn-$mode.pcap; sudo systemd-run --quiet --collect --unit=minivpn-capture-$mode tcpdump -i $dev --immediate-mode -U -n -s 0 -w /tmp/minivpn-$mode.pcap udp port 1194"
  vm_wait server "minivpn-capture-$mode" 'listening on' 60 ||
    { vm_log server "minivpn-capture-$mode"; fail "$mode: tcpdump on $dev"; }
  marker="minivpn-vagrant-$mode-$RANDOM$RANDOM"
  out=$(vm client "curl -sS -m 30 http://$TUNNEL_SERVER_IP:$WEB_PORT/$marker" 2>&1)
  vm server "sudo systemctl stop minivpn-capture-$mode" # tcpdump writes out what it has and ends
  [[ $out == "minivpn-vagrant-page /$marker" ]] ||
    { echo "    client: $out"; fail "$mode: HTTP request from the client VM to http://$TUNNEL_SERVER_IP:$WEB_PORT/ through the tunnel"; }
  pass "$mode: HTTP request through the tunnel answered ($out)"

  if [[ $mode == plaintext ]]; then
    check_plaintext_capture "$marker" "$dev"
  else
    check_dtls_capture "$marker" "$dev"
  fi
  vm client "sudo systemctl stop minivpn-client-$mode"
  vm server "sudo systemctl stop minivpn-server-$mode"
}

check_plaintext_capture() {
  local marker=$1 dev=$2 text
  text=$(vm server "sudo tcpdump -r /tmp/minivpn-plaintext.pcap -n -A 2>/dev/null")
  grep -aq "GET /$marker HTTP/1.1" <<<"$text" && grep -aq "minivpn-vagrant-page /$marker" <<<"$text" ||
    fail "plaintext: the capture on $dev shows the HTTP request and answer in clear"
  grep -a "GET /$marker HTTP/1.1" <<<"$text" | head -1 | sed 's/^/    capture: /'
  pass "plaintext: tcpdump on the server VM's $dev reads the request and the page in clear"
}

check_dtls_capture() {
  local marker=$1 dev=$2 fields frames other seen
  # One line per packet: its number and the content type of each DTLS record in it.
  fields=$(vm server "sudo tshark -r /tmp/minivpn-dtls.pcap -d udp.port==1194,dtls -T fields -e frame.number -e dtls.record.content_type 2>/dev/null")
  frames=$(grep -c . <<<"$fields")
  other=$(awk -F'\t' '{ n = split($2, t, ","); if (n == 0) { print; next } for (i = 1; i <= n; i++) if (t[i] != 23) { print; next } }' <<<"$fields")
  say "dtls: $frames packets captured on $dev; content types: $(awk -F'\t' '{print $2}' <<<"$fields" | sort | uniq -c | tr -s ' \n' ' ')"
  # An HTTP exchange through the tunnel is at least 5 packets (TCP handshake, request,
  # answer, acknowledgements, close).
  [[ $frames -ge 5 && -z $other ]] ||
    fail "dtls: every packet on $dev is DTLS application data (content type 23); not so: ${other:-only $frames packets}"
  seen=$(vm server "sudo tcpdump -r /tmp/minivpn-dtls.pcap -n -A 2>/dev/null | grep -ac '$marker'; true")
  [[ $seen == 0 ]] || fail "dtls: the request's text must not be readable in the capture (seen in ${seen:-?} packets)"
  pass "dtls: tcpdump on the server VM's $dev sees only DTLS application data ($frames packets, content type 23), the request's text in none"
}
