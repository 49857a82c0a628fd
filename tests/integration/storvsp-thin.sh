#!/usr/bin/env bash
# storvsp on thin disks: (1) fstrim in the guest reaches the library as UNMAP and shrinks the
# dynamic VHDX root's allocated blocks on the host; (2) a differencing VHDX over a read-only
# parent (the same root image) works as the guest's root: the guest writes to it, the parent's
# bytes do not change, and the host finds the new file in the child through the library.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 420 "$0" "$@"
w=$(mktemp -d)

allocated() { du -k "$1" | cut -f1; }
guest/build-rootdisk -q --hv "$B/hv" --out "$w/base.vhdx" --size 400M || exit 1
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
run_root_vm "$log" "$script" "$w/base.vhdx"
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
run_root_vm "$log" "$script" "$w/child.avhdx"
rc=$?
echo "[${SECONDS}s] differencing boot done"
check "differencing boot: worker exits 0" [ "$rc" = 0 ]
check "root mounted from the child" grep -q "VIRIDIAN-MARK: root /dev/sd[a-z] rc=0" "$log"
check "parent's data visible through the child" has "$log" "Viridian guest root file system"
check "parent unchanged" [ "$(md5sum < "$w/base.vhdx")" = "$parent_sum" ]
"$B/hv" Convert-VHD -Path "$w/child.avhdx" -DestinationPath "$w/check.raw" >/dev/null
check "e2fsck -fn clean on the flattened child" e2fsck -fn "$w/check.raw"
want=$(sed -n 's/.*child-sum \([0-9a-f]*\).*/\1/p' "$log" | head -1)
got=$(debugfs -R "cat /root/child.txt" "$w/check.raw" 2>/dev/null | md5sum | cut -d' ' -f1)
check "host finds the child's new file" [ -n "$want" -a "$got" = "$want" ]
check "no kernel oops or panic" bash -c "! grep -qE 'Oops|Kernel panic|BUG:' '$out/trim.log' '$out/diff.log'"
[ "$fails" = 0 ] || cat "$out/trim.log" "$out/diff.log"
rm -rf "$w"
finish
