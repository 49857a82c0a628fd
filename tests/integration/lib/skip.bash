# shellcheck shell=bash
# skip_part REASON: a test leaves out one part (it cannot run on this machine) and says so; the
# suite (tests/run, through $VIRIDIAN_SKIPS) lists it in its summary. A whole test that
# cannot run exits 77 instead.
skip_part() {
  echo "skip: $*"
  [ -z "${VIRIDIAN_SKIPS:-}" ] || echo "$(basename "$0" .sh): $*" >>"$VIRIDIAN_SKIPS"
}
# kvm_usable: this machine's KVM device (as vmwp opens it: $VIRIDIAN_KVM_DEVICE or /dev/kvm) can
# be opened, so vmwp can run a tiny guest that needs no guest kernel speed right here.
kvm_usable() {
  local dev=${VIRIDIAN_KVM_DEVICE:-/dev/kvm}
  [ -r "$dev" ] && [ -w "$dev" ]
}
