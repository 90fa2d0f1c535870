#!/usr/bin/env bash
# changed.sh - CI's rule for the slow Vagrant test (npm run test:vagrant): run it when one of
# its inputs changed since the last run that passed, as recorded in test/vagrant/last-pass.
#
#   changed.sh              exit 0 when the test must run, 1 when not; one line on stdout: why
#   changed.sh --inputs-id  the id of the inputs as committed (exit 1 if some are not committed)
#
# The inputs: what decides whether `vagrant up` and the VMs work. The lab's and the VPN's own
# code is tested by npm test, in network namespaces, every time.
# MINIVPN_VAGRANT_TEST=always runs it in any case.
set -uo pipefail
cd "$(dirname "$0")/../.."
INPUTS=(Vagrantfile scripts/vagrant scripts/deps.sh scripts/packages.txt scripts/packages.sh
  package.json package-lock.json test/vagrant/run.sh test/vagrant/tunnels.sh)
RECORD=test/vagrant/last-pass

committed() { [[ -z $(git status --porcelain -- "${INPUTS[@]}" 2>/dev/null) ]]; }
inputs_id() { git ls-tree -r HEAD -- "${INPUTS[@]}" | sha256sum | cut -c1-16; }
field() { awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "$RECORD"; }

if [[ ${1:-} == --inputs-id ]]; then
  committed || exit 1
  inputs_id
  exit 0
fi
[[ ${MINIVPN_VAGRANT_TEST:-} == always ]] && { echo "MINIVPN_VAGRANT_TEST=always"; exit 0; }
git rev-parse --git-dir >/dev/null 2>&1 || { echo "not a git checkout: cannot tell what changed"; exit 0; }
[[ -f $RECORD ]] || { echo "no run that passed is recorded ($RECORD)"; exit 0; }
committed || { echo "inputs with uncommitted changes: $(git status --porcelain -- "${INPUTS[@]}" | awk '{print $2}' | tr '\n' ' ')"; exit 0; }
rec_commit=$(field commit)
if [[ $(inputs_id) == "$(field inputs)" ]]; then
  echo "no input changed since ${rec_commit:0:12}, whose run passed on $(field date) ($(field result))"
  exit 1
fi
if git cat-file -e "$rec_commit^{commit}" 2>/dev/null; then
  echo "changed since ${rec_commit:0:12} (passed on $(field date)): $(git diff --name-only "$rec_commit" HEAD -- "${INPUTS[@]}" | tr '\n' ' ')"
else
  echo "inputs differ from the last run that passed (${rec_commit:0:12}, on $(field date); that commit is not in this clone)"
fi
exit 0
