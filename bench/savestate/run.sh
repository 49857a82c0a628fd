#!/usr/bin/env bash
# Saved-state benchmark, one test-host run (tools/vmhost), the same guest kernel/initrd, vCPUs
# and memory size for every VMM. The guest first fills its page cache (FILL MiB of random data
# in tmpfs files: incompressible, the worst case for zstd), then ticks its uptime on the console
# every 0.1 s.
#   A. Viridian (vmms + vmwp, the guest on a VHDX): Save-VM (the worker's "save": pause, drain,
#      write, fsync; its save_ms from vmms's event log), then Start-VM (a new `vmwp --restore`;
#      hv's wall time until the worker answers, and the worker's own "restored ... in N ms")
#   B. QEMU-KVM: stop + `migrate "exec:cat > FILE"` (max-bandwidth unlimited, as libvirt's save),
#      then a new `qemu-system-x86_64 -incoming "exec:cat FILE"` (launch until the monitor says
#      the incoming migration is done)
#   C. QEMU-KVM: HMP savevm / loadvm on a qcow2 disk (in one process: no launch in loadvm)
#   D. Viridian: Checkpoint-VM (Standard) of the running VM of A: the pause from vmms's event
#      log and the largest gap the guest itself sees between two ticks
# Every wait is bounded and gives up when the process it waits for has exited.
# Usage: bench/savestate/run.sh [MEMORY_MiB (default 512)] [FILL_MiB (default MEMORY/2)]
# Prints a table (absolute times inside the emulated test host, ratios Viridian/QEMU); the
# figures are kept in bench/savestate/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
. guest/lib.sh
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
G=$(viridian_guest_dir)

if [ "${1:-}" != --inner ]; then
  mem=${1:-512}
  fill=${2:-$((mem / 2))}
  guest/build-image -q || exit 1
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  # the test host holds the guest, the fill and one state file at a time in its RAM (tmpfs)
  host_mb=$((mem * 2 + 2048)); [ $host_mb -lt 3072 ] && host_mb=3072
  tools/vmhost -m $host_mb -t $((600 + mem / 2)) -o "$out" -- bash "$0" --inner "$out" "$mem" "$fill"
  rc=$?
  [ $rc = 0 ] || for f in "$out"/*.log "$out"/*.err; do [ -f "$f" ] && { echo "--- ${f##*/}"; tail -20 "$f"; }; done
  exit $rc
fi

out=$2 mem=$3 fill=$4
w=/tmp/ssbench
mkdir -p $w
echo "test host: $(nproc) CPUs, $(($(sed -n 's/MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo) / 1024)) MiB, state files on $(stat -f -c %T $w)"
# Its own tmpfs (/tmp's is half the RAM). 64 MiB from /dev/urandom (slow in the emulator), copied
# to FILL MiB: as incompressible for zstd (its window is far smaller) and as non-zero for both.
chunks=$(( (fill + 63) / 64 )) fill=$(( (fill + 63) / 64 * 64 ))
guest="ok=0; mkdir -p /fill && mount -t tmpfs -o size=$((fill + 8))m fill /fill &&
  head -c $((64 << 20)) /dev/urandom >/fill/0 && ok=1
for c in \$(seq $((chunks - 1))); do cat /fill/0 >/fill/\$c || ok=0; done
[ \$ok = 1 ] && echo BENCH-FILLED || echo BENCH-FILL-FAILED
i=0; while :; do i=\$((i + 1)); echo \"BT \$i \$(cut -d' ' -f1 /proc/uptime)\"; sleep 0.1; done"
cmdline="console=ttyS0 quiet $(viridian_cmdline_arg "$guest")"
echo "guest: $(sed -n 's/^kernel=//p' "$G/manifest"), 1 vCPU, $mem MiB, page cache filled with $fill MiB of random data"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# wait_for SECONDS PID CMD...: until CMD succeeds; fails at the deadline or once PID has exited
wait_for() {
  local deadline=$((SECONDS + $1)) pid=$2
  shift 2
  while [ $SECONDS -lt $deadline ]; do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || { echo "  (process $pid exited)" >&2; return 1; }
    sleep 0.05
  done
  echo "  (timed out: $*)" >&2; return 1
}
# stop_proc PID: SIGTERM, then SIGKILL after 10 s
stop_proc() {
  kill "$1" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
has() { grep -qa -- "$2" "$1" 2>/dev/null; }
# filled LOG: the guest filled its cache (a guest that could not ends the run)
filled() { has "$1" BENCH-FILL-FAILED && fail "the guest could not fill its cache"; has "$1" BENCH-FILLED; }
ticks_after() { [ "$(tail -c +$(($2 + 1)) "$1" | grep -ac '^BT ')" -ge "$3" ]; } # LOG OFFSET N
fail() { echo "FAILED: $*"; exit 1; }
r=()  # result lines: name value

# --- A and D. Viridian: vmms + vmwp
echo "== Viridian (vmms, vmwp)"
export VIRIDIAN_SOCKET=$w/vmms.sock
"$B/vmms" --foreground --root $w/root 2>"$out/vmms.log" &
vmms=$!
wait_for 30 $vmms test -S "$VIRIDIAN_SOCKET" || fail "vmms"
hv() { "$B/hv" "$@"; }
hv New-VHD -Path $w/disk.vhdx -SizeBytes 64MB -Dynamic >/dev/null
hv New-VM -Name bench -MemoryStartupBytes ${mem}MB -ProcessorCount 1 >/dev/null
hv Set-VMFirmware -VMName bench -KernelPath "$G/vmlinuz" -InitrdPath "$G/initramfs.cpio.gz" -KernelCommandLine "$cmdline" >/dev/null
hv Add-VMHardDiskDrive -VMName bench -Path $w/disk.vhdx >/dev/null
hv Set-VM bench -CheckpointType Standard >/dev/null
hv Start-VM bench >/dev/null || fail "Start-VM"
folder=$(hv Get-VM bench -Json | sed -n 's/^ *"path": "\(.*\)",$/\1/p' | head -1)
log=$folder/console.log
wait_for 600 $vmms filled "$log" || fail "the Viridian guest did not fill its cache"
wait_for 60 $vmms has "$log" '^BT 5 ' || fail "the Viridian guest does not tick"
# Save-VM: the worker's "save" (pause, drain, write, fsync); vmms then turns the worker off
t0=$(now_ms); hv Save-VM bench || fail "Save-VM"; t1=$(now_ms)
ev=$(hv Get-VMEvent bench | sed -n 's/.*saved state written: \([0-9]*\) bytes in \([0-9]*\) ms.*/\1 \2/p' | tail -1)
r+=("vir_save_ms ${ev#* }" "vir_savevm_cmd_ms $((t1 - t0))" "vir_file_bytes ${ev% *}")
at=$(stat -c %s "$log")
# Start-VM: a new worker with --restore; hv returns once it answers on its control socket
t0=$(now_ms); hv Start-VM bench >/dev/null || fail "Start-VM (restore)"; t1=$(now_ms)
r+=("vir_restore_ms $((t1 - t0))"
    "vir_restore_worker_ms $(sed -n 's/.*restored from .* in \([0-9]*\) ms.*/\1/p' "$folder/worker.log" | tail -1)")
wait_for 120 $vmms ticks_after "$log" "$at" 3 || fail "the restored guest does not tick"
echo "  the restored guest ticks on: $(tail -c +$((at + 1)) "$log" | grep -a '^BT ' | head -1 | tr -d '\r')"
at=$(stat -c %s "$log")
# the gap is measured from the last tick before the checkpoint (the guest may print none after
# the request and before the pause)
before=$(tr -d '\r' <"$log" | grep -a '^BT ' | tail -1)
t0=$(now_ms); hv Checkpoint-VM -Name bench -SnapshotName pause >/dev/null || fail "Checkpoint-VM"; t1=$(now_ms)
wait_for 120 $vmms ticks_after "$log" "$at" 10 || fail "the guest does not tick after the checkpoint"
# the largest step of the guest's uptime between two ticks, less the usual step (the median)
gap=$({ echo "$before"; tail -c +$((at + 1)) "$log" | tr -d '\r'; } | awk '/^BT / { if (p != "") print int(($3 - p) * 1000); p = $3 }' |
  sort -n | awk '{ a[NR] = $1 } END { printf "%d %d", a[NR], a[int((NR + 1) / 2)] }')
r+=("ckpt_cmd_ms $((t1 - t0))"
    "ckpt_pause_ms $(hv Get-VMEvent bench | sed -n 's/.*paused \([0-9]*\) ms for the checkpoint.*/\1/p' | tail -1)"
    "ckpt_guest_gap_ms $(( ${gap% *} - ${gap#* } ))")
hv Stop-VM bench -TurnOff >/dev/null
stop_proc $vmms
rm -rf $w/root $w/disk.vhdx

# --- B and C. QEMU-KVM
mon=$w/qemu.mon qlog=$out/qemu.log qstate=$w/qemu.mig qcow=$w/qemu.qcow2
hmp() { printf '%s\n' "$1" | socat -t 600 - "UNIX-CONNECT:$mon" 2>/dev/null | tr -d '\r'; }
qemu-img create -q -f qcow2 $qcow 64M
qemu() { # qemu EXTRA...: QEMU-KVM with the same guest, one vCPU, the qcow2 disk, HMP on $mon
  rm -f $mon
  qemu-system-x86_64 -accel kvm -m $mem -smp 1 -nodefaults -no-user-config -display none -no-reboot \
    -kernel "$G/vmlinuz" -initrd "$G/initramfs.cpio.gz" -append "$cmdline" \
    -drive file=$qcow,format=qcow2,if=ide -chardev file,id=con,path=$qlog,append=on -serial chardev:con -monitor unix:$mon,server,nowait "$@" </dev/null &
  qpid=$!
  wait_for 60 $qpid test -S $mon || fail "QEMU's monitor"
}
echo "== QEMU"
: >"$qlog"
qemu
wait_for 400 $qpid filled "$qlog" || fail "the QEMU guest did not fill its cache"
wait_for 30 $qpid has "$qlog" '^BT 5 ' || fail "the QEMU guest does not tick"
hmp "migrate_set_parameter max-bandwidth 1T" >/dev/null
# migrated: the migration completed (a failed one ends the run)
migrated() {
  local s; s=$(hmp "info migrate" | sed -n 's/^Migration status: *//p')
  case "$s" in completed) return 0 ;; failed|cancelled) fail "QEMU migration $s" ;; esac
  return 1
}
t0=$(now_ms)
hmp stop >/dev/null
hmp "migrate \"exec:cat > $qstate\"" >/dev/null
wait_for 600 $qpid migrated || fail "QEMU migrate to file"
t1=$(now_ms)
r+=("qemu_migrate_ms $((t1 - t0))" "qemu_file_bytes $(stat -c %s $qstate)")
hmp cont >/dev/null
running() { grep -q 'status: running' <<<"$(hmp "info status")"; }
wait_for 30 $qpid running || fail "QEMU does not run on after the migration"
t0=$(now_ms); o=$(hmp "savevm bench"); t1=$(now_ms)
[ -z "$(grep -v '^QEMU\|^(qemu)\|savevm' <<<"$o" | tr -d ' \n')" ] || echo "  savevm: $o"
r+=("qemu_savevm_ms $((t1 - t0))")
t0=$(now_ms); o=$(hmp "loadvm bench"); t1=$(now_ms)
[ -z "$(grep -v '^QEMU\|^(qemu)\|loadvm' <<<"$o" | tr -d ' \n')" ] || echo "  loadvm: $o"
r+=("qemu_loadvm_ms $((t1 - t0))"
    "qemu_savevm_bytes $(qemu-img snapshot -U -l $qcow | awk '$2 == "bench" { print $3, $4 }')")
running || hmp cont >/dev/null
at=$(stat -c %s "$qlog")
wait_for 60 $qpid ticks_after "$qlog" "$at" 3 || fail "QEMU does not tick after loadvm"
hmp quit >/dev/null
stop_proc $qpid
# a fresh disk for -incoming (the guest does not use it): one big file at a time in the test host
rm -f $qcow; qemu-img create -q -f qcow2 $qcow 64M
at=$(stat -c %s "$qlog")
t0=$(now_ms)
qemu -incoming "exec:cat $qstate"
incoming_done() { local s; s=$(hmp "info status"); grep -qE 'status: (paused|running)' <<<"$s" && ! grep -q inmigrate <<<"$s"; }
wait_for 600 $qpid incoming_done || fail "QEMU -incoming"
t1=$(now_ms)
r+=("qemu_incoming_ms $((t1 - t0))")
hmp cont >/dev/null
wait_for 60 $qpid ticks_after "$qlog" "$at" 3 || fail "QEMU does not tick after -incoming"
hmp quit >/dev/null
stop_proc $qpid
rm -f $qstate $qcow

# --- the table
v() { local x; for x in "${r[@]}"; do [ "${x%% *}" = "$1" ] && { echo "${x#* }"; return; }; done; echo "?"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "?" }'; }
gbs() { awk -v ms="$1" -v mib="$2" 'BEGIN { if (ms > 0) printf "%.2f", mib / 1024 / (ms / 1000); else print "?" }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo
echo "RESULTS ($mem MiB guest, $fill MiB of page cache filled; times inside the emulated test host)"
row() { printf '| %-44s | %-12s | %-26s | %-8s |\n' "$@"; }
row "measure" "Viridian" "QEMU-KVM" "V/QEMU"
row "---" "---" "---" "---"
row "save: vmwp save_ms / stop + migrate to file" "$(v vir_save_ms) ms" "$(v qemu_migrate_ms) ms" "$(ratio "$(v vir_save_ms)" "$(v qemu_migrate_ms)")"
row "save: vmwp save_ms / savevm (qcow2)" "$(v vir_save_ms) ms" "$(v qemu_savevm_ms) ms" "$(ratio "$(v vir_save_ms)" "$(v qemu_savevm_ms)")"
row "restore: Start-VM / launch -incoming to ready" "$(v vir_restore_ms) ms" "$(v qemu_incoming_ms) ms" "$(ratio "$(v vir_restore_ms)" "$(v qemu_incoming_ms)")"
row "restore: vmwp's own / loadvm (in process)" "$(v vir_restore_worker_ms) ms" "$(v qemu_loadvm_ms) ms" "$(ratio "$(v vir_restore_worker_ms)" "$(v qemu_loadvm_ms)")"
row "file: .vmrs / migration stream" "$(mib "$(v vir_file_bytes)")" "$(mib "$(v qemu_file_bytes)")" "$(ratio "$(v vir_file_bytes)" "$(v qemu_file_bytes)")"
row "savevm's vmstate in the qcow2 (VM SIZE)" "" "$(v qemu_savevm_bytes)" ""
echo "hv Save-VM wall $(v vir_savevm_cmd_ms) ms; guest RAM per second: save $(gbs "$(v vir_save_ms)" $mem) GB/s," \
  "restore $(gbs "$(v vir_restore_worker_ms)" $mem) GB/s (vmwp's own times)"
echo "Checkpoint-VM (Standard, running VM): paused $(v ckpt_pause_ms) ms (vmms event log); largest gap the guest" \
  "saw $(v ckpt_guest_gap_ms) ms over its usual tick; hv wall $(v ckpt_cmd_ms) ms"
