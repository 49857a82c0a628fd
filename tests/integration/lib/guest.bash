# shellcheck shell=bash
# Shared by the guest integration tests. Source it from a test at the repository root:
#   . tests/integration/lib/guest.bash
#   in_vmhost LIMIT_S "$0" "$@"  # re-runs the test inside a host that can run guests (at most
#                                # LIMIT_S seconds there), then exits; inside, $out is a folder
#                                # written through to this machine
#   check "what" CMD...          # runs CMD, prints ok/FAIL, counts failures in $fails; CMD's
#                                # success is its status
#   has FILE TEXT                # FILE contains TEXT
#   run_root_vm LOG SCRIPT DISK... boots the default guest with DISK... as LUNs 0.. and the
#                                # root file system on LUN 0, running SCRIPT there
#   finish                       # exit status from $fails
#   exit_if_no_init LOG          # a guest whose console LOG never showed /init hung in the
#                                # emulator's early boot: say so and exit 126 (tests/run
#                                # runs it again), instead of failing every check after it
# $B is the build to test (VIRIDIAN_BUILD, default build; absolute), $G the default guest's
# folder.
. guest/lib.sh

B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
G=$(viridian_guest_dir)
fails=0

in_vmhost() {
  local limit=$1 script=$2
  shift 2
  if [ "${1:-}" = --inner ]; then
    out=$2
    trace_guests
    return 0
  fi
  guest/build-image -q || exit 1
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  local rc=0
  tools/vmhost -t "$limit" -o "$out" -- bash "$script" --inner "$out" || rc=$?
  # 124/125: the test host timed out or wedged, so the test never printed its own
  # diagnostics; show the end of what its guests wrote before $out goes.
  local f
  if [ "$rc" = 124 ] || [ "$rc" = 125 ]; then
    for f in "$out"/*.log; do
      [ -f "$f" ] && { echo "--- ${f##*/} (last 40 lines)"; tail -n 40 "$f"; }
    done
  fi
  # A failed test whose guest died (triple fault, panic, oops) or hung before /init (its
  # worker's log has the recorder's dump but no init-start): say so with the evidence and exit
  # 126, which tests/run runs again (at most twice) and lists (docs/testhost.md: guests die and
  # hang in the nested emulator at a measured rate; the retry is issue #19's last resort).
  if [ "$rc" != 0 ] && [ "$rc" != 125 ]; then
    # Consoles and worker logs (*.log), and workers' stderr kept apart (*.err: a guest reset is
    # said only there when the console is a file of its own).
    for f in "$out"/*.log "$out"/*.err; do
      [ -f "$f" ] || continue
      if grep -qE "$guest_crash" "$f"; then
        echo "--- a guest died in the test host: ${f##*/}: $(grep -m1 -oE "$guest_crash.{0,100}" "$f")"
      elif [ "${f%.log}" != "$f" ] && grep -q "^vmwp-traced: exit status" "$f" && ! grep -q "$init_mark" "$f"; then
        early_boot_hang "$f"
      else
        continue
      fi
      tail -n 80 "$f"
      rc=126
    done
  fi
  exit "$rc"
}
# An RCU stall report means the guest's own timers stopped (seen in the emulator: "timer wakeup
# didn't happen ... Possible timer handling issue on cpu=0", with the LAPIC timer, KVM's).
guest_crash='vmwp: guest reset \(triple fault|Kernel panic|BUG: |Oops|general protection fault|rcu: INFO: rcu_[a-z]* (self-)?detected stall'

# In a test host, $B/vmwp runs under tools/crashtrace (lib/vmwp-traced): a guest that
# triple-faults or hangs leaves its last KVM events in its log. VIRIDIAN_CRASHTRACE=0 turns it off.
trace_guests() {
  [ "${VIRIDIAN_CRASHTRACE:-1}" != 0 ] && [ "${VIRIDIAN_IN_TESTHOST:-}" = 1 ] || return 0
  [ -d /sys/kernel/tracing/instances ] || mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || return 0
  local shim f
  shim=$(mktemp -d)
  for f in "$B"/*; do ln -s "$f" "$shim/"; done
  rm -f "$shim/vmwp"
  ln -s "$PWD/tests/integration/lib/vmwp-traced" "$shim/vmwp"
  export VIRIDIAN_REAL_VMWP=$B/vmwp CRASHTRACE_KB=${CRASHTRACE_KB:-2048}
  B=$shim
}

check() {
  if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); return 1; fi
}

has() { grep -qF -- "$2" "$1"; }

run_root_vm() {
  local log=$1 script=$2 disks=() d
  shift 2
  for d in "$@"; do disks+=(--disk "$d"); done
  timeout 300 "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --cpus 2 \
    "${disks[@]}" --cmdline "console=ttyS0 quiet viridian.root=lun:0 $(viridian_cmdline_arg "$script")" \
    </dev/null >"$log" 2>&1
}

finish() {
  exit $((fails > 0))
}

init_mark="VIRIDIAN-MARK: init-start"
early_boot_hang() { echo "--- a guest hung in early boot in the test host (it never reached /init): ${1##*/}"; }
exit_if_no_init() {
  grep -q "$init_mark" "$1" && return 0
  early_boot_hang "$1"
  exit 126
}
