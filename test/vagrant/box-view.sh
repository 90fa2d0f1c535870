#!/usr/bin/env bash
# box-view.sh - runs a command on this machine as if only some Debian packages were
# installed: a quick stand-in for a VM made from the box, for test/vagrant-packages.test.ts.
#
#   box-view.sh prepare DIR PACKAGE...   the view of a system with these packages (and what
#                                        they depend on, and Debian's required base) installed
#   box-view.sh run DIR CMD...           CMD in that view; needs root
#
# In the view (a private mount namespace; nothing outside it changes):
#   - /usr/bin, /usr/sbin, /usr/local/bin hold only the commands of those packages, so a
#     script that asks `command -v tshark` gets the answer the box would give. A command
#     comes from this machine's own copy: a package this machine lacks brings none.
#   - dpkg-query answers from the same package set; apt-get fails (the box has no way out)
#   - npm and npx are stubs: `npm ci` makes node_modules/ and dist/ as the real one would
#     (the build itself is not what is tested here)
# Every stub call is logged, with the caller's uid, to DIR/log.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
[[ -n $dir ]] || { echo "usage: box-view.sh prepare DIR PACKAGE... | run DIR CMD..." >&2; exit 2; }
shift 2

# The files in bin directories of the packages listed in file $1 that are installed here
# (merged /usr: /bin is /usr/bin).
pkg_commands() {
  find /var/lib/dpkg/info -name '*.list' |
    awk 'NR == FNR { want[$1] = 1; next }
         { n = $0; sub(/.*\//, "", n); sub(/\.list$/, "", n); sub(/:.*/, "", n); if (n in want) print }' "$1" - |
    xargs -r grep -hE '^(/usr)?/(s)?bin/[^/]+$|^/usr/local/bin/[^/]+$' |
    sed -E 's#^/(s?bin)/#/usr/\1/#' | sort -u
}

prepare() {
  mkdir -p "$dir"
  chmod 0755 "$dir"
  # The packages and everything they depend on (Depends, Pre-Depends), as this machine's
  # apt knows them; plus Debian's base (Essential or Priority: required) and apt.
  {
    printf '%s\n' "$@"
    [[ $# -eq 0 ]] || apt-cache depends --recurse --important "$@" 2>/dev/null | grep -v '^ ' || true
    dpkg-query -W -f='${Package} ${Essential} ${Priority}\n' | awk '$2 == "yes" || $3 == "required" { print $1 }'
    echo apt
  } | grep -vE '^<|^$' | sed 's/:.*//' | sort -u >"$dir/installed"
  pkg_commands "$dir/installed" >"$dir/commands"
  # Commands made by update-alternatives (iptables, ...) belong to no package's file list:
  # in the view when the program they point to is.
  find /usr/bin /usr/sbin -maxdepth 1 -lname '/etc/alternatives/*' -printf '%p\n' | sort >"$dir/alt"
  if [[ -s $dir/alt ]]; then
    xargs readlink -f <"$dir/alt" | paste "$dir/alt" - |
      awk 'NR == FNR { have[$1] = 1; next } $2 in have { print $1 }' "$dir/commands" - >>"$dir/commands"
  fi
  # The view's bin directories: links to the real /usr, bind-mounted at DIR/real in the
  # namespace; the stubs over the real commands of the same name.
  mkdir -p "$dir/real" "$dir/view/bin" "$dir/view/sbin" "$dir/view/local-bin" "$dir/stubs"
  local d
  for d in bin sbin; do
    { grep "^/usr/$d/" "$dir/commands" || true; } | sed "s#^/usr/#$dir/real/#" | xargs -r ln -sf -t "$dir/view/$d"
  done
  : >"$dir/log"
  chmod 0666 "$dir/log"
  write_stubs
  ln -sf -t "$dir/view/bin" "$dir"/stubs/*
}

write_stubs() {
  local s=$dir/stubs log=$dir/log installed=$dir/installed
  cat >"$s/dpkg-query" <<EOF
#!/bin/bash
# dpkg-query -W [-f=FORMAT] PACKAGE...: answers from the view's package set.
echo "dpkg-query \$* (uid \$(id -u))" >>$log
fmt='\${binary:Package}\n'; pkgs=()
for a in "\$@"; do
  case \$a in -W|--show) ;; -f=*|--showformat=*) fmt=\${a#*=} ;; -*) echo "dpkg-query stub: \$a not supported" >&2; exit 2 ;; *) pkgs+=("\$a") ;; esac
done
rc=0
for p in "\${pkgs[@]}"; do
  if grep -qxF "\$p" $installed; then
    out=\${fmt//'\${Package}'/\$p}; out=\${out//'\${binary:Package}'/\$p}
    out=\${out//'\${Status}'/install ok installed}; out=\${out//'\${db:Status-Abbrev}'/ii }
    printf '%b' "\$out"
  else
    echo "dpkg-query: no packages found matching \$p" >&2; rc=1
  fi
done
exit \$rc
EOF
  cat >"$s/apt-get" <<EOF
#!/bin/bash
echo "apt-get \$* (uid \$(id -u))" >>$log
echo "E: apt-get: not in this view (the box has no way out)" >&2
exit 100
EOF
  cat >"$s/debconf-set-selections" <<EOF
#!/bin/bash
echo "debconf-set-selections (uid \$(id -u))" >>$log
cat >/dev/null
EOF
  cat >"$s/npm" <<EOF
#!/bin/bash
echo "npm \$* (uid \$(id -u))" >>$log
[[ \${1:-} == -v || \${1:-} == --version ]] && echo "0.0.0-stub"
if [[ \${1:-} == ci ]]; then
  # What the real npm ci leaves: the lock file's copy (deps.sh compares with it), the addon,
  # and dist/, here with stand-ins for what provisioning runs: the addon's loader, the PKI.
  mkdir -p node_modules build/Release dist/src/pki && cp package-lock.json node_modules/.package-lock.json
  touch build/Release/minivpn.node
  echo 'module.exports = {};' >dist/src/native.js
  echo 'console.log("[pki] stand-in: nothing made");' >dist/src/pki/cli.js
fi
EOF
  cat >"$s/npx" <<EOF
#!/bin/bash
echo "npx \$* (uid \$(id -u))" >>$log
EOF
  chmod 0755 "$s"/*
}

run() {
  [[ $(id -u) -eq 0 ]] || { echo "box-view.sh run: needs root (mount namespace)" >&2; exit 1; }
  [[ -f $dir/commands ]] || { echo "box-view.sh run: $dir is not prepared" >&2; exit 2; }
  mkdir -p "$dir/real"
  # The view is mounted inside the namespace, then CMD replaces this shell.
  exec unshare --mount --propagation private bash -c '
    set -e
    dir=$1; shift
    mount --bind /usr "$dir/real"   # the real /usr, for the links in the view
    mount --bind "$dir/view/bin" /usr/bin
    "$dir/real/bin/mount" --bind "$dir/view/sbin" /usr/sbin
    "$dir/real/bin/mount" --bind "$dir/view/local-bin" /usr/local/bin
    exec "$@"
  ' box-view "$dir" "$@"
}

case $cmd in
  prepare) prepare "$@" ;;
  run) run "$@" ;;
  *) echo "usage: box-view.sh prepare DIR PACKAGE... | run DIR CMD..." >&2; exit 2 ;;
esac
