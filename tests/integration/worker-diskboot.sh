#!/usr/bin/env bash
# Boot from disk with real guests (docs/boot.md): vmwp with no --kernel boots the default
# GRUB entry found on its first disk, with that entry's command line and initrd — the default
# guest's kernel and initramfs put in /boot of an ext4 image made without mounting anything.
#  1. MBR, /boot on the root: entry 0 runs; the guest itself edits `set default` in
#     /boot/grub/grub.cfg (mount, sed, umount) and reboots; the worker re-execs, reads the disk
#     again and the guest comes up on entry 1, which powers off.
#  2. GPT with a separate /boot partition, as a differencing VHDX over a converted parent:
#     the default by title boots with its own command line.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
. tests/integration/lib/diskboot.bash
if [ "${1:-}" != --inner ]; then
  # The images are made here (fast), seen read-only by the test host, copied on write there.
  guest/build-image -q || exit 1
  G=$(viridian_guest_dir)
  img=$(mktemp -d)
  trap 'rm -rf "$img"' EXIT
  show='echo "booted $(tr " " "\n" </proc/cmdline | grep -E "^(viridian.entry|BOOT_IMAGE)=" | tr "\n" " ")"'
  edit="$show
i=0; while [ ! -b /dev/sda1 ] && [ \$i -lt 150 ]; do usleep 100000; i=\$((i + 1)); done
mkdir -p /mnt && mount -t ext4 /dev/sda1 /mnt && sed -i 's/^   set default=\"0\"/   set default=\"1\"/' /mnt/boot/grub/grub.cfg &&
  grep -q 'set default=\"1\"' /mnt/boot/grub/grub.cfg && umount /mnt && echo grub-cfg-edited
reboot -f"
  mkdir -p "$img/root/boot/grub" "$img/root/etc"
  db_boot_tree "$img/root" boot
  db_grub_cfg 0 /boot/vmlinuz-1 /boot/initrd.img-1 "$edit" "$show; poweroff -f" >"$img/root/boot/grub/grub.cfg"
  db_fs "$img/root" "$img/root.fs" 32 && db_disk "$img/mbr.img" dos "$img/root.fs" || exit 1
  mkdir -p "$img/boot/grub" "$img/sys/boot"
  db_boot_tree "$img/boot" ""
  db_grub_cfg Second /vmlinuz-1 /initrd.img-1 "$show; poweroff -f" "$show; poweroff -f" >"$img/boot/grub/grub.cfg"
  db_fs "$img/boot" "$img/boot.fs" 32 && db_fs "$img/sys" "$img/sys.fs" 8 && db_disk "$img/sep.img" gpt "$img/boot.fs" "$img/sys.fs" || exit 1
  "$B/hv" Convert-VHD -Path "$img/sep.img" -DestinationPath "$img/sep.vhdx" >/dev/null || exit 1
  rm -f "$img"/*.fs "$img/sep.img"
  rm -rf "$img/root" "$img/boot" "$img/sys"
  export DISKBOOT_IMAGES=$img
  (in_vmhost 900 "$0" "$@")
  exit
fi
in_vmhost 900 "$0" "$@"
img=$DISKBOOT_IMAGES

log=$out/mbr-reboot.log
timeout 400 "$B/vmwp" --disk "$img/mbr.img" --memory 512M </dev/null >"$log" 2>&1
rc=$?
check "MBR disk: the worker ends with 0 after the second boot's poweroff" [ "$rc" = 0 ]
check "the loader picked the default entry 0" has "$log" "vmwp: booting entry 'First' of partition 1 /boot/grub/grub.cfg: /boot/vmlinuz-1 from $img/mbr.img"
check "guest reached /init with entry 0's command line" has "$log" "booted BOOT_IMAGE=/boot/vmlinuz-1 viridian.entry=first"
check "guest edited set default in its grub.cfg" has "$log" "grub-cfg-edited"
check "the guest's reboot restarted the worker" grep -q "vmwp: guest reset .*: restarting" "$log"
check "after the reboot the loader read the new default" has "$log" "vmwp: booting entry 'Second' of partition 1"
check "guest came up on entry 1" has "$log" "booted BOOT_IMAGE=/boot/vmlinuz-1 viridian.entry=second"
check "both boots reached /init" [ "$(grep -c 'VIRIDIAN-MARK: init-start' "$log")" = 2 ]
[ "$fails" = 0 ] || cat "$log"

"$B/hv" New-VHD -Path /tmp/diskboot-child.vhdx -ParentPath "$img/sep.vhdx" >/dev/null
log=$out/gpt-separate-boot.log
timeout 300 "$B/vmwp" --disk /tmp/diskboot-child.vhdx --memory 512M </dev/null >"$log" 2>&1
rc=$?
check "GPT, separate /boot, differencing VHDX: worker ends with 0" [ "$rc" = 0 ]
check "the loader picked the default by title from partition 1's /grub/grub.cfg" \
  has "$log" "vmwp: booting entry 'Second' of partition 1 /grub/grub.cfg: /vmlinuz-1"
check "guest reached /init with that entry's command line" has "$log" "booted BOOT_IMAGE=/vmlinuz-1 viridian.entry=second"
[ "$fails" = 0 ] || cat "$log"
finish
