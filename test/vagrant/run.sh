#!/usr/bin/env bash
# npm run test:vagrant - the Vagrantfile, for real: two VMs, provisioning, the labs' tunnels.
# Slow (the VMs run on an emulated CPU here), so not part of `npm test`; CI runs it when one
# of its inputs changed since the last run that passed (test/vagrant/changed.sh).
#
#   1. the box: a small Debian 13 one from scripts/vagrant/build-box.sh (cached in
#      $MINIVPN_VAGRANT_CACHE, rebuilt when the builder or the box's packages change)
#   2. the build, once, here on the host: a copy of the project, `scripts/deps.sh build`
#      (npm ci: addon and TypeScript; only what is out of date when the working tree has a
#      build already), then only the runtime npm packages kept. The VMs get
#      it with the project folder (MINIVPN_PREBUILT=1): npm ci under an emulated CPU took
#      ten minutes per VM. Provisioning checks that the VMs' own Node loads the addon.
#   3. its own libvirtd INSIDE A NETWORK NAMESPACE of its own: every bridge, address,
#      firewall rule and VM network card libvirt makes lives there, and the namespace has no
#      way out (only "lo"). The machine's own network is never touched.
#   4. `vagrant up` with vagrant-libvirt, both VMs booting at once (the client is provisioned
#      after the server, whose PKI it needs): software emulation (KVM does not boot a guest
#      kernel on this machine), networks without forwarding (MINIVPN_ISOLATED=1)
#   5. checks: Node.js and the addon in the VMs, the PKI reached the client, ping between
#      the VMs on the private network 192.0.2.0/24
#   6. the labs' comparison (labs 2 and 3), in the two VMs: the plaintext tunnel, then the
#      DTLS tunnel (`npm run server` / `npm run client`), an HTTP request through each to a
#      web server on the server VM, and tcpdump on the server VM's underlay interface: the
#      request's text in the plaintext capture; in the DTLS capture nothing but DTLS
#      application-data records (content type 23), and not the text
#   7. on ANY exit: destroys every VM, volume, network and pool it made, stops its libvirtd,
#      deletes the namespace, and checks that nothing is left.
# The last line is "N passed, N failed"; before it, the time each phase took.
#
# Options:  --no-vpn   stop after step 5 (step 6 is counted as skipped)
#           --keep     on failure, wait for Enter before cleaning up (to look around with
#                      the command it prints)
#           --record   after a run that passed, write test/vagrant/last-pass (commit it):
#                      CI then skips the test until one of its inputs changes
# Environment:  MINIVPN_VAGRANT_CACHE  where boxes and the npm cache are kept
#                                      (default /var/tmp/minivpn-vagrant-cache)
#               MINIVPN_VAGRANT_REBUILD=1  build the box even if a cached one fits
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
CACHE=${MINIVPN_VAGRANT_CACHE:-/var/tmp/minivpn-vagrant-cache}
NAME=minivpn-vagrant-test  # the project copy's folder: vagrant-libvirt names the VMs after it
POOL=minivpn-vagrant-test  # libvirt storage pool, in the work folder
NETWORKS=(minivpn-mgmt minivpn-underlay)
BOX_NAME=minivpn-test/debian13
SERVER_IP=192.0.2.10
CLIENT_IP=192.0.2.20
NS=mvvg-$$                 # our network namespace

DO_VPN=1
KEEP=0
RECORD=0
for a in "$@"; do
  case $a in
    --no-vpn) DO_VPN=0 ;;
    --keep) KEEP=1 ;;
    --record) RECORD=1 ;;
    -h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--no-vpn] [--keep] [--record]" >&2; exit 2 ;;
  esac
done

passed=0
failed=0
skipped=0
T0=$(date +%s)
say() { echo "[test:vagrant +$(($(date +%s) - T0))s] $*"; }
# phase NAME: the time from here to the next phase is NAME's, in the closing summary.
PHASES=()
PHASE=
PHASE_T=$T0
phase() {
  local now
  now=$(date +%s)
  [[ -z $PHASE ]] || PHASES+=("$PHASE $((now - PHASE_T)) s")
  PHASE=$1
  PHASE_T=$now
}
pass() { passed=$((passed + 1)); say "ok: $*"; }
# A failed step ends the test; the EXIT trap cleans up and prints the totals.
fail() { failed=$((failed + 1)); say "FAILED: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "must run as root (libvirtd, network namespace, debootstrap)"

# ---- host packages ---------------------------------------------------------------------
phase "host packages"
need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need vagrant vagrant
need virsh libvirt-clients
need libvirtd libvirt-daemon-system
need qemu-system-x86_64 qemu-system-x86
need qemu-img qemu-utils
need debootstrap debootstrap
need dnsmasq dnsmasq-base
need rsync rsync
need mkfs.ext4 e2fsprogs
if ! command -v vagrant >/dev/null || ! vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt; then
  need_pkgs+=(vagrant-libvirt)
fi
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
  say "installing host packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_pkgs[@]}"; } \
    >/tmp/minivpn-vagrant-apt.log 2>&1 || fail "apt-get install ${need_pkgs[*]} failed (see /tmp/minivpn-vagrant-apt.log)"
fi

# Our libvirtd would fight with one that runs already.
if pgrep -x libvirtd >/dev/null || pgrep -x virtqemud >/dev/null; then
  fail "a libvirtd is running already; this test starts its own inside a network namespace (stop the other one first)"
fi

# ---- state and cleanup -------------------------------------------------------------------
W=$(mktemp -d /var/tmp/minivpn-vagrant-test.XXXXXX)
chmod 0755 "$W" # libvirt's QEMU runs as libvirt-qemu and must reach the disks and kernel below
LIBVIRTD_PID=
VIRTLOGD_PID=
KVM_SAVED=
UP_STARTED=0

in_ns() { ip netns exec "$NS" "$@"; }
virsh_() { in_ns virsh -q -c qemu:///system "$@"; }
# Everything vagrant needs to know, for every vagrant command of this test.
VG_ENV=(VAGRANT_HOME="$W/vagrant.d" VAGRANT_DOTFILE_PATH="$W/dot-vagrant" VAGRANT_CWD="$W/$NAME"
  VAGRANT_DEFAULT_PROVIDER=libvirt VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
  LIBVIRT_DEFAULT_URI=qemu:///system
  MINIVPN_BOX="$BOX_NAME" MINIVPN_LIBVIRT_DRIVER=qemu MINIVPN_LIBVIRT_POOL="$POOL"
  MINIVPN_ISOLATED=1 MINIVPN_PREBUILT=1)
vg() { in_ns env "${VG_ENV[@]}" vagrant "$@"; }
# vm NAME CMD: run a shell command in a VM. Plain ssh with `vagrant ssh-config`'s settings:
# each `vagrant ssh` would start Ruby and vagrant first, seconds each on a busy machine.
vm() { in_ns ssh -F "$W/ssh-config" -o LogLevel=ERROR "$1" "$2" </dev/null; }

ours_domains() { virsh_ list --all --name 2>/dev/null | grep -E "^${NAME}_" || true; }
ours_networks() {
  local n
  for n in "${NETWORKS[@]}"; do virsh_ net-info "$n" >/dev/null 2>&1 && echo "$n"; done
}

# Remove every domain, network and volume this test makes (also leftovers of an earlier,
# killed run: they carry this test's names).
libvirt_cleanup() {
  local d n v
  for d in $(ours_domains); do
    say "removing domain $d"
    virsh_ destroy "$d" >/dev/null 2>&1
    virsh_ undefine "$d" --remove-all-storage >/dev/null 2>&1 || virsh_ undefine "$d" >/dev/null 2>&1
  done
  for n in $(ours_networks); do
    say "removing network $n"
    virsh_ net-destroy "$n" >/dev/null 2>&1
    virsh_ net-undefine "$n" >/dev/null 2>&1
  done
  if virsh_ pool-info "$POOL" >/dev/null 2>&1; then
    virsh_ pool-refresh "$POOL" >/dev/null 2>&1
    for v in $(virsh_ vol-list "$POOL" 2>/dev/null | awk '{print $1}'); do
      say "removing volume $v"
      virsh_ vol-delete --pool "$POOL" "$v" >/dev/null 2>&1
    done
    virsh_ pool-destroy "$POOL" >/dev/null 2>&1
    virsh_ pool-undefine "$POOL" >/dev/null 2>&1
  fi
}

# Is PID still running (and not a zombie)?
alive() { [[ -n $1 && -r /proc/$1/stat ]] && [[ $(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat") != Z ]]; }
stop_pid() {
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
}

# After a run that passed (--record): test/vagrant/last-pass names the commit and the
# state of the test's inputs, for CI's rule (test/vagrant/changed.sh).
record_pass() {
  local inputs
  if ! inputs=$(bash "$HERE/changed.sh" --inputs-id); then
    say "--record: not recorded, the test's inputs have changes not committed: commit them, run again"
    return
  fi
  {
    echo "# The last full run of npm run test:vagrant that passed (written by run.sh --record)."
    echo "# CI runs the test again only when one of its inputs changed since: test/vagrant/changed.sh."
    echo "commit $(git -C "$PROJECT" rev-parse HEAD)"
    echo "inputs $inputs"
    echo "date $(date -u +%Y-%m-%d)"
    echo "result $passed passed, $failed failed in $(($(date +%s) - T0)) s"
  } >"$HERE/last-pass"
  say "--record: wrote test/vagrant/last-pass (commit it)"
}

cleanup() {
  local rc=$? left=0 p
  trap - EXIT INT TERM
  set +e
  if [[ $failed -gt 0 && $KEEP == 1 ]]; then
    say "--keep: look around, e.g.: ip netns exec $NS env VAGRANT_HOME=$W/vagrant.d VAGRANT_DOTFILE_PATH=$W/dot-vagrant VAGRANT_CWD=$W/$NAME vagrant ssh server"
    read -rp "press Enter to clean up " _ </dev/tty
  fi
  phase "clean-up"
  say "cleaning up"
  if [[ -n $LIBVIRTD_PID ]] && alive "$LIBVIRTD_PID"; then
    [[ $UP_STARTED == 1 ]] && timeout 600 ip netns exec "$NS" env "${VG_ENV[@]}" vagrant destroy -f >"$W/destroy.log" 2>&1
    libvirt_cleanup
    # Proof that nothing of ours is left in libvirt.
    [[ -z $(ours_domains) ]] || { say "LEFT OVER: domains $(ours_domains | tr '\n' ' ')"; left=1; }
    [[ -z $(ours_networks) ]] || { say "LEFT OVER: networks $(ours_networks | tr '\n' ' ')"; left=1; }
    virsh_ pool-info "$POOL" >/dev/null 2>&1 && { say "LEFT OVER: pool $POOL"; left=1; }
    say "virsh list --all: $(virsh_ list --all --name | tr '\n' ' ')"
    say "virsh net-list --all: $(virsh_ net-list --all --name | tr '\n' ' ')"
    say "virsh pool-list --all: $(virsh_ pool-list --all --name | tr '\n' ' ')"
    virsh_ pool-info default >/dev/null 2>&1 && say "virsh vol-list default: $(virsh_ vol-list default | awk '{print $1}' | tr '\n' ' ')"
  fi
  stop_pid "$LIBVIRTD_PID"
  stop_pid "$VIRTLOGD_PID"
  # Anything else still in our namespace was started by our libvirtd (QEMU, dnsmasq).
  if [[ -e /run/netns/$NS ]]; then
    for p in $(ip netns pids "$NS" 2>/dev/null); do say "stopping leftover pid $p ($(cat /proc/$p/comm 2>/dev/null))"; stop_pid "$p"; done
    ip netns del "$NS"
  fi
  ip netns list | grep -qw "$NS" && { say "LEFT OVER: network namespace $NS"; left=1; }
  # libvirt's interfaces were all inside the namespace; none may show up out here.
  if ip -o link show | grep -qE ': (vnet[0-9]+|virbr[0-9]+)[:@]'; then
    say "LEFT OVER in the root namespace: $(ip -o link show | grep -oE ': (vnet[0-9]+|virbr[0-9]+)' | tr '\n' ' ')"; left=1
  fi
  if [[ -n $KVM_SAVED ]]; then
    read -r mode group <<<"$KVM_SAVED"
    chgrp "$group" /dev/kvm && chmod "$mode" /dev/kvm
    say "/dev/kvm: restored to $(stat -c '%a %G' /dev/kvm)"
  fi
  phase ""
  say "times: $(printf '%s, ' "${PHASES[@]}")total $(($(date +%s) - T0)) s"
  # The logs of the last run stay in the cache folder, for a look after a failure.
  rm -rf "$CACHE/last-run" && mkdir -p "$CACHE/last-run" && cp "$W"/*.log "$CACHE/last-run/" 2>/dev/null
  rm -rf "$W"
  [[ $left -eq 0 ]] || { failed=$((failed + 1)); say "FAILED: cleanup left things behind"; }
  [[ $left -eq 0 ]] && say "clean: no VM, volume, network, pool or namespace of this test is left"
  [[ $RECORD == 1 && $failed -eq 0 && $rc -eq 0 && $skipped -eq 0 ]] && record_pass
  if [[ $skipped -gt 0 ]]; then
    echo "$passed passed, $failed failed, $skipped skipped"
  else
    echo "$passed passed, $failed failed"
  fi
  [[ $failed -eq 0 && $rc -eq 0 ]] && exit 0
  exit 1
}
trap cleanup EXIT
trap 'failed=$((failed + 1)); say "FAILED: interrupted"; exit 130' INT TERM

# ---- 1. the box --------------------------------------------------------------------------
phase box
mkdir -p "$CACHE"
box_pkgs=$(bash "$PROJECT/scripts/vagrant/build-box.sh" --list-packages) || fail "build-box.sh --list-packages"
box_hash=$( (cat "$PROJECT/scripts/vagrant/build-box.sh"; echo "$box_pkgs") | sha256sum | cut -c1-12)
BOX_FILE=$CACHE/minivpn-debian13-$box_hash.box
if [[ ! -f $BOX_FILE || ${MINIVPN_VAGRANT_REBUILD:-0} == 1 ]]; then
  rm -f "$CACHE"/minivpn-debian13-*.box
  say "building the Debian 13 box (about 5-10 minutes)"
  bash "$PROJECT/scripts/vagrant/build-box.sh" --out "$BOX_FILE" 2>&1 | sed 's/^/    /'
  [[ ${PIPESTATUS[0]} -eq 0 && -f $BOX_FILE ]] || fail "box build"
  pass "box built: $BOX_FILE ($(du -m "$BOX_FILE" | cut -f1) MiB)"
else
  pass "box from the cache: $BOX_FILE ($(du -m "$BOX_FILE" | cut -f1) MiB)"
fi

# ---- 2. the build, on the host, in a copy of the project (the working tree stays as it is) --
phase "host build"
# With the working tree's own build, if it has one (npm test made it): deps.sh then redoes
# only what is older than its sources, as in the working tree itself.
rsync -a --delete --exclude .git/ --exclude .tap/ --exclude /pki/ --exclude /run/ --exclude .vagrant/ \
  "$PROJECT/" "$W/$NAME/" || fail "copying the project"
build_env=("npm_config_cache=$CACHE/npm" "npm_config_prefer_offline=true")
# Node's headers from the installed Node, as in the VMs: node-gyp downloads nothing.
[[ -f /usr/include/node/node_api.h ]] && build_env+=("npm_config_nodedir=/usr")
say "building on the host with Node $(node -v): scripts/deps.sh build, then npm prune --omit=dev"
(cd "$W/$NAME" && env "${build_env[@]}" bash scripts/deps.sh build &&
  env "${build_env[@]}" npm prune --omit=dev --no-audit --no-fund --loglevel=error) >"$W/build.log" 2>&1 ||
  fail "the build on the host (scripts/deps.sh build); last lines: $(tail -5 "$W/build.log" | tr '\n' ' ')"
# pruning rewrote node_modules/.package-lock.json, not package-lock.json: make sure of that.
cmp -s "$PROJECT/package-lock.json" "$W/$NAME/package-lock.json" || fail "npm prune changed package-lock.json"
host_abi=$(node -p '`Node ${process.version}, modules ${process.versions.modules}, N-API ${process.versions.napi}, OpenSSL ${process.versions.openssl}`')
pass "built on the host ($host_abi): addon, dist/, runtime node_modules/ ($(du -sm "$W/$NAME/node_modules" | cut -f1) MiB)"

# ---- 3. our own libvirtd, in our own network namespace ------------------------------------
phase libvirtd
ip netns add "$NS" || fail "ip netns add $NS"
ip -n "$NS" link set lo up
# libvirt checks /dev/kvm again on every VM definition while only root may open it, which
# made `vagrant up` five times slower here. Group kvm may use it during the run; restored after.
if [[ -c /dev/kvm ]] && getent group kvm >/dev/null; then
  KVM_SAVED="$(stat -c '%a %G' /dev/kvm)"
  say "/dev/kvm: mode/group $KVM_SAVED -> 660 kvm for the run"
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
in_ns virtlogd -d || fail "virtlogd did not start"
VIRTLOGD_PID=$(cat /run/virtlogd.pid 2>/dev/null)
in_ns libvirtd -d || fail "libvirtd did not start"
LIBVIRTD_PID=$(cat /run/libvirtd.pid 2>/dev/null)
for _ in $(seq 60); do virsh_ version >/dev/null 2>&1 && break; sleep 0.5; done
virsh_ version >/dev/null 2>&1 || fail "libvirtd does not answer"
libvirt_cleanup # leftovers of an earlier run that was killed
mkdir -p "$W/pool"
virsh_ pool-define-as "$POOL" dir --target "$W/pool" >/dev/null &&
  virsh_ pool-start "$POOL" >/dev/null || fail "libvirt storage pool $POOL"
pass "libvirtd $(libvirtd --version | awk '{print $NF}') running in network namespace $NS (only 'lo': no way out)"

# ---- 4. vagrant up: both VMs boot at the same time ----------------------------------------
# The client's provisioning needs the server's PKI, so it waits for the server's `vagrant up`
# (then `vagrant rsync client` and `vagrant provision client`, as docs/VAGRANT.md says for a
# client added later); but booting is most of the time, and both boot at once. The client
# starts once the server's VM is defined: the box's volume and the networks exist then.
phase "box add"
vg box add --name "$BOX_NAME" "$BOX_FILE" >"$W/box-add.log" 2>&1 || fail "vagrant box add (see $W/box-add.log)"
# stamp: each line with the test's clock; without vagrant-libvirt's upload progress, which
# redraws one line thousands of times.
stamp() {
  local l
  sed -u 's/\r/\n/g' | grep --line-buffered -v 'Progress: ' |
    while IFS= read -r l; do printf '[+%ss] %s\n' "$(($(date +%s) - T0))" "$l"; done
}
up() { timeout 3600 ip netns exec "$NS" env "${VG_ENV[@]}" vagrant up "$@" --provider=libvirt 2>&1 | stamp; }
phase "vagrant up"
UP_STARTED=1
say "vagrant up server; vagrant up client --no-provision as soon as the server's VM is defined (emulated CPUs: minutes)"
t_up=$(date +%s)
up server >"$W/up-server.log" &
up_server=$!
for _ in $(seq 1800); do
  grep -q 'Starting domain' "$W/up-server.log" && break
  alive "$up_server" || break
  sleep 0.5
done
up client --no-provision >"$W/up-client.log" &
up_client=$!
wait "$up_server"
rc_server=$?
wait "$up_client"
rc_client=$?
sed 's/^/    /' "$W/up-server.log" "$W/up-client.log"
[[ $rc_server -eq 0 ]] || fail "vagrant up server"
pass "vagrant up server: booted and provisioned (PKI made) in $(($(date +%s) - t_up)) s"
[[ $rc_client -eq 0 ]] || fail "vagrant up client --no-provision"
t_prov=$(date +%s)
{ timeout 600 ip netns exec "$NS" env "${VG_ENV[@]}" vagrant rsync client 2>&1 &&
  timeout 1800 ip netns exec "$NS" env "${VG_ENV[@]}" vagrant provision client 2>&1; } | stamp | tee "$W/provision-client.log" | sed 's/^/    /'
[[ ${PIPESTATUS[0]} -eq 0 ]] || fail "vagrant rsync client && vagrant provision client"
pass "vagrant up client, then rsync and provision with the server's PKI: $(($(date +%s) - t_up)) s in all (provision $(($(date +%s) - t_prov)) s)"
vg ssh-config server client >"$W/ssh-config" 2>"$W/ssh-config.log" || fail "vagrant ssh-config"

# ---- 5. what provisioning left in the VMs ------------------------------------------------
phase checks
for m in server client; do
  out=$(vm "$m" 'cd /vagrant && node -e "const v = process.versions; require(\"./dist/src/native.js\");
    console.log(\"Node \" + process.version + \", modules \" + v.modules + \", N-API \" + v.napi + \", OpenSSL \" + v.openssl + \": addon-loads\")"' 2>&1)
  echo "$out" | sed "s/^/    $m: /"
  grep -q '^Node v2[0-9]\..*: addon-loads$' <<<"$out" || fail "$m: Node.js 20+ and the native addon"
  vm "$m" 'systemd-analyze 2>&1 | head -1' 2>&1 | sed "s/^/    $m: boot: /" # for docs/VAGRANT.md
done
pass "both VMs: Debian's Node.js loads the addon built on the host ($host_abi)"

ca_server=$(vm server 'sha256sum /vagrant/pki/ca.crt' | awk '{print $1}')
ca_client=$(vm client 'sha256sum /vagrant/pki/ca.crt; test -f /vagrant/pki/clients/alice.key && echo key-ok' 2>&1)
say "CA certificate sha256: server $ca_server; client: $(echo "$ca_client" | head -1 | awk '{print $1}')"
[[ -n $ca_server && $(head -1 <<<"$ca_client" | awk '{print $1}') == "$ca_server" ]] && grep -q key-ok <<<"$ca_client" ||
  fail "the client VM has the server's PKI (pki/ca.crt, pki/clients/alice.key)"
pass "PKI made on the server reached the client through the project folder"

vm client "sudo ping -c 3 -W 2 $SERVER_IP" 2>&1 | sed 's/^/    client: /'
[[ ${PIPESTATUS[0]} -eq 0 ]] || fail "ping client -> server ($SERVER_IP)"
vm server "sudo ping -c 3 -W 2 $CLIENT_IP" 2>&1 | sed 's/^/    server: /'
[[ ${PIPESTATUS[0]} -eq 0 ]] || fail "ping server -> client ($CLIENT_IP)"
pass "ping between the VMs on the private network ($SERVER_IP <-> $CLIENT_IP)"

# ---- 6. the labs' comparison: plaintext tunnel, then DTLS -----------------------------------
if [[ $DO_VPN == 0 ]]; then
  skipped=$((skipped + 1))
  say "--no-vpn: not starting the VPN"
  exit 0
fi
node -e 'const s = require(process.argv[1]).scripts || {}; process.exit(s.server && s.client ? 0 : 1)' "$W/$NAME/package.json" ||
  fail "package.json has no \"server\" and \"client\" scripts: the VPN step cannot run"
. "$HERE/tunnels.sh"
phase "plaintext tunnel"
tunnel_check plaintext
phase "DTLS tunnel"
tunnel_check dtls
exit 0
