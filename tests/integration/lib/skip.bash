# shellcheck shell=bash
# skip_part REASON: a test leaves out one part (it cannot run on this machine) and says so; the
# suite (tests/run, through $VIRIDIAN_SKIPS) lists it in its summary. A whole test that
# cannot run exits 77 instead.
skip_part() {
  echo "skip: $*"
  [ -z "${VIRIDIAN_SKIPS:-}" ] || echo "$(basename "$0" .sh): $*" >>"$VIRIDIAN_SKIPS"
}
