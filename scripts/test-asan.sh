#!/usr/bin/env bash
# npm run test:asan: test/native-args.test.ts (every native function and method called with
# wrong arguments) against the addon built with AddressSanitizer, which reports every read
# or write out of bounds or after free, not only those that happen to crash.
#
# The ASan build goes to build-asan/ (a copy of binding.gyp and native/, built by node-gyp
# with the sanitizer's flags added), so build/Release stays the normal build; the test loads
# it through $MINIVPN_ADDON (src/native.ts). node itself is not instrumented, so the ASan
# runtime is preloaded. Leak detection is off: node frees little at exit, by design.
# Ends with the test's "N passed, N failed" line; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test >/dev/null  # npm ci, the normal addon, dist/ (only what is missing)

libasan=$(gcc -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
  echo "[asan] no AddressSanitizer runtime ($libasan): install gcc's (Debian: libasan8, which g++ brings)" >&2
  exit 1
fi

echo "[asan] building the addon with -fsanitize=address into build-asan/"
rm -rf build-asan
mkdir -p build-asan
cp -r binding.gyp native build-asan/
flags="-fsanitize=address -fno-omit-frame-pointer -g"
if ! (cd build-asan && CFLAGS="$flags" CXXFLAGS="$flags" LDFLAGS="-fsanitize=address" npx --no-install node-gyp rebuild >build.log 2>&1); then
  tail -30 build-asan/build.log >&2
  echo "[asan] the ASan build failed (build-asan/build.log)" >&2
  exit 1
fi
addon=$PWD/build-asan/build/Release/minivpn.node
# Proof that the build is instrumented: it calls the ASan runtime.
nm -D "$addon" | grep __asan_init >/dev/null || { echo "[asan] $addon is not instrumented" >&2; exit 1; }

echo "[asan] running dist/test/native-args.test.js with $libasan preloaded"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
MINIVPN_ADDON=$addon LD_PRELOAD=$libasan ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 \
  npx --no-install tap --disable-coverage --jobs=1 --timeout=300 --reporter=tap dist/test/native-args.test.js >"$out" 2>&1 || rc=$?
cat "$out"
summary=$(grep -E '^# \{ total: ' "$out" | tail -1)
num() { echo "$summary" | grep -oE "$1: [0-9]+" | grep -oE '[0-9]+' || echo 0; }
pass=$(num pass); fail=$(num fail)
[ -z "$summary" ] && fail=$((fail + 1))
[ "$rc" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
