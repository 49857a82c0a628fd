#!/usr/bin/env bash
# storvsp benchmark, one test-host run, same backing file for the raw configurations:
#   A. Viridian vmwp + storvsp on a raw file
#   B. QEMU virtio-blk (-drive if=virtio,cache=none,aio=io_uring) on the same raw file
#   C. Viridian vmwp + storvsp on a dynamic VHDX (converted from that raw file)
# In the guest: iobench (bench/storvsp/iobench.c, static; a fio stand-in: the test guest has no
# fio) with O_DIRECT: 4 KiB randread/randwrite at QD1 and QD32, 1 MiB sequential read/write.
# Usage: bench/storvsp/run.sh [SECONDS_PER_TEST (default 5)]    figures: README.md
set -uo pipefail
cd "$(dirname "$0")/../.."
. guest/lib.sh
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
secs=${1:-5}

if [ "${1:-}" != --inner ]; then
  guest/build-image -q || exit 1
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  G=$(viridian_guest_dir)
  kver=$(sed -n 's/^kernel=//p' "$G/manifest")
  # extra initramfs layer: iobench + the virtio modules QEMU's guest needs
  x=$out/extra
  mkdir -p "$x/bench" "$out/deb"
  gcc -O2 -static -pthread bench/storvsp/iobench.c -o "$x/bench/iobench" || exit 1
  dpkg -x "$(ls "$G"/debs/linux-image-*.deb | head -1)" "$out/deb"
  for m in virtio virtio_ring virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
    find "$out/deb/lib/modules/$kver" -name "$m.ko*" -exec cp {} "$x/bench/" \;
  done
  (cd "$x" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$out/extra.cpio.gz"
  cat "$G/initramfs.cpio.gz" "$out/extra.cpio.gz" > "$out/initrd"
  rm -rf "$out/deb" "$x"
  tools/vmhost -m 3072 -t 590 -o "$out" -- bash "$0" --inner "$out" "$secs"
  exit $?
fi

out=$2 secs=$3
G=$(viridian_guest_dir)
# A file system that supports O_DIRECT (the test host's own is tmpfs): ext4 on a loop device.
fs=/tmp/benchfs
mkdir -p $fs
modprobe ext4 2>/dev/null
if modprobe loop 2>/dev/null && truncate -s 1200M /tmp/benchfs.img && mke2fs -q -F -t ext4 /tmp/benchfs.img &&
   mount -o loop /tmp/benchfs.img $fs; then
  echo "backing: ext4 on loop"
else
  echo "backing: $(stat -f -c %T /tmp)"
fi
yes "viridian storvsp benchmark data" | head -c $((512 << 20)) > $fs/disk.raw
"$B/hv" Convert-VHD -Path $fs/disk.raw -DestinationPath $fs/disk.vhdx -VHDType Dynamic >/dev/null || exit 1

tests="randread 4096 1
randread 4096 32
randwrite 4096 1
randwrite 4096 32
read 1048576 1
write 1048576 1"
guest_script() { # guest_script DEVICE-SETUP DEVICE
  local s="$1"
  while read -r mode bs qd; do s="$s
/bench/iobench \$dev $mode $bs $qd $secs 384"; done <<< "$tests"
  echo "$s"
}
storvsp_script=$(guest_script 'dev=/dev/sda; i=0; while [ ! -b $dev ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done')
virtio_script=$(guest_script 'for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do insmod /bench/$m.ko 2>/dev/null; done; dev=/dev/vda; i=0; while [ ! -b $dev ] && [ $i -lt 50 ]; do usleep 100000; i=$((i+1)); done')

run() { # run NAME COMMAND...
  echo "== $1"
  timeout 200 "${@:2}" </dev/null > "$out/$1.log" 2>&1
  grep RESULT "$out/$1.log" | sed 's/.*RESULT /  /'
  grep -q RESULT "$out/$1.log" || tail -20 "$out/$1.log"
}
cache=none
dd if=/dev/zero of=$fs/probe bs=4096 count=1 oflag=direct 2>/dev/null || cache=writeback
rm -f $fs/probe
echo "QEMU cache=$cache"
run storvsp-raw "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$out/initrd" --memory 512M --cpus 2 --disk $fs/disk.raw \
  --cmdline "console=ttyS0 quiet viridian.mods=hv_vmbus,hv_storvsc,sd_mod $(viridian_cmdline_arg "$storvsp_script")"
run qemu-virtio-raw qemu-system-x86_64 -enable-kvm -m 512 -smp 2 -nodefaults -no-user-config -display none \
  -serial stdio -no-reboot -kernel "$G/vmlinuz" -initrd "$out/initrd" \
  -drive file=$fs/disk.raw,if=virtio,format=raw,cache=$cache,aio=io_uring \
  -append "console=ttyS0 quiet panic=-1 viridian.nomods $(viridian_cmdline_arg "$virtio_script")"
run storvsp-vhdx "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$out/initrd" --memory 512M --cpus 2 --disk $fs/disk.vhdx \
  --cmdline "console=ttyS0 quiet viridian.mods=hv_vmbus,hv_storvsc,sd_mod $(viridian_cmdline_arg "$storvsp_script")"
umount $fs 2>/dev/null
exit 0
