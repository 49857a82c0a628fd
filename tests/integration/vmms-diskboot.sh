#!/usr/bin/env bash
# vmms and boot from disk (docs/boot.md): a VM with no kernel boots from its first hard disk —
# New-VM, Add-VMHardDiskDrive with an ext4 MBR image holding the default guest's kernel in /boot
# and a grub.cfg, Start-VM -> Running and the guest runs the default entry's command line;
# Set-VMFirmware -KernelPath "" turns a direct-kernel VM into one that boots from its disk. A
# hostile disk (a symlink loop for the kernel) makes Start-VM fail with the loader's one-line
# error, which the VM's event log keeps; a VM with neither kernel nor disk has nothing to boot.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
. tests/integration/lib/diskboot.bash
if [ "${1:-}" != --inner ]; then
  guest/build-image -q || exit 1
  G=$(viridian_guest_dir)
  img=$(mktemp -d)
  trap 'rm -rf "$img"' EXIT
  show='echo "VMMS-DISKBOOT $(tr " " "\n" </proc/cmdline | grep "^viridian.entry=")"; sleep 600'
  mkdir -p "$img/root/boot/grub"
  db_boot_tree "$img/root" boot
  db_grub_cfg second /boot/vmlinuz-1 /boot/initrd.img-1 "$show" "$show" >"$img/root/boot/grub/grub.cfg"
  db_fs "$img/root" "$img/root.fs" 32 && db_disk "$img/good.img" dos "$img/root.fs" || exit 1
  "$B/hv" Convert-VHD -Path "$img/good.img" -DestinationPath "$img/good.vhdx" >/dev/null || exit 1
  rm -rf "$img/root" "$img/root.fs" "$img/good.img"
  mkdir -p "$img/bad/boot/grub"
  ln -s k2 "$img/bad/boot/k1"; ln -s k1 "$img/bad/boot/k2"
  printf 'menuentry x {\n linux /boot/k1\n}\n' >"$img/bad/boot/grub/grub.cfg"
  db_fs "$img/bad" "$img/bad.img" 4 || exit 1
  export DISKBOOT_IMAGES=$img
  (in_vmhost 400 "$0" "$@")
  exit
fi
in_vmhost 400 "$0" "$@"
img=$DISKBOOT_IMAGES
t=$(mktemp -d /tmp/vmms-diskboot.XXXXXX)  # sockets cannot live on the 9p output folder
export VIRIDIAN_SOCKET=$t/vmms.sock
hv() { "$B/hv" "$@"; }
field() { hv Get-VM "$1" -Json | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -1; }
"$B/vmms" --foreground --root "$t/root" 2>>"$out/vmms.log" & vmms=$!
cleanup() {
  local p
  for vm in disk fw; do p=$(field $vm worker_pid 2>/dev/null); [ -n "$p" ] && [ "$p" != null ] && kill "$p" 2>/dev/null; done
  kill "$vmms" 2>/dev/null
}
trap cleanup EXIT
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
console() { cat "$t"/root/Virtual\ Machines/*/console.log 2>/dev/null; }
wait_console() { for _ in $(seq "$1"); do console | grep -- "$2" >/dev/null && return 0; sleep 1; done; return 1; }

cp "$img/good.vhdx" /tmp/vmms-diskboot-good.vhdx
hv New-VM -Name disk -MemoryStartupBytes 512MB >/dev/null
check "Add-VMHardDiskDrive with the bootable VHDX" bash -c "'$B/hv' Add-VMHardDiskDrive -VMName disk -Path /tmp/vmms-diskboot-good.vhdx >/dev/null"
check "Get-VM shows no kernel" [ "$(field disk kernel)" = null ]
check "Start-VM with no kernel returns Running" hv Start-VM disk
check "the guest runs the default entry (id second) from its disk" wait_console 240 "VMMS-DISKBOOT viridian.entry=second"
check "the worker log names the entry it booted" bash -c "grep -q \"vmwp: booting entry 'Second' of partition 1 /boot/grub/grub.cfg\" \"$t\"/root/Virtual\ Machines/*/worker.log"
check "Stop-VM -TurnOff" hv Stop-VM disk -TurnOff
hv Remove-VM disk -Force >/dev/null 2>&1 || hv Remove-VM disk >/dev/null 2>&1

hv New-VM -Name none -MemoryStartupBytes 256MB >/dev/null
msg=$(hv Start-VM none 2>&1); rc=$?
check "Start-VM of a VM with neither kernel nor disk fails in one line" \
  bash -c "[ $rc != 0 ] && [ \$(wc -l <<<'$msg') = 1 ] && grep -q 'has nothing to boot: no hard disk to boot from' <<<'$msg'"

cp "$img/bad.img" /tmp/vmms-diskboot-bad.img
hv New-VM -Name fw -MemoryStartupBytes 256MB >/dev/null
hv Set-VMFirmware -VMName fw -KernelPath "$G/vmlinuz" -InitrdPath "$G/initramfs.cpio.gz" >/dev/null
hv Add-VMHardDiskDrive -VMName fw -Path /tmp/vmms-diskboot-bad.img >/dev/null
check "Set-VMFirmware -KernelPath \"\" -InitrdPath \"\": boot from disk" hv Set-VMFirmware -VMName fw -KernelPath "" -InitrdPath ""
check "...Get-VM shows no kernel" [ "$(field fw kernel)" = null ]
msg=$(hv Start-VM fw 2>&1); rc=$?
echo "Start-VM fw: $msg"
check "Start-VM from a hostile disk fails with the loader's one-line error" \
  bash -c "[ $rc != 0 ] && [ \$(wc -l <<<\"\$1\") = 1 ] && grep -q 'cannot boot from disk /tmp/vmms-diskboot-bad.img: /boot/k1: more than 8 symbolic links' <<<\"\$1\"" _ "$msg"
check "the VM is Off again" [ "$(field fw state)" = Off ]
check "its event log has the error" bash -c "'$B/hv' Get-VMEvent fw | grep -E 'Error +.*cannot boot from disk .*more than 8 symbolic links'"
hv Get-VMEvent fw >"$out/fw-events.txt"
finish
