#!/usr/bin/env bash
# Installs what minivpn needs on Debian/Ubuntu, only what is missing:
# system packages (when root), npm dependencies, the native addon and the TypeScript build.
# Usage: scripts/deps.sh [test|demo|bench]
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
if [ "$want" = test ] || [ "$want" = bench ]; then
  need tshark tshark
  need tcpreplay tcpreplay
  need chromium chromium
fi
if [ "$want" = bench ]; then
  need iperf3 iperf3
  need openvpn openvpn
fi

if [ ${#pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "[deps] missing system packages: ${pkgs[*]} (run as root, or: sudo apt-get install ${pkgs[*]})" >&2
    exit 1
  fi
  step "installing system packages: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer for it.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "installing npm dependencies and building the native addon (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
else
  # Sources may have changed since the last build.
  step "building the native addon and TypeScript"
  npx --no-install node-gyp rebuild --loglevel=error >/dev/null
  npx --no-install tsc -p .
fi
