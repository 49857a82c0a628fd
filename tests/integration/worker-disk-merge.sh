#!/usr/bin/env bash
# disk-switch and disk-merge on a running guest: the guest's disk is a differencing VHDX child of
# a VHDX base; while the stock guest rewrites 32 MiB of it over and over (a known pattern read
# from a read-only LUN, different each round, direct I/O), the host switches LUN 0 to a new child
# of that child and then merges the new child back into it. The guest must see no I/O error
# and read back exactly what it wrote last; the worker ends on the merged image, which is sound
# (Test-VHD; qemu-img check after a final offline merge into the base) and holds the data the
# guest wrote (qemu-img compare against a reference built without any merge).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 420 "$0" "$@"
w=$(mktemp -d)
sock=/tmp/disk-merge.$$.sock
ctl() { printf '%s\n' "$1" | socat -t 10 - "UNIX-CONNECT:$sock" 2>/dev/null; }
MiB=$((1 << 20))
ROUNDS=10

"$B/hv" New-VHD -Path "$w/base.vhdx" -SizeBytes 64MB -BlockSizeBytes 1MB >/dev/null || exit 1
"$B/tests/vhd-pattern" "$w/base.vhdx" 0 $((24 * MiB)) 7 || exit 1
"$B/hv" New-VHD -Path "$w/c1.avhdx" -ParentPath "$w/base.vhdx" >/dev/null || exit 1
head -c $((32 * MiB)) /dev/urandom >"$w/src.raw"
# The reference: base's data, then slot k (1 MiB at 16 MiB + k MiB) = src slot (k + ROUNDS) % 32.
"$B/hv" Convert-VHD -Path "$w/base.vhdx" -DestinationPath "$w/ref.raw" >/dev/null || exit 1
for k in $(seq 0 31); do
  dd if="$w/src.raw" of="$w/ref.raw" bs=1M skip=$(((k + ROUNDS) % 32)) seek=$((16 + k)) count=1 conv=notrunc 2>/dev/null
done

script='lun() { for d in /sys/block/sd*; do case $(ls $d/device/scsi_disk) in *:$1) echo /dev/${d##*/};; esac; done; }
D=$(lun 0) S=$(lun 1)
for r in $(seq 1 '$ROUNDS'); do
  for k in $(seq 0 31); do
    dd if=$S of=$D bs=1M skip=$(((k + r) % 32)) seek=$((16 + k)) count=1 iflag=direct oflag=direct 2>/dev/null || echo "write-error round $r slot $k"
  done
  echo "round $r done"
done
sync; echo 3 > /proc/sys/vm/drop_caches
bad=0
for k in $(seq 0 31); do
  a=$(dd if=$D bs=1M skip=$((16 + k)) count=1 iflag=direct 2>/dev/null | md5sum)
  b=$(dd if=$S bs=1M skip=$(((k + '$ROUNDS') % 32)) count=1 iflag=direct 2>/dev/null | md5sum)
  [ "$a" = "$b" ] || { echo "verify-bad slot $k"; bad=1; }
done
echo "verify bad=$bad"
dmesg | grep -iE "I/O error|blk_update|critical|sd [0-9:]+: \[sd.\] (tag|Sense|Add)" | head; echo dmesg-done'
log=$out/disk-merge.log
timeout 360 "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --cpus 2 \
  --disk "$w/c1.avhdx" --disk "$w/src.raw,ro" --control "$sock" \
  --cmdline "console=ttyS0 quiet $(viridian_cmdline_arg "$script")" </dev/null >"$log" 2>&1 &
vm=$!

wait_for() { # TEXT SECONDS
  local i
  for i in $(seq 1 $(($2 * 5))); do grep -q "$1" "$log" 2>/dev/null && return 0; kill -0 $vm 2>/dev/null || return 1; sleep 0.2; done
  return 1
}
check "guest writes (round 1 done)" wait_for "round 1 done" 200
# The caller makes the new child while the VM is paused (as vmms does for a checkpoint).
ctl '{"op":"pause"}' >/dev/null
"$B/tests/vhd-pattern" --child "$w/c1.avhdx" "$w/c2.avhdx"
sw=$(ctl '{"op":"disk-switch","lun":0,"path":"'"$w/c2.avhdx"'"}')
ctl '{"op":"resume"}' >/dev/null
echo "disk-switch: $sw"
check "disk-switch accepted" grep -q '"ok":true,"pause_ms":[0-9]' <<<"$sw"
check "bad disk-switch refused, LUN stays" grep -q '"ok":false' <<<"$(ctl '{"op":"disk-switch","lun":0,"path":"'"$w/nope.vhdx"'"}')"
check "status lists the new child" grep -q '"disks":\[{"lun":0,"type":"disk","path":"'"$w/c2.avhdx"'","read_only":false,"merge":null[,}]' <<<"$(ctl '{"op":"status"}')"
check "guest goes on writing on the new child" wait_for "round 3 done" 200
# One connection, two lines: the worker answers both before its loop can pivot, so the save
# always meets the running merge.
mg=$(ctl '{"op":"disk-merge","lun":0}
{"op":"save","path":"/tmp/disk-merge.'$$'.vmrs"}')
echo "disk-merge, then save: $mg"
check "disk-merge accepted" grep -q '^{"ok":true}$' <<<"$(head -1 <<<"$mg")"
check "save refused while the merge runs" grep -q '"ok":false,"error":"a disk merge is running' <<<"$(tail -1 <<<"$mg")"
check "a merge of the read-only LUN is refused" grep -q 'read-only' <<<"$(ctl '{"op":"disk-merge","lun":1}')"
st=
for i in $(seq 1 600); do
  st=$(ctl '{"op":"status"}')
  grep -q '"state":"\(done\|failed\)"' <<<"$st" && break
  sleep 0.5
done
echo "status: $(grep -o '"disks":.*' <<<"$st")"
check "merge done" grep -q '"merge":{"state":"done","percent":100,"error":"","pivot_pause_ms":[0-9]' <<<"$st"
check "LUN 0 is on the merged image now" grep -q '"lun":0,"type":"disk","path":"'"$w/c1.avhdx"'"' <<<"$st"
pivot=$(grep -o '"pivot_pause_ms":[0-9]*' <<<"$st")
echo "switch ${sw#*pause_ms} ms; merge $pivot"
wait $vm
rc=$?
check "worker exits 0 after power-off" [ "$rc" = 0 ]
check "guest command ran" [ "$(viridian_mark "$log" cmd-exit)" = 0 ]
check "all rounds written" has "$log" "round $ROUNDS done"
check "no write errors in the guest" bash -c "! grep -q 'write-error' '$log'"
check "guest reads back what it wrote last" has "$log" "verify bad=0"
check "no I/O errors in the guest's kernel log" bash -c "! sed -n '/verify bad/,/dmesg-done/p' '$log' | grep -qiE 'error|critical|Sense'"
check "merged image sound (Test-VHD)" "$B/hv" Test-VHD -Path "$w/c1.avhdx"
"$B/hv" Convert-VHD -Path "$w/c1.avhdx" -DestinationPath "$w/flat.vhdx" >/dev/null
check "merged image holds the guest's data (qemu-img compare)" qemu-img compare -q -f vhdx -F raw "$w/flat.vhdx" "$w/ref.raw"
check "Merge-VHD into the base" "$B/hv" Merge-VHD -Path "$w/c1.avhdx"
check "base sound (qemu-img check)" qemu-img check -q -f vhdx "$w/base.vhdx"
check "base holds the guest's data (qemu-img compare)" qemu-img compare -q -f vhdx -F raw "$w/base.vhdx" "$w/ref.raw"
grep -E "storvsp: LUN" "$log"
[ "$fails" = 0 ] || tail -n 60 "$log"
rm -rf "$w" "$sock" /tmp/disk-merge.$$.vmrs*
finish
