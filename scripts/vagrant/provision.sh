#!/usr/bin/env bash
# provision.sh server|client - what `vagrant up` runs inside each VM, as root.
#
#   1. Debian packages: `scripts/packages.sh vm` (from scripts/packages.txt), only those
#      missing. Node.js comes from Debian 13 itself (Node 20): no third-party repository.
#   2. The build, by the same script as the namespace lab: scripts/deps.sh (npm ci, which
#      builds the native addon and the TypeScript). It runs as the owner of /vagrant (the
#      "vagrant" user), so a student can rebuild later without sudo.
#   3. The PKI. server: `npm run pki` writes pki/ (it keeps what is there already).
#      client: checks that pki/ arrived. The Vagrantfile copies pki/ from the server VM to
#      the project folder on the host after the server is up; the synced folder then
#      carries it into the client VM.
#
# Environment (the Vagrantfile sets these):
#   MINIVPN_OFFLINE=1   the VM has no way out: never run apt-get update, and fail with a
#                       clear message if a package is missing
#   MINIVPN_NPM_CACHE   a directory in the VM holding an npm cache for package-lock.json:
#                       npm ci then runs offline from it
#   MINIVPN_PREBUILT=1  node_modules/, build/ and dist/ came built from the host: deps.sh
#                       finds them up to date, and the addon must load with this VM's Node
#   MINIVPN_SERVER_IP   the server VM's address, for the closing hint (default 192.0.2.10)
#   MINIVPN_SRC         the project folder in the VM (default /vagrant)
set -euo pipefail

ROLE=${1:-}
SRC=${MINIVPN_SRC:-/vagrant}
say() { echo "[provision $ROLE] $*"; }
die() { echo "[provision $ROLE] error: $*" >&2; exit 1; }

[[ $ROLE == server || $ROLE == client ]] || die "usage: provision.sh server|client"
[[ $(id -u) -eq 0 ]] || die "must run as root (Vagrant's shell provisioner does)"
[[ -f $SRC/package.json ]] || die "$SRC/package.json not found: is the project synced to $SRC?"
cd "$SRC"

# ---- 1. Debian packages ---------------------------------------------------------------
# The VMs' packages: what the build, the demo and the labs need, and Node itself
# (scripts/packages.txt, the list scripts/deps.sh and build-box.sh read too).
mapfile -t wanted < <(bash scripts/packages.sh vm)
[[ ${#wanted[@]} -gt 0 ]] || die "scripts/packages.sh vm named no packages"
missing=()
if ! out=$(bash scripts/packages.sh --missing vm); then die "scripts/packages.sh --missing vm failed"; fi
[[ -z $out ]] || mapfile -t missing <<<"$out"
if [[ ${#missing[@]} -eq 0 ]]; then
  say "Debian packages: all ${#wanted[@]} present"
else
  [[ ${MINIVPN_OFFLINE:-0} != 1 ]] ||
    die "packages missing and the VM is offline (MINIVPN_OFFLINE=1): ${missing[*]}"
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# minivpn needs Node.js 20 or newer (package.json "engines").
node_major=$(node -p 'process.versions.node.split(".")[0]')
[[ $node_major -ge 20 ]] ||
  die "Node.js $(node -v) is too old (need 20 or newer): use a Debian 13 box (MINIVPN_BOX)"
say "Node.js $(node -v)"

# ---- 2. the build -----------------------------------------------------------------------
owner=$(stat -c %U "$SRC")
home=$(getent passwd "$owner" | cut -d: -f6)
npm_env=("HOME=$home" "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
# Debian's Node has its headers in /usr/include/node (libnode-dev). Without nodedir,
# node-gyp would download a header tarball from the internet instead.
[[ -f /usr/include/node/node_api.h ]] && npm_env+=("npm_config_nodedir=/usr")
if [[ -n ${MINIVPN_NPM_CACHE:-} ]]; then
  [[ -d $MINIVPN_NPM_CACHE ]] || die "MINIVPN_NPM_CACHE=$MINIVPN_NPM_CACHE is not a directory"
  say "npm runs offline from the cache in $MINIVPN_NPM_CACHE"
  npm_env+=("npm_config_cache=$MINIVPN_NPM_CACHE" "npm_config_offline=true")
fi
# as_owner CMD...: run CMD as the owner of the project folder, with a clean environment.
as_owner() { runuser -u "$owner" -- env -i "${npm_env[@]}" "$@"; }

if [[ ${MINIVPN_PREBUILT:-0} == 1 ]]; then
  say "checking the build from the host as $owner (MINIVPN_PREBUILT=1): scripts/deps.sh"
else
  say "building as $owner: scripts/deps.sh (npm ci: native addon and TypeScript)"
fi
as_owner bash scripts/deps.sh demo
# The addon is C++ built against one Node: make sure this VM's Node loads it (a build from
# the host, MINIVPN_PREBUILT, is from the host's Node).
as_owner node -e 'require("./dist/src/native.js")' ||
  die "the native addon in $SRC/build does not load with this VM's Node $(node -v)${MINIVPN_PREBUILT:+ (it was built on the host: build in the VM instead, without MINIVPN_PREBUILT)}"
say "the native addon loads with Node $(node -v)"

# ---- 3. PKI -----------------------------------------------------------------------------
if [[ $ROLE == server ]]; then
  # What `npm run pki` runs; npm itself takes half a minute to start on an emulated CPU.
  say "PKI: node dist/src/pki/cli.js, as npm run pki (keeps an existing CA and certificates)"
  as_owner node dist/src/pki/cli.js
else
  for f in pki/ca.crt pki/clients/alice.crt pki/clients/alice.key; do
    [[ -f $f ]] || die "$SRC/$f is missing. The PKI is made on the server VM and reaches the client
  through the project folder: run 'vagrant up server' (or 'vagrant provision server') first,
  check that pki/ appeared next to the Vagrantfile, then 'vagrant provision client'."
  done
  say "PKI: found pki/ca.crt and the client certificates"
fi

if [[ $ROLE == server ]]; then
  say "ready. Start the VPN server:  vagrant ssh server -c 'cd /vagrant && sudo npm run server'"
else
  say "ready. Start the VPN client:  vagrant ssh client -c 'cd /vagrant && sudo npm run client -- --server ${MINIVPN_SERVER_IP:-192.0.2.10}:1194 --name alice'"
fi
