# shellcheck shell=bash
# Shared by the guest integration tests. Source it from a test at the repository root:
#   . tests/integration/lib/guest.bash
#   in_vmhost "$0" "$@"     # re-runs the test inside a host that can run guests, then exits;
#                           # inside, $out is a folder written through to this machine
#   check "what" CMD...     # runs CMD, prints ok/FAIL, counts failures in $fails
#   finish                  # exit status from $fails
# $B is the build to test (VIRIDIAN_BUILD, default build); $G the default guest's folder.
. guest/lib.sh

B=${VIRIDIAN_BUILD:-build}
G=$(viridian_guest_dir)
fails=0

in_vmhost() {
  local script=$1
  shift
  if [ "${1:-}" = --inner ]; then
    out=$2
    return 0
  fi
  guest/build-image -q || exit 1
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  tools/vmhost -t 900 -o "$out" -- bash "$script" --inner "$out"
  exit $?
}

check() {
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi
}

finish() {
  exit $((fails > 0))
}
