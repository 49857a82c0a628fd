#!/usr/bin/env bash
# Move-VMStorage of an Off VM with two checkpoints: the whole chain (the checkpoints' AVHDXs too)
# and the VM's folder move to -DestinationStoragePath, parent links point at the copies, the
# sources are gone, the disk reads as a reference that got the same writes (Test-VHD on every
# image; the flattened disk passes qemu-img check and compare), and a checkpoint still applies.
# vmms killed (VIRIDIAN_VMMS_CRASH_AT) before the switch leaves the VM where it was (the copies
# deleted), after it where it goes (the sources deleted): never a VM without its disks. With a
# usable /dev/kvm (the real worker, tiny halting kernel): a running VM is refused (32788), and a
# Saved VM's folder moves (-VirtualMachinePath) with its saved state, which Start-VM restores.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/skip.bash
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
PAT=$B/tests/vhd-pattern
[ -x "$B/vmms" ] && [ -x "$B/hv" ] && [ -x "$PAT" ] || { echo "build $B/vmms, $B/hv and $PAT first (make)"; exit 1; }
t=$(mktemp -d /tmp/vmms-mv.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock VIRIDIAN_BOOT_ID=boot-1
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; pkill -f -- "--control $t/" 2>/dev/null; wait 2>/dev/null; rm -rf "$t"' EXIT
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
hv() { "$B/hv" "$@"; }
start_vmms() {
  rm -f "$VIRIDIAN_SOCKET"
  "$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.05; done
}
py() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print("\n".join(map(str,r)) if isinstance(r,list) else r)' "$1"; }
disk() { hv Get-VM "$1" -Json | py 'd[0]["disks"][0]["path"]'; }
folder() { hv Get-VM "$1" -Json | py 'd[0]["path"]'; }
images() { # every image the VM and its checkpoints use, one a line
  hv Get-VM "$1" -Json | py '[x["path"] for x in d[0]["disks"]]'
  hv Get-VMCheckpoint "$1" -Json | py '[x["path"] for c in d for x in c["disks"]]'
}
chains_ok() { # each passes Test-VHD and lies under $2
  local p ok=0
  while read -r p; do
    hv Test-VHD "$p" >/dev/null 2>&1 || { echo "  Test-VHD $p failed"; ok=1; }
    case "$p" in "$2"/*) ;; *) echo "  $p is not under $2"; ok=1;; esac
  done < <(images "$1")
  return $ok
}
same() { # the VM's disk reads as $2; flattened it passes qemu-img check and compare
  rm -f "$t/flat.raw" "$t/flat.vhdx"
  hv Convert-VHD -Path "$(disk "$1")" -DestinationPath "$t/flat.raw" >/dev/null && cmp -s "$t/flat.raw" "$2" || return 1
  command -v qemu-img >/dev/null || return 0
  hv Convert-VHD -Path "$(disk "$1")" -DestinationPath "$t/flat.vhdx" >/dev/null && qemu-img check -q "$t/flat.vhdx" && qemu-img compare -q "$t/flat.vhdx" "$2"
}
jobs_done() { ! grep -q '"Running"' <<<"$(hv Get-VMJob -Json)"; }
until_true() { for _ in $(seq 150); do "$@" && return 0; sleep 0.1; done; return 1; }
MiB=1048576

start_vmms
python3 bench/boot/tiny-bzimage.py --halt "$t/halt.bz"
mkdir -p "$t/src"
hv New-VHD -Path "$t/src/vm.vhdx" -SizeBytes 16MB -BlockSizeBytes 1MB >/dev/null
hv New-VHD -Path "$t/ref.raw" -SizeBytes 16MB >/dev/null
hv New-VM -Name vm -MemoryStartupBytes 64MB -VHDPath "$t/src/vm.vhdx" >/dev/null
hv Set-VMFirmware vm -KernelPath "$t/halt.bz"
w() { "$PAT" "$(disk vm)" "$2" "$3" "$1" && "$PAT" "$t/ref.raw" "$2" "$3" "$1"; }
w 1 0 $((4 * MiB)); cp "$t/ref.raw" "$t/ref1.raw"
hv Checkpoint-VM -Name vm -SnapshotName one >/dev/null
w 2 $((3 * MiB)) $((5 * MiB))
hv Checkpoint-VM -Name vm -SnapshotName two >/dev/null
w 3 $((9 * MiB)) $((6 * MiB))
old_folder=$(folder vm)
id=$(hv Get-VM vm -Json | py 'd[0]["id"]')

mkdir -p "$t/p1"
check "Move-VMStorage -DestinationStoragePath of an Off VM with two checkpoints" hv Move-VMStorage -VMName vm -DestinationStoragePath "$t/p1"
check "...every image (the AVHDXs too) moved and passes Test-VHD" chains_ok vm "$t/p1/Virtual Hard Disks"
check "...three images there, none left at the source" bash -c "[ \$(ls '$t/p1/Virtual Hard Disks' | wc -l) = 3 ] && [ \$(ls '$t/src' | wc -l) = 0 ]"
check "...the VM's folder moved" bash -c "[ '$(folder vm)' = '$t/p1/Virtual Machines/$id' ] && [ -d '$t/p1/Virtual Machines/$id' ] && [ ! -e '$old_folder' ]"
check "...the disk reads as the reference (qemu-img check/compare flattened)" same vm "$t/ref.raw"
check "...the VM is Off with no operation" [ "$(hv Get-VM vm -Json | py 'd[0]["state"]+"/"+d[0]["operation"]')" = "Off/" ]
check "...Get-VMJob has the storage-move job Completed" bash -c "'$B/hv' Get-VMJob -Json | grep -A4 '\"kind\": \"storage-move\"' | grep -q Completed"
check "moving onto the files' own place refused" bash -c "! '$B/hv' Move-VMStorage -VMName vm -DestinationStoragePath '$t/p1' 2>/dev/null"
check "a missing folder refused" bash -c "! '$B/hv' Move-VMStorage -VMName vm -DestinationStoragePath '$t/nowhere' 2>/dev/null"

# ---- kill -9 of vmms before and after the switch ----
crash() { # crash STEP CMD...: vmms dies at STEP while CMD runs; restarted
  kill "$pid"; wait "$pid" 2>/dev/null
  rm -f "$VIRIDIAN_SOCKET"
  VIRIDIAN_VMMS_CRASH_AT=$1 "$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.05; done
  "${@:2}" >/dev/null 2>&1
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then echo "  (vmms did not reach $1)"; kill "$pid"; fi
  wait "$pid" 2>/dev/null
  start_vmms
  until_true jobs_done
}
stayed() {
  [ -z "$(ls -A "$t/p2/Virtual Hard Disks" 2>/dev/null)" ] && [ ! -e "$t/p2/Virtual Machines/$id" ] &&
    [ "$(hv Get-VM vm -Json | py 'd[0]["operation"]')" = "" ] && [ "$(folder vm)" = "$t/p1/Virtual Machines/$id" ]
}
mkdir -p "$t/p2" "$t/p3" "$t/p4"
for step in move-intent move-copied; do
  crash $step hv Move-VMStorage -VMName vm -DestinationStoragePath "$t/p2"
  check "killed at $step: the VM is where it was, no copy left, no operation" stayed
  check "...every image passes Test-VHD, the data is all there" bash -c "$(declare -f hv py disk images chains_ok same); B='$B' t='$t'; chains_ok vm '$t/p1/Virtual Hard Disks' && same vm '$t/ref.raw'"
done
crash move-committed hv Move-VMStorage -VMName vm -DestinationStoragePath "$t/p3"
check "killed after the switch: the VM is on the copies, the sources deleted" bash -c \
  "$(declare -f hv py disk images chains_ok same folder); B='$B' t='$t'; chains_ok vm '$t/p3/Virtual Hard Disks' && same vm '$t/ref.raw' && [ -z \"\$(ls -A '$t/p1/Virtual Hard Disks')\" ] && [ ! -e '$t/p1/Virtual Machines/$id' ] && [ \"\$(folder vm)\" = '$t/p3/Virtual Machines/$id' ]"
check "Restore-VMCheckpoint 'one' after the moves" hv Restore-VMCheckpoint -VMName vm -Name one
until_true jobs_done
check "...the disk is as it was at 'one', in the new folder" bash -c "$(declare -f hv py disk images chains_ok same); B='$B' t='$t'; chains_ok vm '$t/p3/Virtual Hard Disks' && same vm '$t/ref1.raw'"

if ! kvm_usable; then
  skip_part "a running VM and a Saved VM's folder (no usable /dev/kvm here)"
else
  check "the moved VM starts (the real worker opens the moved chain)" hv Start-VM vm
  check "Move-VMStorage of a running VM refused with 32788" bash -c "'$B/hv' Move-VMStorage -VMName vm -DestinationStoragePath '$t/p4' 2>&1 | grep -q 32788"
  if hv Save-VM vm >/dev/null 2>&1 && [ "$(hv Get-VM vm -Json | py 'd[0]["state"]')" = Saved ]; then
    check "Move-VMStorage -VirtualMachinePath of a Saved VM" hv Move-VMStorage -VMName vm -VirtualMachinePath "$t/p4"
    check "...the saved state moved with the folder" bash -c "[ -f '$t/p4/Virtual Machines/$id/$id.vmrs' ] && [ ! -e '$t/p3/Virtual Machines/$id' ]"
    check "...and Start-VM restores it there" hv Start-VM vm
  else
    skip_part "Save-VM of the tiny guest failed here: $(hv Get-VMEvent vm 2>/dev/null | tail -1)"
  fi
  hv Stop-VM vm -TurnOff >/dev/null 2>&1
fi

[ $fails = 0 ] || { echo "$fails failed"; tail -n 5 "$t/vmms.log"; exit 1; }
echo "all passed"
