#!/usr/bin/env bash
# Installs what minivpn needs on Debian/Ubuntu, only what is missing:
# system packages (when root; which ones: scripts/packages.txt), npm dependencies, the native
# addon and the TypeScript build.
# Usage: scripts/deps.sh [demo|lab|test|bench|scale|records|build]   (each installs what that use needs)
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-demo}
case $want in demo|lab|test|bench|scale|records|build) ;; *) echo "[deps] unknown use '$want' (demo, lab, test, bench, scale, records, build)" >&2; exit 2 ;; esac

step() { echo "[deps] $*"; }

# Node itself is the one thing we cannot install for you: say so before anything fails oddly.
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "[deps] minivpn needs Node.js 20, 22 or 24; this is $(node --version 2>/dev/null || echo 'no node')." >&2
  echo "[deps] Debian 12 and Ubuntu before 25.04 ship an older one: install Node from nodejs.org or NodeSource." >&2
  exit 1
fi

# The Debian packages this use needs, from the one list (scripts/packages.txt), that are
# not installed yet. Without dpkg (not Debian/Ubuntu) we cannot tell: name them, carry on.
pkgs=()
rc=0
missing=$(bash scripts/packages.sh --missing "$want") || rc=$?
if [ $rc -eq 3 ]; then
  echo "[deps] so check these yourself (Debian's names): $(bash scripts/packages.sh "$want" | tr '\n' ' ')" >&2
elif [ $rc -ne 0 ]; then
  exit 1
elif [ -n "$missing" ]; then
  mapfile -t pkgs <<<"$missing"
fi
if [ ${#pkgs[@]} -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "[deps] missing system packages: ${pkgs[*]} (run as root, or: sudo apt-get install ${pkgs[*]})" >&2
  # The lab command also has parts that need none of them (report, list): carry on.
  [ "$want" = lab ] || exit 1
  pkgs=()
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  step "installing system packages: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  # A fresh machine's daily apt run may hold apt's locks for minutes: wait for them rather than
  # fail (install waits by itself with DPkg::Lock::Timeout; update does not, so it is retried).
  apt_update() {
    local err i
    for i in $(seq 60); do
      err=$(apt-get -o DPkg::Lock::Timeout=600 update -qq 2>&1 >/dev/null) && return 0
      grep -q 'Could not get lock' <<<"$err" || break
      [ "$i" = 1 ] && step "apt is busy (another apt run holds its lock): waiting"
      sleep 10
    done
    echo "$err" >&2
    return 1
  }
  apt_update
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# newer TARGET PATH...: true when TARGET is missing or something under PATH is newer.
newer() {
  local target=$1; shift
  [ -e "$target" ] || return 0
  [ -n "$(find "$@" -newer "$target" -print -quit 2>/dev/null)" ]
}

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "installing npm dependencies and building the native addon (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  touch dist/.built
else
  # Rebuild only what changed since the last build.
  if newer build/Release/minivpn.node native binding.gyp; then
    step "building the native addon"
    npx --no-install node-gyp rebuild --loglevel=error >/dev/null
  fi
  if newer dist/.built src test bench tsconfig.json; then
    step "compiling TypeScript"
    npx --no-install tsc -p .
    touch dist/.built
  fi
fi

# A moved source file (src/config.ts became src/config/index.ts) leaves its old compiled file
# behind, and require('../config') would still load the stale dist/src/config.js: remove
# compiled files whose source is gone.
if [ -d dist ] && [ -d src ]; then
  find dist/src dist/test dist/bench -name '*.js' 2>/dev/null | while read -r js; do
    ts=${js#dist/}
    [ -e "${ts%.js}.ts" ] || rm -f "$js" "$js.map"
  done || true
fi
