#!/usr/bin/env bash
# storvsp with data disks: a stock Debian guest (hv_storvsc + sd_mod) sees three LUNs on the
# synthetic SCSI controller with the right sizes and sector sizes (dynamic VHDX 512/4096,
# VHDX with 4 KiB logical sectors, read-only raw), writes a checksummed pattern that the host
# then finds in the image through the vhd library, cannot write the read-only disk, and
# SYNCHRONIZE CACHE / UNMAP reach the library. With 2 vCPUs storvsc asks for one sub-channel
# (multi-queue): the controller has 2 VMBus channels and I/O from vCPU 1 uses the second.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 420 "$0" "$@"
w=$(mktemp -d)

"$B/hv" New-VHD -Path "$w/d0.vhdx" -SizeBytes 96MB -BlockSizeBytes 1MB >/dev/null || exit 1
"$B/hv" New-VHD -Path "$w/d1.vhdx" -SizeBytes 32MB -LogicalSectorSizeBytes 4096 >/dev/null || exit 1
head -c $((8 << 20)) /dev/zero | tr '\0' 'R' > "$w/d2.raw"

script='for d in /sys/block/sd*; do n=${d##*/}
  echo "disk $n lun=$(ls $d/device/scsi_disk) size=$(cat $d/size) lbs=$(cat $d/queue/logical_block_size) pbs=$(cat $d/queue/physical_block_size) ro=$(cat $d/ro) rot=$(cat $d/queue/rotational) disc=$(cat $d/queue/discard_max_bytes)"
done
# sdX names follow probe order, not LUNs: find the device of each LUN.
lun() { for d in /sys/block/sd*; do case $(ls $d/device/scsi_disk) in *:$1) echo /dev/${d##*/};; esac; done; }
D0=$(lun 0) D1=$(lun 1) D2=$(lun 2)
cat /sys/block/${D0#/dev/}/device/vendor /sys/block/${D0#/dev/}/device/model; ls /sys/block
dd if=/dev/urandom of=/tmp/p bs=1M count=16 2>/dev/null
echo "guest-sum $(md5sum < /tmp/p)"
dd if=/tmp/p of=$D0 bs=64k seek=32 2>/dev/null; echo "write rc=$?"
dd if=/tmp/p of=$D1 bs=1M count=4 2>/dev/null; echo "write4k rc=$?"
sync; echo 3 > /proc/sys/vm/drop_caches
echo "readback $(dd if=$D0 bs=64k skip=32 count=256 2>/dev/null | md5sum)"
echo "readback4k $(dd if=$D1 bs=1M count=4 2>/dev/null | md5sum) want $(head -c 4194304 /tmp/p | md5sum)"
echo "rodata $(dd if=$D2 bs=4k count=1 2>/dev/null | head -c 4)"
dd if=/dev/zero of=$D2 bs=4k count=1 conv=fsync 2>/dev/null; echo "rowrite rc=$?"
blkdiscard -o 0 -l 1048576 $D0 2>&1; echo "discard rc=$?"
echo 3 > /proc/sys/vm/drop_caches
taskset -c 1 dd if=$D0 of=/dev/null bs=64k count=64 iflag=direct 2>/dev/null; echo "cpu1 read rc=$?"
for v in /sys/bus/vmbus/devices/*; do [ "$(cat $v/class_id)" = "{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}" ] || continue
  echo "storvsc-channels $(ls $v/channels | wc -l)"
  for ch in $v/channels/*; do echo "storvsc-chan relid=${ch##*/} sub=$(cat $ch/subchannel_id) cpu=$(cat $ch/cpu) interrupts=$(cat $ch/interrupts) events=$(cat $ch/events)"; done
done
dmesg | grep -iE "storvsc|sd [0-9]|scsi" | head -30'
log=$out/disks.log
timeout 360 "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --cpus 2 \
  --disk "$w/d0.vhdx" --disk "$w/d1.vhdx" --disk "$w/d2.raw,ro" \
  --cmdline "console=ttyS0 quiet $(viridian_cmdline_arg "$script")" </dev/null >"$log" 2>&1
rc=$?
check "worker exits 0 after power-off" [ "$rc" = 0 ]
check "guest command ran" [ "$(viridian_mark "$log" cmd-exit)" = 0 ]
check "LUN 0: 96 MiB, 512/4096 sectors, writable, non-rotational, discard" \
  grep -qE "disk sd[a-z] lun=[0-9]+:0:0:0 size=196608 lbs=512 pbs=4096 ro=0 rot=0 disc=[1-9]" "$log"
check "LUN 1: 32 MiB, 4096/4096 sectors" grep -qE "disk sd[a-z] lun=[0-9]+:0:0:1 size=65536 lbs=4096 pbs=4096 ro=0" "$log"
check "LUN 2: 8 MiB raw, read-only" grep -qE "disk sd[a-z] lun=[0-9]+:0:0:2 size=16384 lbs=512 pbs=512 ro=1" "$log"
check "vendor Msft" has "$log" "Msft"
sum=$(sed -n 's/.*guest-sum \([0-9a-f]*\).*/\1/p' "$log" | head -1)
check "guest reads back what it wrote (512 B sectors)" grep -q "readback $sum" "$log"
check "guest reads back what it wrote (4 KiB sectors)" grep -qE "readback4k ([0-9a-f]+) .* want \1" "$log"
check "read-only disk reads its data" has "$log" "rodata RRRR"
check "write to the read-only disk fails" bash -c "! grep -q 'rowrite rc=0' '$log'"
check "discard accepted" has "$log" "discard rc=0"
check "storage controller has 2 VMBus channels (primary + 1 sub-channel)" has "$log" "storvsc-channels 2"
check "reads from vCPU 1 succeed" has "$log" "cpu1 read rc=0"
check "the sub-channel carried I/O" grep -qE "storvsc-chan relid=[0-9]+ sub=[1-9][0-9]* cpu=[0-9]+ interrupts=[1-9]" "$log"
check "no kernel oops or panic" bash -c "! grep -qE 'Oops|Kernel panic|BUG:' '$log'"
"$B/hv" Convert-VHD -Path "$w/d0.vhdx" -DestinationPath "$w/d0.raw" >/dev/null
host=$(dd if="$w/d0.raw" bs=64k skip=32 count=256 2>/dev/null | md5sum | cut -d' ' -f1)
check "host finds the guest's data in the VHDX ($host)" [ -n "$sum" -a "$host" = "$sum" ]
check "read-only raw image untouched" [ "$(tr -d R < "$w/d2.raw" | wc -c)" = 0 ]
check "VHDX structure sound" "$B/hv" Test-VHD -Path "$w/d0.vhdx"
grep -E "storvsc-chan" "$log"
[ "$fails" = 0 ] || cat "$log"
rm -rf "$w"
finish
