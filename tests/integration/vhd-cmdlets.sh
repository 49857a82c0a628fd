#!/usr/bin/env bash
# The VHD cmdlets as a user drives them: case-insensitive names and parameters, size
# suffixes, Get-VHD fields and -Json, Resize-VHD, Optimize-VHD, errors that name the file
# and exit nonzero.
set -euo pipefail
cd "$(dirname "$0")/../.."
HV=${HV:-$PWD/build/hv}
PAT=$PWD/build/tests/vhd-pattern
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
fail() { echo "FAIL: $*"; exit 1; }
MiB=1048576

# Outputs are captured before matching: under pipefail, `hv ... | grep -q` fails at random when grep
# exits on the first match and hv's next write gets SIGPIPE (Get-Help is more than one stdio buffer).
# Where output is streamed, tests use `| grep ... >/dev/null` (grep reads to the end).
help=$("$HV" Get-Help)
grep -q Merge-VHD <<<"$help" || fail "Get-Help lists cmdlets"
grep -q -- -ParentPath <<<"$("$HV" get-help new-vhd)" || fail "Get-Help NAME"
"$HV" new-vhd -path d.vhdx -sizebytes 1GB -blocksizebytes 8MB -logicalsectorsizebytes 4096 >/dev/null
json=$("$HV" GET-VHD -PATH d.vhdx -json)
for kv in '"VhdFormat": "VHDX"' '"VhdType": "Dynamic"' '"Size": 1073741824' '"BlockSize": 8388608' \
          '"LogicalSectorSize": 4096' '"PhysicalSectorSize": 4096' '"ParentPath": null'; do
  grep -q "$kv" <<<"$json" || fail "Get-VHD -Json lacks $kv: $json"
done
grep -qE '^VhdType +: Dynamic$' <<<"$("$HV" Get-VHD d.vhdx)" || fail "Get-VHD list format"
grep -qE '^VhdType +: Fixed$' <<<"$("$HV" New-VHD -Path f.vhd -SizeBytes 16MB -Fixed)" || fail "fixed VHD"
[ "$(stat -c %s f.vhd)" = $((16 * MiB + 512)) ] || fail "fixed VHD file size"

# Resize: grow, refuse to cut data, shrink to what holds none.
"$HV" New-VHD -Path r.vhdx -SizeBytes 64MB -BlockSizeBytes 1MB >/dev/null
$PAT r.vhdx $((10 * MiB)) 4096 1
"$HV" Resize-VHD -Path r.vhdx -SizeBytes 128MB
json=$("$HV" Get-VHD -Path r.vhdx -Json)
grep -q '"Size": 134217728' <<<"$json" || fail "grow"
grep -q '"MinimumSize": 11534336' <<<"$json" || fail "MinimumSize"
if "$HV" Resize-VHD -Path r.vhdx -SizeBytes 4MB 2>err.txt; then fail "shrink over data"; fi
grep -q "minimum size" err.txt || fail "shrink error: $(cat err.txt)"
"$HV" Resize-VHD -Path r.vhdx -SizeBytes 12MB
qemu-img check -q r.vhdx || fail "qemu-img check after resize"
[ "$(qemu-img info --output=json r.vhdx | grep -o '"virtual-size": [0-9]*')" = '"virtual-size": 12582912' ] ||
  fail "qemu sees the new size"

# Optimize: a block of zeros written into a dynamic disk is given back.
"$HV" New-VHD -Path o.vhdx -SizeBytes 64MB -BlockSizeBytes 1MB >/dev/null
$PAT o.vhdx 0 $MiB 2
qemu-io -f vhdx -c 'write -P 0 8M 2M' o.vhdx >/dev/null   # allocated, but zeros
"$HV" Convert-VHD -Path o.vhdx -DestinationPath o-before.raw
before=$(stat -c %s o.vhdx)
"$HV" Optimize-VHD -Path o.vhdx
after=$(stat -c %s o.vhdx)
[ "$after" -le $((before - 2 * MiB)) ] || fail "Optimize-VHD reclaimed nothing ($before -> $after)"
qemu-img check -q o.vhdx || fail "qemu-img check after optimize"
qemu-img compare -q o-before.raw o.vhdx || fail "optimize changed the contents"

# Errors: name the file, exit nonzero.
echo junk > bad.vhdx
if "$HV" Get-VHD -Path bad.vhdx 2>err.txt; then fail "junk opened"; fi
grep -q "bad.vhdx" err.txt || fail "error names the file"
if "$HV" New-VHD -Path d.vhdx -SizeBytes 1GB 2>/dev/null; then fail "overwrote an existing file"; fi
if "$HV" New-VHD -Path x.vhd -SizeBytes 3TB 2>err.txt; then fail "VHD over 2040 GiB"; fi
if "$HV" New-VHD -Path x.vhdx -SizeBytes 10GB -BlockSizeBytes 3MB 2>/dev/null; then fail "bad block size"; fi
if "$HV" Resize-VHD -Path r.vhdx 2>/dev/null; then fail "missing -SizeBytes accepted"; fi
echo "vhd-cmdlets: pass"
