#!/usr/bin/env bash
# Installs what minivpn needs on Debian/Ubuntu, only what is missing:
# system packages (when root), npm dependencies, the native addon and the TypeScript build.
# Usage: scripts/deps.sh [demo|lab|test|bench]   (each installs what that use needs)
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-demo}

step() { echo "[deps] $*"; }

# Each command we need -> the Debian package that brings it.
pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || pkgs+=("$2"); }
need ip iproute2
need iptables iptables
need tcpdump tcpdump
need openssl openssl
need curl curl
need ping iputils-ping
need sysctl procps
need make make
need g++ g++
need python3 python3
if [ "$want" != demo ]; then
  need tshark tshark
  need tcpreplay tcpreplay
fi
if [ "$want" = test ]; then
  need chromium chromium
fi
if [ "$want" = bench ]; then
  need iperf3 iperf3
  need openvpn openvpn
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
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
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
