# shellcheck shell=bash
# Shared by the vmms tests that run without a guest. Source it from a test at the repository
# root: `. tests/integration/lib/vmms-standin.bash NAME`. It makes $t (a temporary folder, gone
# at exit with vmms and the stand-in workers), points vmms at lib/stand-in-vmwp as its worker
# and defines:
#   check "what" CMD...     runs CMD, prints ok/FAIL, counts failures in $fails
#   refused CMD...          CMD fails with one line on stderr ($t/err; its stdout in $t/out)
#   says TEXT               $t/err contains TEXT
#   hv ARGS...              the CLI;  start_vmms, stop_vmms;  state VM: its power state
#   until_true CMD...       CMD succeeds within 10 s
#   folder                  the (first) VM's folder, where the stand-in records argv and requests
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
[ -x "$B/vmms" ] && [ -x "$B/hv" ] || { echo "build $B/vmms and $B/hv first (make)"; exit 1; }
t=$(mktemp -d "/tmp/$1.XXXXXX")
export VIRIDIAN_SOCKET=$t/vmms.sock VIRIDIAN_BOOT_ID=boot-1 VIRIDIAN_VMWP=$PWD/tests/integration/lib/stand-in-vmwp
pid=""
wpids() { cat "$t"/root/Virtual\ Machines/*/stand-in.pid 2>/dev/null; }
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; for p in $(wpids); do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$t"' EXIT
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
refused() { ! "$@" >"$t/out" 2>"$t/err" && [ "$(wc -l <"$t/err")" = 1 ]; }
says() { grep -q -- "$1" "$t/err"; }
hv() { "$B/hv" "$@"; }
start_vmms() {
  "$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
}
stop_vmms() { kill "$pid"; wait "$pid" 2>/dev/null; pid=""; }
state() { hv Get-VM "$1" -Json | sed -n 's/.*"state": "\([A-Za-z]*\)".*/\1/p'; }
until_true() { for _ in $(seq 100); do "$@" && return 0; sleep 0.1; done; return 1; }
folder() { ls -d "$t"/root/Virtual\ Machines/*/ | head -1; }
