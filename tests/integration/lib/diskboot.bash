# shellcheck shell=bash
# Disk images to boot from (docs/boot.md), built without mounting anything: each file system
# with `mke2fs -d DIR`, partitioned disks by splicing file systems into an image laid out by
# sfdisk. Source after guest/lib.sh ($G: the default guest's kernel and initramfs).
#   db_boot_tree DIR PREFIX      DIR/PREFIX/{vmlinuz-1,initrd.img-1} = the default guest's kernel
#                                and initramfs ("" PREFIX: a separate /boot file system)
#   db_grub_cfg DEFAULT KPATH IPATH SCRIPT1 SCRIPT2
#                                a grub.cfg (stdout) in grub-mkconfig's shape: `set default=DEFAULT`,
#                                entries 'First' (id first) and 'Second' (id second) booting
#                                KPATH/IPATH with viridian.entry=first|second, the guest's /init
#                                running SCRIPT1|SCRIPT2
#   db_fs DIR FILE MB            an ext4 file system of MB MiB holding DIR
#   db_disk FILE dos|gpt FS...   a disk with one partition per FS file (1 MiB aligned, Linux type)

db_boot_tree() {
  mkdir -p "$1/$2"
  cp "$G/vmlinuz" "$1/$2/vmlinuz-1"
  cp "$G/initramfs.cpio.gz" "$1/$2/initrd.img-1"
}

db_grub_cfg() {
  local def=$1 k=$2 i=$3
  cat <<CFG
# made by tests/integration/lib/diskboot.bash
if [ -s \$prefix/grubenv ]; then
  load_env
fi
if [ "\${next_entry}" ] ; then
   set default="\${next_entry}"
else
   set default="$def"
fi
if [ x"\${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
else
  menuentry_id_option=""
fi
menuentry 'First' --class debian \$menuentry_id_option 'first' {
	insmod ext2
	search --no-floppy --fs-uuid --set=root 0000
	linux	$k console=ttyS0 quiet viridian.entry=first $(viridian_cmdline_arg "$4")
	initrd	$i
}
menuentry 'Second' --class debian \$menuentry_id_option 'second' {
	linux	$k console=ttyS0 quiet viridian.entry=second $(viridian_cmdline_arg "$5")
	initrd	$i
}
CFG
}

db_fs() {
  mke2fs -q -F -t ext4 -d "$1" "$2" "$3M" >/dev/null
}

db_disk() {
  local out=$1 label=$2 start=2048 f size script total
  shift 2
  script="label: $label"$'\n'
  total=$start
  for f in "$@"; do
    size=$(( $(stat -c %s "$f") / 512 ))
    script+="start=$total, size=$size, type=$([ "$label" = gpt ] && echo 0FC63DAF-8483-4772-8E79-3D69D8477DE4 || echo 83)"$'\n'
    total=$(( total + (size + 2047) / 2048 * 2048 ))
  done
  rm -f "$out"
  truncate -s $(( (total + 2048) * 512 )) "$out"
  printf '%s' "$script" | sfdisk -q "$out" >/dev/null || return 1
  total=$start
  for f in "$@"; do
    size=$(( $(stat -c %s "$f") / 512 ))
    dd if="$f" of="$out" bs=1M seek=$(( total / 2048 )) conv=notrunc status=none || return 1
    total=$(( total + (size + 2047) / 2048 * 2048 ))
  done
}
