#!/usr/bin/env bash
# Differencing disks through the cmdlets (qemu-img cannot write them): a 4-level chain for
# VHDX and VHD reads back as the flattened expectation; Set-VHD reconnects a child to a moved
# parent; Merge-VHD into the parent and into a grandparent gives the flattened bytes; a
# damaged or mismatched chain fails with a message naming the file.
set -euo pipefail
cd "$(dirname "$0")/../.."
HV=${HV:-$PWD/build/hv}
PAT=$PWD/build/tests/vhd-pattern
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
fail() { echo "FAIL: $*"; exit 1; }
MiB=1048576

for ext in vhdx vhd; do
  bs=1MB; [ $ext = vhd ] && bs=512KB
  "$HV" New-VHD -Path l0.$ext -SizeBytes 9MB -BlockSizeBytes $bs >/dev/null
  $PAT l0.$ext 0 $((3 * MiB)) 1
  for i in 1 2 3; do
    "$HV" New-VHD -Path l$i.$ext -ParentPath l$((i - 1)).$ext -BlockSizeBytes $bs >/dev/null
    # overlapping, unaligned-to-block writes at each level
    $PAT l$i.$ext $((i * MiB + 512 * i)) $((MiB + 4096)) $((i + 10))
    $PAT l$i.$ext $((7 * MiB)) 4096 $((i + 20))
  done
  grep -q '"VhdType": "Differencing"' <<<"$("$HV" Get-VHD -Path l3.$ext -Json)" || fail "$ext: Get-VHD type"
  "$HV" Test-VHD -Path l3.$ext >/dev/null || fail "$ext: Test-VHD on the chain"
  "$HV" Convert-VHD -Path l3.$ext -DestinationPath flat.raw
  # The expectation, built independently in a raw file by the same writes.
  "$HV" New-VHD -Path exp.raw -SizeBytes 9MB >/dev/null
  $PAT exp.raw 0 $((3 * MiB)) 1
  for i in 1 2 3; do
    $PAT exp.raw $((i * MiB + 512 * i)) $((MiB + 4096)) $((i + 10))
    $PAT exp.raw $((7 * MiB)) 4096 $((i + 20))
  done
  cmp flat.raw exp.raw || fail "$ext: chain reads differ from the flattened expectation"

  # Reconnect: move l2; l3 no longer opens; Set-VHD points it at the new place.
  mkdir -p moved && mv l2.$ext moved/
  if "$HV" Get-VHD -Path l3.$ext >/dev/null 2>err.txt; then fail "$ext: opened with parent gone"; fi
  grep -q "l3.$ext" err.txt || fail "$ext: error does not name the file"
  "$HV" Set-VHD -Path l3.$ext -ParentPath l0.$ext 2>/dev/null && fail "$ext: accepted the wrong parent"
  "$HV" Set-VHD -Path l3.$ext -ParentPath moved/l2.$ext || fail "$ext: Set-VHD"
  "$HV" Convert-VHD -Path l3.$ext -DestinationPath flat2.raw
  cmp flat2.raw exp.raw || fail "$ext: reconnected chain reads differently"

  # Merge l3 into its grandparent l1 (skipping l2), then l1 into l0.
  "$HV" Merge-VHD -Path l3.$ext -DestinationPath l1.$ext || fail "$ext: merge into grandparent"
  [ ! -e l3.$ext ] && [ ! -e moved/l2.$ext ] || fail "$ext: merged layers not removed"
  "$HV" Merge-VHD -Path l1.$ext || fail "$ext: merge into parent"
  "$HV" Convert-VHD -Path l0.$ext -DestinationPath merged.raw
  cmp merged.raw exp.raw || fail "$ext: merged base differs from the flattened chain"
  [ $ext = vhdx ] && { qemu-img check -q l0.vhdx || fail "qemu-img check after merge"; }
  qemu-img compare -q exp.raw l0.$ext || fail "$ext: qemu-img compare after merge"
  rm -rf ./*
done

# Hostile: a child whose parent was modified after the child was made.
"$HV" New-VHD -Path p.vhdx -SizeBytes 4MB -BlockSizeBytes 1MB >/dev/null
"$HV" New-VHD -Path c.vhdx -ParentPath p.vhdx >/dev/null
$PAT p.vhdx 0 4096 5
if "$HV" Get-VHD -Path c.vhdx >/dev/null 2>err.txt; then fail "opened a child of a modified parent"; fi
grep -q DataWriteGuid err.txt || fail "no clear error for a modified parent: $(cat err.txt)"
echo "vhd-chain: pass"
