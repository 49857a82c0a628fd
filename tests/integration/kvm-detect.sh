#!/usr/bin/env bash
# Where guests can run, forced case by case: tools/vmhost --detect for no KVM device, one this
# user cannot open, kvm_pvm, no vmx/svm and hardware KVM (each one line ending in a newline),
# vmwp's single line for each way its KVM device can fail, and the test host started where
# there is no KVM device at all (pure TCG).
set -uo pipefail
cd "$(dirname "$0")/../.."
kernel=$(guest/build-image -q --print-dir)/vmlinuz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }

mkdir -p "$tmp/mod-none" "$tmp/mod-pvm/kvm_pvm" "$tmp/mod-pvm/kvm" "$tmp/mod-amd/kvm_amd"
printf 'processor\t: 0\nflags\t\t: fpu sse2\n' >"$tmp/cpuinfo-plain"
printf 'processor\t: 0\nflags\t\t: fpu sse2 svm npt\n' >"$tmp/cpuinfo-svm"
touch "$tmp/kvm" && chmod 600 "$tmp/kvm"
detect() { # WANT CMD...: CMD tools/vmhost --detect prints one line, starting with WANT, ending in a newline
  local want=$1; shift
  "$@" tools/vmhost --detect >"$tmp/out" 2>&1
  local line; line=$(cat "$tmp/out")
  [ "$(wc -l <"$tmp/out")" -eq 1 ] && [ "$(tail -c 1 "$tmp/out" | od -An -tx1 | tr -d ' ')" = 0a ] &&
    [[ $line == "$want"* ]] || { echo "  got: $line"; return 1; }
}
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
check "no KVM device: testhost, says so" \
  detect "testhost no $tmp/none (KVM modules loaded: kvm_pvm kvm)" env VIRIDIAN_KVM_DEVICE="$tmp/none" VIRIDIAN_SYS_MODULE="$tmp/mod-pvm"
check "a KVM device this user cannot open: testhost, says so" \
  detect "testhost $tmp/kvm is not readable and writable by nobody" as_nobody env VIRIDIAN_KVM_DEVICE="$tmp/kvm"
check "kvm_pvm: testhost, says so" \
  detect "testhost $tmp/kvm is kvm_pvm" env VIRIDIAN_KVM_DEVICE="$tmp/kvm" VIRIDIAN_SYS_MODULE="$tmp/mod-pvm" VIRIDIAN_CPUINFO="$tmp/cpuinfo-svm"
check "no vmx/svm: testhost, says so" \
  detect "testhost no vmx/svm CPU flag" env VIRIDIAN_KVM_DEVICE="$tmp/kvm" VIRIDIAN_SYS_MODULE="$tmp/mod-amd" VIRIDIAN_CPUINFO="$tmp/cpuinfo-plain"
check "hardware KVM: direct" \
  detect "direct hardware KVM: $tmp/kvm usable, svm flag" env VIRIDIAN_KVM_DEVICE="$tmp/kvm" VIRIDIAN_SYS_MODULE="$tmp/mod-amd" VIRIDIAN_CPUINFO="$tmp/cpuinfo-svm"
check "VIRIDIAN_VMHOST overrides" detect "direct VIRIDIAN_VMHOST=direct" env VIRIDIAN_VMHOST=direct VIRIDIAN_KVM_DEVICE="$tmp/none"

cp "$kernel" "$tmp/vmlinuz" && chmod 644 "$tmp/vmlinuz"
vmwp_says() { # WANT CMD...: vmwp fails with status 1 and exactly the one line WANT
  local want=$1; shift
  local out; out=$("$@" "$PWD/build/vmwp" --kernel "$tmp/vmlinuz" --memory 256M </dev/null 2>&1); local rc=$?
  [ "$rc" = 1 ] && [ "$out" = "$want" ] || { echo "  got rc=$rc: $out"; return 1; }
}
check "vmwp, no KVM device: one line saying what to do" vmwp_says \
  "vmwp: error: cannot open $tmp/none: No such file or directory: load kvm_intel or kvm_amd, or run vmwp through tools/vmhost" \
  env VIRIDIAN_KVM_DEVICE="$tmp/none"
check "vmwp, a KVM device it may not open: one line" vmwp_says \
  "vmwp: error: cannot open $tmp/kvm: Permission denied: run vmwp as root or as a member of the device's group" \
  as_nobody env VIRIDIAN_KVM_DEVICE="$tmp/kvm"
check "vmwp, a device that is not KVM: one line" vmwp_says \
  "vmwp: error: /dev/null is not a KVM device: load kvm_intel or kvm_amd, or run vmwp through tools/vmhost" \
  env VIRIDIAN_KVM_DEVICE=/dev/null

# The test host is QEMU TCG: it must start, and give its command a KVM, without one here.
env VIRIDIAN_KVM_DEVICE="$tmp/none" VIRIDIAN_VMHOST=testhost tools/vmhost -t 180 -- sh -c '[ -c /dev/kvm ] && [ "$VIRIDIAN_IN_TESTHOST" = 1 ]'
th=$?
check "the test host runs with no KVM device here (pure TCG)" [ "$th" = 0 ]
# 125: the emulated test host itself failed (it wedges at a measured rate, docs/testhost.md):
# tests/run runs the test again rather than counting it.
[ "$th" != 125 ] || [ "$fails" != 1 ] || exit 125
exit $((fails > 0))
