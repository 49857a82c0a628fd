#!/usr/bin/env bash
# Boot from disk without a guest (docs/boot.md): vmwp with no --kernel finds the default entry
# on its first disk — whole-disk, MBR and GPT, /boot on the root or its own partition, raw,
# VHDX and a differencing child, grub.cfg and BLS, ext2 and ext4, symlinks inside the image —
# and says which entry it boots before it needs KVM (pointed at nothing here, as in
# worker-errors.sh). Hostile disks each give one error line and exit 1 within the loader's time
# limit; a kernel path that leads out of the image resolves inside it, never to the host's file.
set -uo pipefail
cd "$(dirname "$0")/../.."
. guest/lib.sh
. tests/integration/lib/diskboot.bash
guest/build-image -q || exit 1
G=$(viridian_guest_dir)
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export VIRIDIAN_KVM_DEVICE=$tmp/no-kvm
fails=0
nokvm="cannot open $tmp/no-kvm"

run() { # run DISK: vmwp's output in $got, its status in $rc, seconds in $secs
  local t0=$SECONDS
  got=$(timeout 30 "$B/vmwp" --memory 256M --disk "$1" </dev/null 2>&1); rc=$?
  secs=$((SECONDS - t0))
}
boots() { # boots "what" DISK "booting ... pattern": the loader found the entry, then KVM failed
  run "$2"
  if [ "$rc" = 1 ] && grep -q -- "vmwp: booting $3" <<<"$got" && grep -q -- "$nokvm" <<<"$got"; then
    echo "ok: $1: $(head -1 <<<"$got")"
  else
    echo "FAIL: $1: rc=$rc, output: $got (wanted: booting $3)"; fails=$((fails + 1))
  fi
}
refuses() { # refuses "what" DISK "error pattern": one line, status 1, in time
  run "$2"
  if [ "$rc" = 1 ] && grep -q -- "$3" <<<"$got" && [ "$(wc -l <<<"$got")" -eq 1 ] && [ "$secs" -le 15 ] &&
     grep -q "^vmwp: error: cannot boot from disk $2: " <<<"$got"; then
    echo "ok: $1 -> $got"
  else
    echo "FAIL: $1: rc=$rc after ${secs}s, output: $got (wanted one line: $3)"; fails=$((fails + 1))
  fi
}
script='cat /proc/cmdline; poweroff -f'

# /boot on the root file system: whole disk, MBR, GPT; default by index, id and title.
mkdir -p "$tmp/root/boot/grub" "$tmp/root/etc"
db_boot_tree "$tmp/root" boot
db_grub_cfg 1 /boot/vmlinuz-1 /boot/initrd.img-1 "$script" "$script" >"$tmp/root/boot/grub/grub.cfg"
db_fs "$tmp/root" "$tmp/root.fs" 24 || exit 1
boots "whole-disk ext4, default 1" "$tmp/root.fs" "entry 'Second' of the disk /boot/grub/grub.cfg: /boot/vmlinuz-1"
sed -i 's/set default="1"/set default="second"/' "$tmp/root/boot/grub/grub.cfg"
db_fs "$tmp/root" "$tmp/root.fs" 24 && db_disk "$tmp/mbr.img" dos "$tmp/root.fs" || exit 1
boots "MBR, default by id" "$tmp/mbr.img" "entry 'Second' of partition 1 /boot/grub/grub.cfg"
sed -i 's/set default="second"/set default="First"/' "$tmp/root/boot/grub/grub.cfg"
db_fs "$tmp/root" "$tmp/root.fs" 24 && db_disk "$tmp/gpt.img" gpt "$tmp/root.fs" || exit 1
boots "GPT, default by title" "$tmp/gpt.img" "entry 'First' of partition 1 /boot/grub/grub.cfg"
mke2fs -q -F -t ext2 -d "$tmp/root" "$tmp/ext2.fs" 24M >/dev/null || exit 1
boots "ext2" "$tmp/ext2.fs" "entry 'First' of the disk"

# A separate /boot (partition 1; the root on 2): grub.cfg's paths are relative to it, and a
# /boot/... path still resolves there. Also as VHDX, and through a differencing child.
mkdir -p "$tmp/boot/grub" "$tmp/sys/boot" "$tmp/sys/etc"
db_boot_tree "$tmp/boot" ""
db_grub_cfg 0 /vmlinuz-1 /boot/initrd.img-1 "$script" "$script" >"$tmp/boot/grub/grub.cfg"
db_fs "$tmp/boot" "$tmp/boot.fs" 24 && db_fs "$tmp/sys" "$tmp/sys.fs" 8 && db_disk "$tmp/sep.img" gpt "$tmp/sys.fs" "$tmp/boot.fs" || exit 1
boots "GPT, separate /boot on partition 2" "$tmp/sep.img" "entry 'First' of partition 2 /grub/grub.cfg: /vmlinuz-1"
"$B/hv" Convert-VHD -Path "$tmp/sep.img" -DestinationPath "$tmp/sep.vhdx" >/dev/null || exit 1
"$B/hv" New-VHD -Path "$tmp/child.vhdx" -ParentPath "$tmp/sep.vhdx" >/dev/null || exit 1
boots "VHDX" "$tmp/sep.vhdx" "entry 'First' of partition 2"
boots "differencing VHDX child" "$tmp/child.vhdx" "entry 'First' of partition 2"

# Symlinks inside the image, as Debian's /vmlinuz -> boot/vmlinuz-X.
ln -s boot/vmlinuz-1 "$tmp/root/vmlinuz"
sed -i 's|linux\t/boot/vmlinuz-1|linux\t/vmlinuz|' "$tmp/root/boot/grub/grub.cfg"
db_fs "$tmp/root" "$tmp/link.fs" 24 || exit 1
boots "kernel through a relative symlink" "$tmp/link.fs" "entry 'First' of the disk /boot/grub/grub.cfg: /vmlinuz"

# BLS entries (no grub.cfg): the newest version, or loader.conf's default.
mkdir -p "$tmp/bls/boot/loader/entries"
db_boot_tree "$tmp/bls" boot
for v in 1 2; do
  printf 'title BLS %s\nversion 6.%s\nlinux /boot/vmlinuz-1\ninitrd /boot/initrd.img-1\noptions console=ttyS0 viridian.entry=bls%s\n' \
    "$v" "$v" "$v" >"$tmp/bls/boot/loader/entries/debian-6.$v.conf"
done
db_fs "$tmp/bls" "$tmp/bls.fs" 24 || exit 1
boots "BLS, newest entry" "$tmp/bls.fs" "entry 'BLS 2' of the disk /boot/loader/entries/debian-6.2.conf"
echo "default debian-6.1*" >"$tmp/bls/boot/loader/loader.conf"
db_fs "$tmp/bls" "$tmp/bls.fs" 24 || exit 1
boots "BLS, loader.conf default" "$tmp/bls.fs" "entry 'BLS 1' of the disk"

# Hostile disks: small file systems with a fake kernel, each broken one way.
hostile() { # hostile NAME: a fresh tree in $tmp/h-NAME with /boot/grub/grub.cfg booting /boot/k
  rm -rf "$tmp/h"
  mkdir -p "$tmp/h/boot/grub"
  printf 'HdrS not really a kernel' >"$tmp/h/boot/k"
  printf 'menuentry x {\n linux %s quiet\n}\n' "${1:-/boot/k}" >"$tmp/h/boot/grub/grub.cfg"
}
mkfs_h() { db_fs "$tmp/h" "$tmp/h.fs" 4 || exit 1; }

hostile; { printf 'set a=1\nmenuentry x {\n linux /boot/k '; head -c 1000000 /dev/zero | tr '\0' a; printf '\n}\n'; } >"$tmp/h/boot/grub/grub.cfg"; mkfs_h
refuses "grub.cfg with a 1 MB line" "$tmp/h.fs" "grub.cfg line 3: longer than 16384 bytes"
hostile; ln -sf k2 "$tmp/h/boot/k"; ln -s k "$tmp/h/boot/k2"; mkfs_h
refuses "symlink loop" "$tmp/h.fs" "/boot/k: more than 8 symbolic links (a loop?)"
hostile /boot/../../etc/shadow; mkfs_h
refuses "kernel path climbing out of /boot" "$tmp/h.fs" "the kernel /boot/../../etc/shadow is not in the guest file system on the disk"
hostile; ln -sf /etc/shadow "$tmp/h/boot/k"; mkfs_h
refuses "kernel symlink to the host's /etc/shadow" "$tmp/h.fs" "the kernel /boot/k is not in the guest file system on the disk"
hostile; ln -sf ../../../../etc/shadow "$tmp/h/boot/k"; mkdir -p "$tmp/h/etc"; echo guest-file >"$tmp/h/etc/shadow"; mkfs_h
refuses "relative symlink out of the root reads the image's /etc/shadow" "$tmp/h.fs" "not a bzImage"
hostile; : >"$tmp/h/boot/k"; mkfs_h
refuses "zero-length kernel" "$tmp/h.fs" "the kernel /boot/k is empty"
hostile; mkdir -p "$tmp/h/boot/dir"; sed -i 's|/boot/k|/boot/dir|' "$tmp/h/boot/grub/grub.cfg"; mkfs_h
refuses "a directory as the kernel" "$tmp/h.fs" "is not a regular file"
hostile; mkfs_h
refuses "a file that is not a kernel" "$tmp/h.fs" "not a bzImage"
hostile; rm "$tmp/h/boot/grub/grub.cfg"; mkfs_h
refuses "no grub.cfg" "$tmp/h.fs" "no /boot/grub/grub.cfg or /boot/loader/entries on any ext2/3/4 file system"
hostile; printf 'menuentry x {\n insmod ext2\n}\n' >"$tmp/h/boot/grub/grub.cfg"; mkfs_h
refuses "an entry without a kernel" "$tmp/h.fs" "has no linux command"
hostile; mkfs_h; db_disk "$tmp/h.img" dos "$tmp/h.fs" || exit 1
dd if=/dev/zero of="$tmp/h.img" bs=1 seek=$((2048 * 512 + 1024)) count=1024 conv=notrunc status=none
refuses "corrupted ext4 superblock" "$tmp/h.img" "partition 1: no ext2/3/4 file system (.*super-block"
hostile; mkfs_h; db_disk "$tmp/h.img" dos "$tmp/h.fs" || exit 1; truncate -s 2M "$tmp/h.img"
refuses "truncated disk" "$tmp/h.img" "MBR partition 1 lies outside the disk"
db_disk "$tmp/h.img" gpt "$tmp/h.fs" || exit 1; printf 'X' | dd of="$tmp/h.img" bs=1 seek=$((512 + 40)) conv=notrunc status=none
refuses "GPT header checksum" "$tmp/h.img" "GPT header checksum mismatch"
head -c 3M /dev/urandom >"$tmp/noise.img"
refuses "random bytes" "$tmp/noise.img" "no ext2/3/4 file system"
"$B/hv" Convert-VHD -Path "$tmp/mbr.img" -DestinationPath "$tmp/cut.vhdx" >/dev/null && truncate -s 1M "$tmp/cut.vhdx"
refuses "truncated VHDX" "$tmp/cut.vhdx" "cut.vhdx"

# An initrd larger than the guest's memory is refused by the worker, not taken in.
hostile; printf 'menuentry x {\n linux /boot/vmlinuz-1\n initrd /boot/big\n}\n' >"$tmp/h/boot/grub/grub.cfg"
cp "$G/vmlinuz" "$tmp/h/boot/vmlinuz-1"; truncate -s 300M "$tmp/h/boot/big"; db_fs "$tmp/h" "$tmp/h.fs" 340 || exit 1
refuses "initrd larger than guest memory" "$tmp/h.fs" "an initrd larger than the guest's memory"

# The options that a disk boot takes from the disk.
got=$("$B/vmwp" --disk "$tmp/mbr.img" --cmdline quiet 2>&1); rc=$?
check_line="--initrd and --cmdline go with --kernel"
if [ "$rc" = 1 ] && grep -q -- "$check_line" <<<"$got"; then echo "ok: --cmdline without --kernel refused"; else echo "FAIL: --cmdline without --kernel: $got"; fails=$((fails + 1)); fi
exit $((fails > 0))
