#!/usr/bin/env bash
# packages.sh - which Debian packages a use of minivpn needs, from scripts/packages.txt.
#
#   scripts/packages.sh USE             the packages, one a line
#   scripts/packages.sh --missing USE   only those not installed (asks dpkg); exit 3 when
#                                       this is no Debian/Ubuntu system (no dpkg-query)
#
# USE: build records demo scale lab test bench vm (packages.txt says what each one gets).
# Read by scripts/deps.sh, scripts/vagrant/build-box.sh and scripts/vagrant/provision.sh.
set -euo pipefail
LIST=${MINIVPN_PACKAGES_LIST:-$(dirname "${BASH_SOURCE[0]}")/packages.txt}

missing=0
if [[ ${1:-} == --missing ]]; then missing=1; shift; fi
use=${1:-}
case $use in
  build | records) tags="build" ;;
  demo) tags="build demo" ;;
  scale) tags="build demo scale" ;;
  lab) tags="build demo lab" ;;
  test) tags="build demo lab test" ;;
  bench) tags="build demo bench" ;;
  vm) tags="build demo lab vm" ;;
  *)
    echo "packages.sh: unknown use '$use' (build, records, demo, scale, lab, test, bench, vm)" >&2
    exit 2 ;;
esac
[[ -r $LIST ]] || { echo "packages.sh: cannot read $LIST" >&2; exit 2; }

# The lines with one of the tags. A tag that no use knows is a typo: say so, not skip it.
pkgs=$(awk -v tags="$tags" '
  BEGIN { n = split(tags, t, " "); for (i = 1; i <= n; i++) want[t[i]] = 1
          split("build demo scale lab test bench vm", k, " "); for (i in k) known[k[i]] = 1 }
  { sub(/#.*/, "") }
  NF == 0 { next }
  NF == 1 { printf "packages.sh: %s line %d: package %s has no use\n", FILENAME, FNR, $1 > "/dev/stderr"; bad = 1; next }
  { hit = 0
    for (i = 2; i <= NF; i++) {
      if (!($i in known)) { printf "packages.sh: %s line %d: unknown use %s\n", FILENAME, FNR, $i > "/dev/stderr"; bad = 1 }
      if ($i in want) hit = 1
    }
    if (hit) print $1 }
  END { exit bad }' "$LIST")

# Ubuntu packages Chromium as chromium-browser (a snap behind an apt package).
if grep -qs '^ID=ubuntu' /etc/os-release; then pkgs=$(sed 's/^chromium$/chromium-browser/' <<<"$pkgs"); fi

if [[ $missing == 0 ]]; then
  [[ -z $pkgs ]] || echo "$pkgs"
  exit 0
fi
command -v dpkg-query >/dev/null 2>&1 || { echo "packages.sh: no dpkg-query: not a Debian or Ubuntu system" >&2; exit 3; }
# One dpkg-query for all; packages dpkg never heard of are simply not in its answer.
# shellcheck disable=SC2086
installed=$(dpkg-query -W -f='${Package} ${Status}\n' $pkgs 2>/dev/null | awk '$NF == "installed" { print $1 }' || true)
for p in $pkgs; do
  grep -qxF "$p" <<<"$installed" || echo "$p"
done
