#!/usr/bin/env bash
# storvsp as the root disk: an ext4 root file system built with `mke2fs -d` from the guest's
# Debian packages (busybox-static, hyperv-daemons, libc6), converted to a dynamic VHDX with
# `hv Convert-VHD`, is the guest's root (viridian.root=lun:0: /init mounts it and runs the
# command chrooted there), beside a 4 KiB-sector data disk. Both disks are seen with the right
# sizes and sector sizes; the guest writes files and a 256 MiB stream (256 numbered copies of a
# random 1 MiB seed), syncs and powers off; the host converts the VHDX to raw with the library,
# e2fsck -fn is clean, and debugfs finds the files and the stream intact.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 420 "$0" "$@"
w=$(mktemp -d)

guest/build-rootdisk -q --hv "$B/hv" --out "$w/root.vhdx" --size 400M || exit 1
"$B/hv" New-VHD -Path "$w/data.vhdx" -SizeBytes 128MB -LogicalSectorSizeBytes 4096 >/dev/null || exit 1
echo "[${SECONDS}s] images ready"

script='cat /etc/viridian-rootfs
echo "rootmnt $(grep " / ext4 " /proc/mounts | cut -d" " -f1,3)"
for d in /sys/block/sd*; do n=$(ls $d/device/scsi_disk)
  echo "disk lun${n##*:} size=$(cat $d/size) lbs=$(cat $d/queue/logical_block_size) pbs=$(cat $d/queue/physical_block_size) ro=$(cat $d/ro)"
done
mkdir -p /root/files
for i in 1 2 3 4 5 6 7 8; do echo "file $i of the storvsp root test" > /root/files/f$i; done
echo "files-sum $(cat /root/files/f* | md5sum)"
head -c 1048576 /dev/urandom > /root/seed.bin
echo "seed-sum $(md5sum < /root/seed.bin)"
i=0; while [ $i -lt 256 ]; do echo "block $i"; cat /root/seed.bin; i=$((i + 1)); done > /root/stream.bin
ls -l /root/stream.bin
sync'
log=$out/root.log
run_root_vm "$log" "$script" "$w/root.vhdx" "$w/data.vhdx"
rc=$?
echo "[${SECONDS}s] guest done"
check "worker exits 0" [ "$rc" = 0 ]
check "root mounted from LUN 0" grep -q "VIRIDIAN-MARK: root /dev/sd[a-z] rc=0" "$log"
check "command ran on the VHDX root" has "$log" "Viridian guest root file system"
check "root is ext4 on a SCSI disk" grep -q "rootmnt /dev/sd[a-z] ext4" "$log"
check "LUN 0: 400 MiB root, 512/4096 sectors" has "$log" "disk lun0 size=819200 lbs=512 pbs=4096 ro=0"
check "LUN 1: 128 MiB data disk, 4096/4096 sectors" has "$log" "disk lun1 size=262144 lbs=4096 pbs=4096 ro=0"
check "guest command exit 0" [ "$(viridian_mark "$log" cmd-exit)" = 0 ]
check "no kernel oops or panic" bash -c "! grep -qE 'Oops|Kernel panic|BUG:' '$log'"
filesum=$(sed -n 's/.*files-sum \([0-9a-f]*\).*/\1/p' "$log" | head -1)
seedsum=$(sed -n 's/.*seed-sum \([0-9a-f]*\).*/\1/p' "$log" | head -1)

"$B/hv" Convert-VHD -Path "$w/root.vhdx" -DestinationPath "$w/check.raw" >/dev/null
check "e2fsck -fn clean on the host's copy" e2fsck -fn "$w/check.raw"
hostfiles=$(for i in 1 2 3 4 5 6 7 8; do debugfs -R "cat /root/files/f$i" "$w/check.raw" 2>/dev/null; done | md5sum | cut -d' ' -f1)
check "host finds the guest's files" [ -n "$filesum" -a "$hostfiles" = "$filesum" ]
debugfs -R "dump /root/seed.bin $w/seed.bin" "$w/check.raw" >/dev/null 2>&1
debugfs -R "dump /root/stream.bin $w/stream.bin" "$w/check.raw" >/dev/null 2>&1
check "host finds the seed the guest checksummed" [ -n "$seedsum" -a "$(md5sum < "$w/seed.bin" | cut -d' ' -f1)" = "$seedsum" ]
check "host finds the 256 MiB stream intact" /usr/bin/python3 -c '
import sys
seed = open(sys.argv[1], "rb").read()
want = b"".join(b"block %d\n" % i + seed for i in range(256))
got = open(sys.argv[2], "rb").read()
sys.exit(0 if len(seed) == 1 << 20 and got == want else 1)' "$w/seed.bin" "$w/stream.bin"
echo "[${SECONDS}s] checked"
check "VHDX structure sound" "$B/hv" Test-VHD -Path "$w/root.vhdx"
[ "$fails" = 0 ] || cat "$log"
rm -rf "$w"
finish
