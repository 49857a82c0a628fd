#!/usr/bin/env bash
# Cross-check our VHD/VHDX code with qemu-img in both directions:
#  1. images qemu-img makes (vhdx and vpc; fixed and dynamic; several block sizes; sizes that
#     are not a multiple of the block size) read back through `hv Convert-VHD` byte-identical
#     to `qemu-img convert -O raw`;
#  2. images we make (same variety, plus 4096-byte sectors) pass `qemu-img check` (VHDX; qemu
#     cannot check vpc) and `qemu-img compare` against the raw they came from;
#  3. qemu writes into our image and we read its writes; we write into qemu's image and it
#     reads ours.
set -euo pipefail
cd "$(dirname "$0")/../.."
HV=${HV:-$PWD/build/hv}
PAT=$PWD/build/tests/vhd-pattern
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
fail() { echo "FAIL: $*"; exit 1; }

# A source with data, zero gaps and an odd tail: 13 MiB + 3 sectors.
size=$((13 * 1024 * 1024 + 1536))
head -c $size /dev/zero > src.raw
for off in 0 1 5 9 12; do
  head -c 700000 /dev/urandom | dd of=src.raw bs=1 seek=$((off * 1048576 + 4096)) conv=notrunc status=none
done
printf 'tail' | dd of=src.raw bs=1 seek=$((size - 512)) conv=notrunc status=none

n=0
# 1. qemu-img -> us
for spec in "vhdx subformat=dynamic,block_size=1M" "vhdx subformat=dynamic,block_size=8M" \
            "vhdx subformat=dynamic,block_size=32M" "vhdx subformat=fixed,block_size=2M" \
            "vpc subformat=dynamic" "vpc subformat=fixed" "vpc subformat=dynamic,force_size=on"; do
  set -- $spec
  qemu-img convert -f raw -O "$1" -o "$2" src.raw q.img
  qemu-img convert -O raw q.img theirs.raw
  "$HV" Convert-VHD -Path q.img -DestinationPath ours.raw
  # qemu 7.2 sizes a fixed vpc by its file length, counting the footer as a last sector;
  # the footer's current_size (what we and Hyper-V use) is the disk.
  [ "$spec" = "vpc subformat=fixed" ] && truncate -s "$(stat -c %s ours.raw)" theirs.raw
  cmp theirs.raw ours.raw || fail "qemu $spec: our read differs from qemu's"
  "$HV" Test-VHD -Path q.img >/dev/null || fail "qemu $spec: Test-VHD"
  rm -f q.img theirs.raw ours.raw; n=$((n + 1))
done

# 2. us -> qemu-img
# qemu opens only 512-byte logical sectors; 4096-byte ones are checked by our own round trip.
for spec in "x.vhdx 1MB 512 4096" "x.vhdx 8MB 512 512" "x.vhdx 32MB 512 4096" "x.vhdx 256MB 512 4096" \
            "x.vhdx 1MB 4096 4096" "x.vhdx 64MB 4096 4096" "x.vhd 2MB 512 512" "x.vhd 512KB 512 4096"; do
  set -- $spec
  for type in Dynamic Fixed; do
    "$HV" Convert-VHD -Path src.raw -DestinationPath "$1" -VHDType $type -BlockSizeBytes "$2" \
      -LogicalSectorSizeBytes "$3" -PhysicalSectorSizeBytes "$4" >/dev/null
    if [ "$3" = 4096 ]; then
      "$HV" Convert-VHD -Path "$1" -DestinationPath rt.raw
      truncate -s $size rt.raw   # the disk is rounded up to whole 4 KiB sectors
      cmp src.raw rt.raw || fail "ours $spec $type: round trip"
      rm -f "$1" rt.raw; n=$((n + 1)); continue
    fi
    case $1 in *.vhdx) qemu-img check -q "$1" || fail "ours $spec $type: qemu-img check";; esac
    if [ "$1$type" = x.vhdFixed ]; then # qemu counts the footer into a fixed vpc (see above)
      qemu-img convert -O raw "$1" q.raw && truncate -s $size q.raw
      cmp -s src.raw q.raw || fail "ours $spec $type: qemu reads different data"
      rm -f q.raw
    else
      qemu-img compare -q src.raw "$1" || fail "ours $spec $type: qemu-img compare"
    fi
    rm -f "$1"; n=$((n + 1))
  done
done

# 3. writes across: qemu writes into our dynamic VHDX and VHD, we read them; and back.
for f in w.vhdx w.vhd; do
  "$HV" New-VHD -Path $f -SizeBytes 20MB -BlockSizeBytes 1MB >/dev/null 2>&1 ||
    "$HV" New-VHD -Path $f -SizeBytes 20MB >/dev/null
  qemu-io -f "${f##*.}" -c 'write -P 0xab 1M 3M' -c 'write -P 0xcd 10M 4k' $f >/dev/null 2>&1 ||
    qemu-io -f vpc -c 'write -P 0xab 1M 3M' -c 'write -P 0xcd 10M 4k' $f >/dev/null
  "$HV" Convert-VHD -Path $f -DestinationPath ours.raw
  qemu-img convert -O raw $f theirs.raw
  cmp ours.raw theirs.raw || fail "$f: qemu's writes read back differently"
  "$HV" Convert-VHD -Path ours.raw -DestinationPath back.$f -VHDType Dynamic >/dev/null
  qemu-img compare -q ours.raw back.$f || fail "$f: round trip"
  rm -f ours.raw theirs.raw back.$f; n=$((n + 1))
done
# 4. A writer killed after a flush leaves a log to replay: qemu's replay reads what ours does.
"$HV" New-VHD -Path dirty.vhdx -SizeBytes 8MB -BlockSizeBytes 1MB >/dev/null
VHD_PATTERN_CRASH=1 "$PAT" dirty.vhdx 1048576 12288 3
cp dirty.vhdx dirty-q.vhdx
if qemu-img check -q dirty-q.vhdx 2>/dev/null; then fail "no log left to replay"; fi
qemu-img check -q -r all dirty-q.vhdx >/dev/null || fail "qemu cannot replay our log"
"$HV" Convert-VHD -Path dirty.vhdx -DestinationPath ours.raw   # ours replays in memory (read-only)
qemu-img convert -O raw dirty-q.vhdx theirs.raw
cmp ours.raw theirs.raw || fail "log replays differ"
n=$((n + 1))
# 5. Past the first chunk (4 GiB of 512-byte sectors): BAT entries after a sector-bitmap slot.
G=1073741824
"$HV" New-VHD -Path big.vhdx -SizeBytes 6GB -BlockSizeBytes 1MB >/dev/null
"$HV" New-VHD -Path big.raw -SizeBytes 6GB >/dev/null     # sparse expectation
for off in 1048576 $((4 * G - 65536)) $((4 * G)) $((5 * G + 12345 * 512)) $((6 * G - 4096)); do
  "$PAT" big.vhdx $off 4096 $off
  "$PAT" big.raw $off 4096 $off
done
qemu-img check -q big.vhdx || fail "6 GiB image: qemu-img check"
qemu-img compare -q big.raw big.vhdx || fail "6 GiB image: qemu-img compare"
qemu-io -f vhdx -c 'write -P 0x5a 4200M 64k' big.vhdx >/dev/null
qemu-io -f raw -c 'write -P 0x5a 4200M 64k' big.raw >/dev/null
"$HV" Test-VHD -Path big.vhdx >/dev/null || fail "6 GiB image after qemu's write"
"$HV" Convert-VHD -Path big.vhdx -DestinationPath big2.vhdx
qemu-img compare -q big.raw big2.vhdx || fail "6 GiB image: our read of qemu's write"
n=$((n + 1))
echo "vhd-qemu: $n cross-checks passed"
