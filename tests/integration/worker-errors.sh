#!/usr/bin/env bash
# vmwp refuses bad input with one clear line and a nonzero status, before or without
# running a guest (runs directly on this machine).
set -uo pipefail
cd "$(dirname "$0")/../.."
kernel=$(guest/build-image -q --print-dir)/vmlinuz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 200M /dev/zero > "$tmp/huge-initrd"
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
expect "kernel is required"               --memory 128M
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
if [ -r /dev/kvm ]; then
  expect "initrd does not fit"            --kernel "$kernel" --memory 160M --initrd "$tmp/huge-initrd"
  expect "too small for the kernel"       --kernel "$kernel" --memory 16M
fi
build/vmwp --help | grep -q -- "--kernel PATH" || { echo "FAIL: --help"; fails=$((fails + 1)); }
exit $((fails > 0))
