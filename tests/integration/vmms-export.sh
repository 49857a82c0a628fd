#!/usr/bin/env bash
# Export-VM, Compare-VM and Import-VM between two vmms instances on this host (two roots, two
# sockets). A VM on VHDX files with two checkpoints (guest writes between them through
# vhd-pattern, each mirrored into a plain reference file) and a network adapter on a switch only
# the first host has is exported: Hyper-V's folder shape, no ".partial" left, every image passes
# Test-VHD and links to its parent inside the export; the VM's processor limits and its drive's
# storage QoS travel in the configuration and are the imported VM's (the QoS stays when a
# checkpoint is applied there). The second vmms compares (the switch is
# missing: 33012, not blocking) and imports it with -Copy -GenerateNewId: a new id, disks in its
# own folder, the adapter not connected, the checkpoint tree there. The imported VM reads as the
# reference, starts (the real worker with the tiny halting kernel), and Restore-VMCheckpoint of
# the first checkpoint gives the disk as it was then (Test-VHD on the chain; the flattened disk
# passes qemu-img check and compare). Refusals: an existing export folder, a running VM
# (32788), an id that exists (Hyper-V's message), a name clash, a damaged configuration (32784
# with the cause), a missing parent disk (Compare-VM's 40010, Import-VM fails). Crashes: vmms
# killed (VIRIDIAN_VMMS_CRASH_AT) during an export and during a copying import leaves, after a
# restart, no partial export and no copied file, and both work again.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/skip.bash
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
PAT=$B/tests/vhd-pattern
[ -x "$B/vmms" ] && [ -x "$B/hv" ] && [ -x "$PAT" ] || { echo "build $B/vmms, $B/hv and $PAT first (make)"; exit 1; }
t=$(mktemp -d /tmp/vmms-exp.XXXXXX)
export VIRIDIAN_BOOT_ID=boot-1
pa="" pb=""
trap '[ -n "${KEEP:-}" ] && exit; [ -n "$pa" ] && kill $pa 2>/dev/null; [ -n "$pb" ] && kill $pb 2>/dev/null; pkill -f -- "--control $t/" 2>/dev/null; pkill -f -- "$t/a/Virtual Switches" 2>/dev/null; wait 2>/dev/null; rm -rf "$t"' EXIT
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
ha() { VIRIDIAN_SOCKET=$t/a.sock "$B/hv" "$@"; }
hb() { VIRIDIAN_SOCKET=$t/b.sock "$B/hv" "$@"; }
start_a() {
  rm -f "$t/a.sock"
  VIRIDIAN_SOCKET=$t/a.sock "$B/vmms" --foreground --root "$t/a" 2>>"$t/a.log" & pa=$!
  for _ in $(seq 50); do [ -S "$t/a.sock" ] && break; sleep 0.05; done
}
start_b() {
  rm -f "$t/b.sock"
  VIRIDIAN_SOCKET=$t/b.sock "$B/vmms" --foreground --root "$t/b" 2>>"$t/b.log" & pb=$!
  for _ in $(seq 50); do [ -S "$t/b.sock" ] && break; sleep 0.05; done
}
until_true() { for _ in $(seq 150); do "$@" && return 0; sleep 0.1; done; return 1; }
py() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print("\n".join(map(str,r)) if isinstance(r,list) else r)' "$1"; }
refused() { ! "$@" >"$t/out" 2>"$t/err"; }
err_has() { grep -q -- "$1" "$t/err"; }
one_line() { [ "$(grep -c . "$t/err")" = 1 ]; }
MiB=1048576

start_a
start_b
python3 bench/boot/tiny-bzimage.py --halt "$t/halt.bz"
ha New-VHD -Path "$t/src.vhdx" -SizeBytes 16MB -BlockSizeBytes 1MB >/dev/null
ha New-VHD -Path "$t/ref.raw" -SizeBytes 16MB >/dev/null
ha New-VM -Name src -MemoryStartupBytes 64MB -VHDPath "$t/src.vhdx" >/dev/null
ha Set-VMFirmware src -KernelPath "$t/halt.bz" -KernelCommandLine "console=ttyS0"
ha New-VMSwitch -Name lan -SwitchType Private >/dev/null
ha Add-VMNetworkAdapter -VMName src -SwitchName lan >/dev/null
disk_a() { ha Get-VM "$1" -Json | py 'd[0]["disks"][0]["path"]'; }
w() { "$PAT" "$(disk_a src)" "$2" "$3" "$1" && "$PAT" "$t/ref.raw" "$2" "$3" "$1"; }
w 1 0 $((4 * MiB)); cp "$t/ref.raw" "$t/ref1.raw"
ha Checkpoint-VM -Name src -SnapshotName one >/dev/null
w 2 $((2 * MiB)) $((6 * MiB)); cp "$t/ref.raw" "$t/ref2.raw"
ha Checkpoint-VM -Name src -SnapshotName two >/dev/null
ha Checkpoint-VM -Name src >/dev/null  # Hyper-V's default name: "src - (M/D/YYYY - h:mm:ss AM)"
w 3 $((10 * MiB)) $((3 * MiB))
src_id=$(ha Get-VM src -Json | py 'd[0]["id"]')
# Resource controls travel with the VM: processor limits, the drive's storage QoS.
ha Set-VMProcessor src -Maximum 40 -Reserve 10 -RelativeWeight 250
ha Set-VMHardDiskDrive -VMName src -ControllerLocation 0 -MaximumIOPS 500 -MaximumBandwidth 100MB
controls() { # Maximum/Reserve/RelativeWeight MaximumIOPS/MaximumBandwidth of VM src through hv "$@"
  echo "$("$@" Get-VMProcessor src -Json | py '"%s/%s/%s" % (d["Maximum"], d["Reserve"], d["RelativeWeight"])')" \
    "$("$@" Get-VMHardDiskDrive src -Json | py '"%s/%s" % (d[0]["MaximumIOPS"], d[0]["MaximumBandwidth"])')"
}

# ---- Export-VM ----
mkdir -p "$t/exp"
check "Export-VM of an Off VM with two checkpoints" ha Export-VM -Name src -Path "$t/exp"
E=$t/exp/src
check "Hyper-V's folder shape: Virtual Machines/<id>.json, Virtual Hard Disks/, Snapshots/" \
  test -f "$E/Virtual Machines/$src_id.json" -a -d "$E/Virtual Hard Disks" -a -d "$E/Snapshots"
check "no .partial folder left" test ! -e "$E.partial"
check "the whole chain is exported: a base disk and three AVHDXs" \
  [ "$(ls "$E/Virtual Hard Disks" | grep -c '\.vhdx$')/$(ls "$E/Virtual Hard Disks" | grep -c '\.avhdx$')" = 1/3 ]
exp_chain_ok() {
  local f p ok=0
  for f in "$E/Virtual Hard Disks"/*; do
    ha Test-VHD "$f" >/dev/null 2>&1 || { echo "  Test-VHD $f failed"; ok=1; }
    p=$(ha Get-VHD "$f" -Json | py 'd.get("ParentPath") or ""')
    case "$p" in ""|"$E/Virtual Hard Disks/"*) ;; *) echo "  $f links to $p, outside the export"; ok=1;; esac
  done
  return $ok
}
check "every exported image passes Test-VHD and links to its parent in the export" exp_chain_ok
check "the configuration has format, version, disks, adapters, images and the checkpoint tree" bash -c \
  "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[\"format\"]==\"viridian-vm\" and d[\"version\"]==1; assert len(d[\"images\"])==4 and len(d[\"checkpoints\"])==3 and len(d[\"network_adapters\"])==1; assert d[\"network_adapters\"][0][\"switch\"]==\"lan\"; c={x[\"name\"]:x for x in d[\"checkpoints\"]}; assert c[\"two\"][\"parent_id\"]==c[\"one\"][\"id\"]' '$E/Virtual Machines/$src_id.json'"
check "...and the VM's processor limits and its disk's storage QoS" bash -c \
  "python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[\"vm\"][\"processor\"]=={\"maximum\":40,\"reserve\":10,\"relative_weight\":250}, d[\"vm\"]; assert (d[\"disks\"][0][\"max_iops\"], d[\"disks\"][0][\"max_bandwidth\"])==(500,100<<20); assert all(\"max_iops\" not in x for c in d[\"checkpoints\"] for x in c[\"disks\"])' '$E/Virtual Machines/$src_id.json'"
check "the source VM is as it was (Off, idle)" [ "$(ha Get-VM src -Json | py 'd[0]["state"]+"/"+d[0]["operation"]')" = "Off/" ]
check "Export-VM into an existing export refused" refused ha Export-VM -Name src -Path "$t/exp"
check "Get-VMJob lists the export job Completed" bash -c "VIRIDIAN_SOCKET=$t/a.sock '$B/hv' Get-VMJob -Json | grep -A4 '\"kind\": \"export\"' | grep -q Completed"

# ---- Compare-VM and Import-VM on the second vmms ----
check "Compare-VM on the other host: the missing switch (33012), importable" bash -c \
  "VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Compare-VM -Path '$E' -Copy -GenerateNewId -Json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"importable\"]; assert [i[\"message_id\"] for i in d[\"incompatibilities\"]]==[33012], d'"
check "Import-VM -Copy -GenerateNewId on the other host" hb Import-VM -Path "$E" -Copy -GenerateNewId
new_id=$(hb Get-VM src -Json | py 'd[0]["id"]')
check "...a new id" [ -n "$new_id" ] && [ "$new_id" != "$src_id" ]
disk_b() { hb Get-VM src -Json | py 'd[0]["disks"][0]["path"]'; }
check "...its disks in the host's Virtual Hard Disks folder" bash -c "case '$(disk_b)' in '$t/b/Virtual Hard Disks/'*) exit 0;; esac; exit 1"
tree() { "$@" Get-VMCheckpoint src -Json | py '[c["name"]+" <- "+c["parent_name"] for c in d]' | sort; }
check "...the checkpoint tree as on the first host (a default name with '/' too)" bash -c "[ \"\$(export VIRIDIAN_SOCKET=$t/a.sock; $(declare -f py tree); tree '$B/hv')\" = \"\$(export VIRIDIAN_SOCKET=$t/b.sock; $(declare -f py tree); tree '$B/hv')\" ] && [ \$(export VIRIDIAN_SOCKET=$t/a.sock; $(declare -f py tree); tree '$B/hv' | grep -c ' <- ') = 3 ]"
check "...with the processor limits and the disk's storage QoS it had" [ "$(controls hb)" = "40/10/250 500/104857600" ]
# Back to Hyper-V's defaults: its starts below must not depend on this host's cgroups
# (tests/integration/vmms-processor.sh covers a start with limits).
hb Set-VMProcessor src -Maximum 100 -Reserve 0 -RelativeWeight 100
check "...the adapter is there, not connected" [ "$(hb Get-VMNetworkAdapter -VMName src -Json | py '[a["Name"]+":"+(a["SwitchName"] or "-") for a in d]')" = "Network Adapter:-" ]
check "...the export is left as it was" exp_chain_ok
chain_b_ok() { # every image the imported VM and its checkpoints use passes Test-VHD
  local p ok=0
  while read -r p; do
    hb Test-VHD "$p" >/dev/null 2>&1 || { echo "  Test-VHD $p failed"; ok=1; }
  done < <(hb Get-VM src -Json | py '[x["path"] for x in d[0]["disks"]]'; hb Get-VMCheckpoint src -Json | py '[x["path"] for c in d for x in c["disks"]]')
  return $ok
}
same_b() { # the imported VM's disk reads as $1; flattened, it passes qemu-img check and compare
  rm -f "$t/flat.vhdx" "$t/flat.raw"
  hb Convert-VHD -Path "$(disk_b)" -DestinationPath "$t/flat.raw" >/dev/null && cmp -s "$t/flat.raw" "$1" || return 1
  command -v qemu-img >/dev/null || return 0
  hb Convert-VHD -Path "$(disk_b)" -DestinationPath "$t/flat.vhdx" >/dev/null && qemu-img check -q "$t/flat.vhdx" && qemu-img compare -q "$t/flat.vhdx" "$1"
}
check "the imported chains pass Test-VHD" chain_b_ok
check "the imported disk reads as the reference (qemu-img check/compare of it flattened)" same_b "$t/ref.raw"

if ! kvm_usable; then
  skip_part "starting the imported VM and a running export (no usable /dev/kvm here)"
else
  check "the imported VM starts (the real worker, tiny kernel)" hb Start-VM src
  check "Export-VM of a running VM refused with 32788" bash -c "VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Export-VM -Name src -Path '$t/exp' 2>&1 | grep -q 32788"
  hb Stop-VM src -TurnOff >/dev/null
fi
check "Restore-VMCheckpoint 'one' on the other host" hb Restore-VMCheckpoint -VMName src -Name one
until_true bash -c "! VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Get-VMJob -Json | grep -q '\"Running\"'"
check "...the chains pass Test-VHD" chain_b_ok
check "...the disk is as it was at 'one' (qemu-img check/compare)" same_b "$t/ref1.raw"
check "...its storage QoS is the drive's: the checkpoint applied kept it" [ "$(controls hb)" = "100/0/100 500/104857600" ]
if kvm_usable; then
  check "...and the VM starts on it" hb Start-VM src
  hb Stop-VM src -TurnOff >/dev/null
fi

# ---- a Saved VM: its saved state travels and the imported VM restores from it ----
if kvm_usable; then
  ha New-VM -Name saved -MemoryStartupBytes 64MB -NewVHDPath saved.vhdx -NewVHDSizeBytes 8MB >/dev/null
  ha Set-VMFirmware saved -KernelPath "$t/halt.bz"
  ha Start-VM saved >/dev/null && ha Save-VM saved >/dev/null
  sid=$(ha Get-VM saved -Json | py 'd[0]["id"]')
  check "Export-VM of a Saved VM: Virtual Machines/<id>.vmrs beside the configuration" bash -c \
    "VIRIDIAN_SOCKET=$t/a.sock '$B/hv' Export-VM -Name saved -Path '$t/exp' >/dev/null && [ -s '$t/exp/saved/Virtual Machines/$sid.vmrs' ] && grep -q '\"state\":\"Saved\"' '$t/exp/saved/Virtual Machines/$sid.json'"
  check "...imported on the other host it is Saved" bash -c \
    "VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Import-VM -Path '$t/exp/saved' -Copy >/dev/null && [ \"\$(VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Get-VM saved -Json | grep -o '\"state\": \"[A-Za-z]*\"')\" = '\"state\": \"Saved\"' ]"
  check "...and Start-VM restores it from the imported saved state" hb Start-VM saved
  hb Stop-VM saved -TurnOff >/dev/null; hb Remove-VM saved >/dev/null
else
  skip_part "a Saved VM's export (no usable /dev/kvm here)"
fi

# ---- refusals ----
check "Import-VM in place where the id exists: Hyper-V's message" bash -c \
  "VIRIDIAN_SOCKET=$t/a.sock '$B/hv' Import-VM -Path '$E' 2>&1 | grep -q 'a virtual machine with the same identifier'"
check "Compare-VM: the name clash is blocking" bash -c \
  "VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Compare-VM -Path '$E' -Json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert not d[\"importable\"] and any(\"already exists\" in i[\"message\"] for i in d[\"incompatibilities\"] if i[\"blocking\"])'"
check "Import-VM fails with the report (32784), nothing registered" bash -c \
  "! VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Import-VM -Path '$E' 2>'$t/err'; grep -q 32784 '$t/err' && grep -q 'MessageId' '$t/err' && [ \$(VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Get-VM -Json | grep -c '\"id\"') = 1 ]"
cp -a "$E" "$t/damaged"
head -c 300 "$E/Virtual Machines/$src_id.json" >"$t/damaged/Virtual Machines/$src_id.json"
check "a truncated configuration: 32784 with the cause in one line" bash -c \
  "! VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Import-VM -Path '$t/damaged' -Copy -GenerateNewId 2>'$t/err'; [ \$(grep -c . '$t/err') = 1 ] && grep -q '32784' '$t/err' && grep -q 'damaged: not JSON' '$t/err'"
python3 - "$E/Virtual Machines/$src_id.json" "$t/damaged/Virtual Machines/$src_id.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); d["images"][0]["path"] = "Virtual Hard Disks/../../../etc/passwd"
json.dump(d, open(sys.argv[2], "w"))
EOF
check "a path out of the export: 32784, says which field" bash -c \
  "VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Import-VM -Path '$t/damaged/Virtual Machines/$src_id.json' -Copy -GenerateNewId 2>&1 | grep -q 'images\[0\]: \"path\" .* is not a plain path'"
cp "$E/Virtual Machines/$src_id.json" "$t/damaged/Virtual Machines/$src_id.json"
rm "$t/damaged/Virtual Hard Disks/src.vhdx"
check "Compare-VM: a missing parent disk (40010, blocking)" bash -c \
  "VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Compare-VM -Path '$t/damaged' -Copy -GenerateNewId -Json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert not d[\"importable\"] and any(i[\"message_id\"]==40010 and i[\"blocking\"] for i in d[\"incompatibilities\"])'"
b_disks=$(ls "$t/b/Virtual Hard Disks" | wc -l)
check "Import-VM fails on it, nothing copied" bash -c \
  "! VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Import-VM -Path '$t/damaged' -Copy -GenerateNewId 2>/dev/null && [ \$(ls '$t/b/Virtual Hard Disks' | wc -l) = $b_disks ]"
check "Import-VM in place with a new id registers the export's own files" bash -c \
  "VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Remove-VM src >/dev/null && VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Import-VM -Path '$E' -GenerateNewId >/dev/null && VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Get-VM src -Json | grep -q '\"path\": \"$E/Virtual Hard Disks/'"
hb Remove-VM src >/dev/null

# ---- kill -9 of vmms mid-export and mid-import ----
crash_a() { # vmms A dies at STEP during CMD; restarted
  kill "$pa"; wait "$pa" 2>/dev/null
  rm -f "$t/a.sock"
  VIRIDIAN_SOCKET=$t/a.sock VIRIDIAN_VMMS_CRASH_AT=$1 "$B/vmms" --foreground --root "$t/a" 2>>"$t/a.log" & pa=$!
  for _ in $(seq 50); do [ -S "$t/a.sock" ] && break; sleep 0.05; done
  "${@:2}" >/dev/null 2>&1
  for _ in $(seq 50); do kill -0 "$pa" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pa" 2>/dev/null && { echo "  (vmms did not reach $1)"; return 1; }
  wait "$pa" 2>/dev/null
  start_a
}
for step in export-intent export-copied export-written; do
  mkdir -p "$t/exp-$step"
  crash_a $step ha Export-VM -Name src -Path "$t/exp-$step"
  check "killed at $step: after the restart no partial export, the VM idle" bash -c \
    "[ ! -e '$t/exp-$step/src.partial' ] && [ ! -e '$t/exp-$step/src' ] && [ \"\$(VIRIDIAN_SOCKET=$t/a.sock '$B/hv' Get-VM src -Json | grep -o '\"operation\": \"[^\"]*\"')\" = '\"operation\": \"\"' ]"
  check "...and the export works then" ha Export-VM -Name src -Path "$t/exp-$step"
done
mkdir -p "$t/exp-renamed"
crash_a export-renamed ha Export-VM -Name src -Path "$t/exp-renamed"
check "killed after the rename: the export is whole (its images pass Test-VHD)" bash -c \
  "E='$t/exp-renamed/src'; [ -f \"\$E/Virtual Machines/$src_id.json\" ] && for f in \"\$E/Virtual Hard Disks\"/*; do VIRIDIAN_SOCKET=$t/a.sock '$B/hv' Test-VHD \"\$f\" >/dev/null || exit 1; done"
nb_vms=$(ls "$t/b/Virtual Machines" | wc -l)
for step in import-intent import-copied; do
  kill "$pb"; wait "$pb" 2>/dev/null; rm -f "$t/b.sock"
  VIRIDIAN_SOCKET=$t/b.sock VIRIDIAN_VMMS_CRASH_AT=$step "$B/vmms" --foreground --root "$t/b" 2>>"$t/b.log" & pb=$!
  for _ in $(seq 50); do [ -S "$t/b.sock" ] && break; sleep 0.05; done
  mkdir -p "$t/disks-$step"
  hb Import-VM -Path "$E" -Copy -GenerateNewId -VhdDestinationPath "$t/disks-$step" >/dev/null 2>&1
  for _ in $(seq 50); do kill -0 "$pb" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pb" 2>/dev/null && { echo "  (vmms did not reach $step)"; kill "$pb"; }
  wait "$pb" 2>/dev/null
  start_b
  check "killed at $step: after the restart no VM and no copied file" bash -c \
    "[ \$(VIRIDIAN_SOCKET=$t/b.sock '$B/hv' Get-VM -Json | grep -c '\"id\"') = 0 ] && [ \$(ls '$t/disks-$step' | wc -l) = 0 ] && [ \$(ls '$t/b/Virtual Machines' | wc -l) = $nb_vms ]"
done
check "...and the import works then" hb Import-VM -Path "$E" -Copy -GenerateNewId -VhdDestinationPath "$t/disks-import-copied"

[ $fails = 0 ] || { echo "$fails failed"; tail -n 5 "$t/a.log" "$t/b.log"; exit 1; }
echo "all passed"
