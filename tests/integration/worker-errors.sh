#!/usr/bin/env bash
# vmwp refuses bad input with one clear line and a nonzero status, before or without
# running a guest (runs directly on this machine). Every input check comes before KVM, so the
# cases run with the KVM device pointed at nothing (VIRIDIAN_KVM_DEVICE): they must pass on a
# host with or without /dev/kvm; then the KVM device's own failures, each in one line.
set -uo pipefail
cd "$(dirname "$0")/../.."
kernel=$(guest/build-image -q --print-dir)/vmlinuz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 200M /dev/zero > "$tmp/huge-initrd"
export VIRIDIAN_KVM_DEVICE=$tmp/no-kvm
fails=0
expect() { # expect "message pattern" args...
  local want=$1; shift
  local out; out=$(timeout 20 build/vmwp "$@" </dev/null 2>&1); local rc=$?
  if [ "$rc" -ne 0 ] && grep -q -- "$want" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ]; then
    echo "ok: vmwp $* -> $out"
  else
    echo "FAIL: vmwp $* -> rc=$rc, output: $out (wanted: $want)"; fails=$((fails + 1))
  fi
}
expect "nothing to boot"                  --memory 128M
expect "cannot read kernel /nonexistent"  --kernel /nonexistent
expect "not a bzImage"                    --kernel /etc/passwd
expect "cpus 0: want a number from 1 to 64" --kernel "$kernel" --cpus 0
expect "cpus 65"                          --kernel "$kernel" --cpus 65
expect "memory 12X"                       --kernel "$kernel" --memory 12X
expect "memory 3M"                        --kernel "$kernel" --memory 3M
expect "more than this host has"          --kernel "$kernel" --memory 1T
expect "unknown option --bogus"           --kernel "$kernel" --bogus
expect "unexpected argument stray"        --kernel "$kernel" stray
expect "serial tty"                       --kernel "$kernel" --serial tty
expect "cannot read initrd /nonexistent"  --kernel "$kernel" --initrd /nonexistent
expect "initrd does not fit"              --kernel "$kernel" --memory 160M --initrd "$tmp/huge-initrd"
expect "too small for the kernel"         --kernel "$kernel" --memory 16M
expect "disk $tmp/none.vhdx: "            --kernel "$kernel" --disk "$tmp/none.vhdx"
expect "tap=bad/name: "                   --kernel "$kernel" --nic tap=bad/name
expect "cannot open $tmp/no-kvm: No such file or directory: load kvm_intel or kvm_amd, or run vmwp through tools/vmhost" \
  --kernel "$kernel" --memory 256M
truncate -s 16M "$tmp/d.raw"
expect "cannot open $tmp/no-kvm: No such file or directory: load kvm_intel" \
  --kernel "$kernel" --memory 256M --disk "$tmp/d.raw" --nic "switch=$tmp/no.sock"
grep -q -- "--kernel PATH" <<<"$(build/vmwp --help)" || { echo "FAIL: --help"; fails=$((fails + 1)); }
exit $((fails > 0))
