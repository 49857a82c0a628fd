#!/usr/bin/env bash
# storvsp on thin disks: (1) fstrim in the guest reaches the library as UNMAP and shrinks the
# dynamic VHDX root's allocated blocks on the host; (2) a differencing VHDX over a read-only
# parent (the same root image) works as the guest's root: the guest writes to it, the parent's
# bytes do not change, and the host finds the new file in the child through the library.
set -uo pipefail
cd "$(dirname "$0")/../.."
. guest/lib.sh
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)

if [ "${1:-}" != --inner ]; then
  guest/build-image -q || exit 1
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  tools/vmhost -t 175 -o "$out" -- bash "$0" --inner "$out"
  exit $?
fi

out=$2
G=$(viridian_guest_dir)
w=$(mktemp -d)
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
has() { grep -qF -- "$2" "$1"; }
run_vm() { # run_vm LOG SCRIPT DISK...: boots with viridian.root=lun:0
  local log=$1 script=$2; shift 2
  local disks=(); for d in "$@"; do disks+=(--disk "$d"); done
  timeout 120 "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --cpus 2 \
    "${disks[@]}" --cmdline "console=ttyS0 quiet viridian.root=lun:0 $(viridian_cmdline_arg "$script")" \
    </dev/null 2>&1 | if [ -n "${STORVSP_TEST_VERBOSE:-}" ]; then tee "$log"; else cat > "$log"; fi
  return "${PIPESTATUS[0]}"
}
make_root() { # make_root IMAGE.vhdx SIZE: ext4 from the guest's Debian packages, as dynamic VHDX
  local R=$w/rootfs
  mkdir -p "$R"
  for p in busybox-static hyperv-daemons libc6; do dpkg -x "$(ls "$G"/debs/${p}_*.deb | head -1)" "$R" || return 1; done
  mkdir -p "$R"/{proc,sys,dev,run,tmp,root,etc}
  "$R/bin/busybox" --list | /usr/bin/python3 -c '
import os, sys
for a in sys.stdin.read().split():
    p = os.path.join(sys.argv[1], a)
    if not os.path.lexists(p): os.symlink("busybox", p)' "$R/bin"
  echo "viridian storvsp root file system" > "$R/etc/viridian-rootfs"
  mke2fs -q -F -t ext4 -L vroot -d "$R" "$w/root.img" "$2" || return 1
  "$B/hv" Convert-VHD -Path "$w/root.img" -DestinationPath "$1" -VHDType Dynamic >/dev/null || return 1
  rm -rf "$w/root.img" "$R"
}

allocated() { du -k "$1" | cut -f1; }
make_root "$w/base.vhdx" 400M || exit 1
start=$(allocated "$w/base.vhdx")
echo "[${SECONDS}s] root image ready: $start KiB allocated"

# 1. fstrim
script='head -c 1048576 /dev/urandom > /root/seed.bin
i=0; while [ $i -lt 160 ]; do echo "block $i"; cat /root/seed.bin; i=$((i + 1)); done > /root/big.bin
sync; echo "written $(ls -l /root/big.bin)"
rm /root/big.bin; sync
for f in discard_granularity discard_max_bytes; do echo "$f=$(cat /sys/block/sda/queue/$f)"; done
fstrim -v /; echo "fstrim rc=$?"'
log=$out/trim.log
run_vm "$log" "$script" "$w/base.vhdx"
rc=$?
after=$(allocated "$w/base.vhdx")
echo "[${SECONDS}s] after 160 MiB written + deleted + fstrim: $after KiB allocated"
check "trim boot: worker exits 0" [ "$rc" = 0 ]
check "guest wrote and synced 160 MiB" grep -q "written .* 16777[0-9]* " "$log"
check "fstrim succeeded" has "$log" "fstrim rc=0"
trimmed=$(sed -n 's/.*\/: \([0-9]*\) bytes trimmed.*/\1/p' "$log" | head -1)
check "fstrim trimmed >= 160 MiB (${trimmed:-0} bytes)" [ "${trimmed:-0}" -ge $((160 << 20)) ]
check "UNMAPs reached storvsp" grep -qE "storvsp: .*[1-9][0-9]* unmaps" "$log"
check "VHDX allocation back near its start ($start -> $after KiB, 160 MiB written)" [ "$after" -lt $((start + 48 * 1024)) ]

# 2. differencing root over a read-only parent
chmod 0444 "$w/base.vhdx"
parent_sum=$(md5sum < "$w/base.vhdx")
"$B/hv" New-VHD -Path "$w/child.avhdx" -ParentPath "$w/base.vhdx" -Differencing >/dev/null || exit 1
script='cat /etc/viridian-rootfs
echo "written by the differencing child" > /root/child.txt
echo "child-sum $(md5sum < /root/child.txt)"
sync'
log=$out/diff.log
run_vm "$log" "$script" "$w/child.avhdx"
rc=$?
echo "[${SECONDS}s] differencing boot done"
check "differencing boot: worker exits 0" [ "$rc" = 0 ]
check "root mounted from the child" grep -q "VIRIDIAN-MARK: root /dev/sd[a-z] rc=0" "$log"
check "parent's data visible through the child" has "$log" "viridian storvsp root file system"
check "parent unchanged" [ "$(md5sum < "$w/base.vhdx")" = "$parent_sum" ]
"$B/hv" Convert-VHD -Path "$w/child.avhdx" -DestinationPath "$w/check.raw" >/dev/null
check "e2fsck -fn clean on the flattened child" e2fsck -fn "$w/check.raw"
want=$(sed -n 's/.*child-sum \([0-9a-f]*\).*/\1/p' "$log" | head -1)
got=$(debugfs -R "cat /root/child.txt" "$w/check.raw" 2>/dev/null | md5sum | cut -d' ' -f1)
check "host finds the child's new file" [ -n "$want" -a "$got" = "$want" ]
check "no kernel oops or panic" bash -c "! grep -qE 'Oops|Kernel panic|BUG:' '$out/trim.log' '$out/diff.log'"
[ "$fails" = 0 ] || cat "$out/trim.log" "$out/diff.log"
rm -rf "$w"
exit $((fails > 0))
