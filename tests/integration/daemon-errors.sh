#!/usr/bin/env bash
# vmswitch and vmms refuse bad input or a failed start with exactly one line (stdout and
# stderr together) and status 1: no usage text after getopt's message, no cleanup noise.
set -uo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
vmms_pid=""
trap '[ -z "$vmms_pid" ] || kill "$vmms_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fails=0
expect() { # expect "message pattern" PROGRAM args...
  local want=$1 prog=$2; shift 2
  local out; out=$(timeout 20 "build/$prog" "$@" </dev/null 2>&1); local rc=$?
  if [ "$rc" -eq 1 ] && grep -q -- "$want" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 1 ]; then
    echo "ok: $prog $* -> $out"
  else
    echo "FAIL: $prog $* -> rc=$rc, output: $out (wanted: $want)"; fails=$((fails + 1))
  fi
}
long=$tmp/$(printf 'x%.0s' $(seq 120))
expect "unknown option --bogus"          vmswitch --bogus
expect "--name wants a value"            vmswitch --name
expect "--name is required"              vmswitch
expect "--socket is required"            vmswitch --name a --type Private
expect "unexpected argument stray"       vmswitch --name a --type Private --socket "$tmp/s" stray
expect "--type is Private, Internal or External, not x" vmswitch --name a --type x --socket "$tmp/s"
expect "needs --uplink"                  vmswitch --name a --type External --socket "$tmp/s"
expect "--uplink is for External"        vmswitch --name a --type Private --uplink lo --socket "$tmp/s"
expect "--aging wants"                   vmswitch --name a --type Private --aging 0 --socket "$tmp/s"
expect "at most 15 characters"           vmswitch --name a --type Internal --host-nic 0123456789abcdefg --socket "$tmp/s"
expect "socket path too long"            vmswitch --name a --type Private --socket "$long"
expect "No such file or directory"       vmswitch --name a --type Private --socket "$tmp/no/dir/s"
expect "uplink no-such-if"               vmswitch --name a --type External --uplink no-such-if --socket "$tmp/s"

expect "unknown option --bogus"          vmms --bogus
expect "a value is needed after --root"  vmms --root
expect "--root is required"              vmms --foreground
expect "unexpected argument stray"       vmms --foreground --root "$tmp/r" stray
expect "only --foreground"               vmms --root "$tmp/r"
expect "path too long"                   vmms --foreground --root "$tmp/r" --socket "$long"
touch "$tmp/file"
expect "vmms: "                          vmms --foreground --root "$tmp/file/r" --socket "$tmp/v.sock"
build/vmms --foreground --root "$tmp/r" --socket "$tmp/v.sock" </dev/null >"$tmp/vmms.log" 2>&1 &
vmms_pid=$!
for _ in $(seq 50); do [ -S "$tmp/v.sock" ] && break; sleep 0.1; done
expect "another vmms is listening"       vmms --foreground --root "$tmp/r2" --socket "$tmp/v.sock"
exit $((fails > 0))
