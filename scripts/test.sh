#!/usr/bin/env bash
# The test command (npm test): installs what the tests need, builds, runs every test with
# node-tap, and ends with one line of totals: "N passed, N failed".
# Integration tests need root (TUN devices, network namespaces); as non-root they fail
# with a clear message rather than being skipped silently.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh test || { echo "0 passed, 1 failed"; exit 1; }

files=("$@")
[ ${#files[@]} -eq 0 ] && mapfile -t files < <(ls dist/test/*.test.js)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# --jobs=1: integration tests share the kernel's namespace list and CPU; run them in turn.
# --timeout: a limit per file for a hung test only; a loaded or fresh machine is slow, not wrong.
npx --no-install tap --disable-coverage --jobs=1 --timeout=600 --reporter=tap "${files[@]}" 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
summary=$(grep -E '^# \{ total: ' "$out" | tail -1)
num() { echo "$summary" | grep -oE "$1: [0-9]+" | grep -oE '[0-9]+' || echo 0; }
pass=$(num pass); fail=$(num fail); skip=$(num skip); todo=$(num todo)
[ -z "$summary" ] && fail=$((fail + 1))
[ "$rc" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
ip netns list 2>/dev/null | grep -q . && echo "warning: network namespaces left behind: $(ip netns list | tr '\n' ' ')" >&2
if [ "$skip" -gt 0 ] || [ "$todo" -gt 0 ]; then
  echo "$pass passed, $fail failed, $((skip + todo)) skipped"
else
  echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
