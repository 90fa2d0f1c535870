# Shared by server-init.sh and client-init.sh (sourced, not run). Every line the scripts
# print starts with the script's name, so the VPN's log shows who changed what.
NAME=$(basename "$0" .sh)
say() { echo "$NAME: $*"; }
die() { echo "$NAME: error: $*" >&2; exit 1; }
# Print a command, then run it; stop with a clear message if it fails.
run() {
  say "$*"
  "$@" || die "command failed (exit $?): $*"
}
