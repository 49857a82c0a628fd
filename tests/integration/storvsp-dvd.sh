#!/usr/bin/env bash
# DVD drives on the synthetic SCSI controller: a stock Debian guest (hv_storvsc + sr_mod +
# isofs) sees an ISO made with xorriso as /dev/sr0 (type 5, removable, "Virtual DVD-ROM"),
# mounts it read-only and reads a file of random data whose sha256 matches the host's; writes
# fail cleanly (the drive is read-only, no SCSI errors beyond that); an empty drive has no
# medium; a live disc change through the worker's dvd-change control op is seen by the guest
# (the remount shows the second ISO's file), so is an eject (the host's and the guest's); odd-sized ISOs (zero bytes, not a
# multiple of 2048) give a rounded-down capacity and reads beyond it fail. Then the same through
# vmms: Add-VMDvdDrive, Start-VM, and a live Set-VMDvdDrive the guest sees on its remount.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
command -v xorriso >/dev/null || { echo "SKIP: xorriso is not installed (tools/deps)"; exit 77; }
in_vmhost 420 "$0" "$@"
w=$(mktemp -d)

mkdir -p "$w/a" "$w/b"
head -c $((3 << 20)) /dev/urandom > "$w/a/random.bin"
echo "first disc" > "$w/a/hello.txt"
mkdir -p "$w/a/dir"; echo nested > "$w/a/dir/n.txt"
echo "second disc" > "$w/b/second.txt"
xorriso -as mkisofs -quiet -V FIRST -J -R -o "$w/a.iso" "$w/a" 2>"$w/x.err" || { cat "$w/x.err"; exit 1; }
xorriso -as mkisofs -quiet -V SECOND -J -R -o "$w/b.iso" "$w/b" 2>"$w/x.err" || { cat "$w/x.err"; exit 1; }
: > "$w/zero.iso"
head -c $((1 << 20)) /dev/zero > "$w/d0.raw"
head -c $((5 * 2048 + 700)) /dev/urandom > "$w/odd.iso"
want=$(sha256sum < "$w/a/random.bin" | cut -d' ' -f1)

script='for d in /sys/block/sr*; do n=${d##*/}
  echo "cd $n lun=$(ls -d $d/device/scsi_device/* | sed "s|.*/||") type=$(cat $d/device/type) removable=$(cat $d/removable) model=$(cat $d/device/model) size=$(cat $d/size) ro=$(cat $d/ro)"
done
lun() { for d in /sys/block/sr*; do case $(ls $d/device/scsi_device) in *:$1) echo /dev/${d##*/};; esac; done; }
A=$(lun 1) E=$(lun 2) Z=$(lun 3) O=$(lun 4)
mkdir -p /mnt/a
mount -t iso9660 -o ro $A /mnt/a; echo "mount rc=$?"
ls /mnt/a; cat /mnt/a/hello.txt
echo "guest-sha $(sha256sum < /mnt/a/random.bin)"
( echo x > /mnt/a/new.txt ) 2>/tmp/e; echo "fswrite rc=$? $(cat /tmp/e)"
dd if=/dev/zero of=$A bs=2048 count=1 2>/tmp/e; echo "devwrite rc=$? $(cat /tmp/e)"
umount /mnt/a
dd if=$E of=/dev/null bs=2048 count=1 2>/tmp/e; echo "emptyread rc=$? $(cat /tmp/e)"
dd if=$O of=/dev/null bs=2048 count=5 2>/dev/null; echo "oddread rc=$?"
dd if=$Z of=/dev/null bs=2048 count=1 iflag=direct 2>/dev/null; echo "zeroread rc=$?"
# a guest eject (START STOP UNIT LoEj): busybox has no eject, the cdrom driver ejects on close
echo 1 > /proc/sys/dev/cdrom/autoeject; dd if=$O of=/dev/null bs=2048 count=1 2>/dev/null
echo 0 > /proc/sys/dev/cdrom/autoeject
dd if=$O of=/dev/null bs=2048 count=1 2>/tmp/e; echo "after-guest-eject rc=$? $(cat /tmp/e)"
echo "VIRIDIAN-DVD: change-now"
for i in $(seq 1 120); do
  if mount -t iso9660 -o ro $A /mnt/a 2>/dev/null; then
    [ -f /mnt/a/second.txt ] && break
    umount /mnt/a
  fi
  sleep 1
done
echo "after-change $(cat /mnt/a/second.txt 2>&1) first=[$(ls /mnt/a/hello.txt 2>/dev/null)]"
umount /mnt/a
echo "VIRIDIAN-DVD: eject-now"
for i in $(seq 1 120); do
  dd if=$A of=/dev/null bs=2048 count=1 2>/dev/null || break
  sleep 1
done
mount -t iso9660 -o ro $A /mnt/a 2>/dev/null; echo "after-eject mount rc=$?"
dmesg | grep -iE "sr[0-9]|cdrom|scsi|i/o error|critical" | head -40'
log=$out/dvd.log
: >"$log"
sock=$w/ctl.sock
ctl() { printf '%s\n' "$1" | socat -t 5 - "UNIX-CONNECT:$sock" 2>/dev/null; }
timeout 360 "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --control "$sock" \
  --disk "$w/d0.raw" --dvd "$w/a.iso" --dvd '' --dvd "$w/zero.iso" --dvd "$w/odd.iso" \
  --cmdline "console=ttyS0 quiet $(viridian_cmdline_arg "$script")" </dev/null >"$log" 2>&1 &
vm=$!
wait_log() { # wait_log PATTERN SECONDS
  local i
  for ((i = 0; i < $2; i++)); do grep -q "$1" "$log" && return 0; kill -0 $vm 2>/dev/null || return 1; sleep 1; done
  return 1
}
wait_log "VIRIDIAN-DVD: change-now" 300
ctl '{"op":"status"}' > "$out/status1.json"
changed=$(ctl "{\"op\":\"dvd-change\",\"lun\":1,\"path\":\"$w/b.iso\"}")
ctl '{"op":"status"}' > "$out/status2.json"
bad=$(ctl '{"op":"dvd-change","lun":0,"path":null}'; ctl "{\"op\":\"dvd-change\",\"lun\":2,\"path\":\"$w/missing.iso\"}")
wait_log "VIRIDIAN-DVD: eject-now" 200
ejected=$(ctl '{"op":"dvd-change","lun":1,"path":null}')
ctl '{"op":"status"}' > "$out/status3.json"
wait $vm
rc=$?
check "worker exits 0 after power-off" [ "$rc" = 0 ]
check "guest command ran" [ "$(viridian_mark "$log" cmd-exit)" = 0 ]
check "sr_mod and isofs loaded" bash -c "grep -q 'modprobe sr_mod rc=0' '$log' && grep -q 'modprobe isofs rc=0' '$log'"
check "LUN 1: a removable type-5 drive, Virtual DVD-ROM, read-only" \
  grep -qE "cd sr[0-9] lun=[0-9]+:0:0:1 type=5 removable=1 model=Virtual DVD-ROM *size=[1-9][0-9]* ro=" "$log"
check "the disc mounts" has "$log" "mount rc=0"
check "files listed" has "$log" "first disc"
check "random file's sha256 matches the host's" has "$log" "guest-sha $want"
check "a write to the mounted disc fails (read-only file system)" grep -qE "fswrite rc=[1-9].*Read-only file system" "$log"
check "opening the drive for writing fails (read-only)" grep -qE "devwrite rc=[1-9].*(Read-only|Permission denied|Operation not permitted)" "$log"
check "the empty drive has no medium" grep -qE "emptyread rc=[1-9].*(No medium found|No such device or address)" "$log"
check "odd-sized ISO: its whole blocks read" has "$log" "oddread rc=0"
check "odd-sized ISO (5 blocks + 700 bytes): 5 blocks" grep -qE "cd sr[0-9] lun=[0-9]+:0:0:4 .*size=20 " "$log"
check "zero-length ISO: its one block (READ CAPACITY's last LBA 0) does not read" \
  bash -c "grep -qE 'cd sr[0-9] lun=[0-9]+:0:0:3 .*size=4 ' '$log' && grep -q 'zeroread rc=1' '$log'"
check "status shows the DVD drives and their media" \
  bash -c "grep -q '\"lun\": *1, *\"type\": *\"dvd\", *\"path\": *\"$w/a.iso\"' '$out/status1.json' && grep -q '\"lun\": *2, *\"type\": *\"dvd\", *\"path\": *null' '$out/status1.json'"
check "dvd-change accepted" grep -q '"ok": *true' <<<"$changed"
check "status shows the new disc" grep -q "\"path\": *\"$w/b.iso\"" "$out/status2.json"
check "dvd-change on a hard disk or with a missing ISO refused" bash -c "[ \$(grep -c '\"ok\": *false' <<<'$bad') = 2 ]"
check "the guest sees the second disc after a live change" has "$log" "after-change second disc first=[]"
check "the guest's own eject empties its drive (status: path null)" \
  bash -c "grep -qE 'after-guest-eject rc=[1-9].*No medium found' '$log' && grep -q '\"lun\": *4, *\"type\": *\"dvd\", *\"path\": *null' '$out/status1.json'"
check "eject accepted" grep -q '"ok": *true' <<<"$ejected"
check "after the eject the drive is empty" bash -c "grep -q 'after-eject mount rc=[1-9]' '$log' && grep -q '\"lun\": *1, *\"type\": *\"dvd\", *\"path\": *null' '$out/status3.json'"
check "no SCSI errors besides the expected ones (no medium, out of range, write protect)" \
  bash -c "! grep -iE 'Medium Error|Hardware Error|Aborted Command|timing out|host reset|device offline' '$log'"
check "no MMC command the guest sends whatever the disc was refused (storvsc logs failed SRBs)" \
  bash -c "! grep -qiE 'cmd 0x(52|46|4a|5a|bb|1e|12|3) status' '$log'"
check "no kernel oops or panic" bash -c "! grep -qE 'Oops|Kernel panic|BUG:' '$log'"
[ "$fails" = 0 ] || { cat "$log"; cat "$out"/status*.json; }

# The same through vmms: Add-VMDvdDrive, Start-VM, a live Set-VMDvdDrive the guest sees.
t=$(mktemp -d /tmp/dvd-vmms.XXXXXX) # sockets cannot live on the 9p output folder
export VIRIDIAN_SOCKET=$t/vmms.sock
"$B/vmms" --foreground --root "$t/root" 2>>"$out/vmms.log" & vmms=$!
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
hv() { "$B/hv" "$@"; }
guest='mkdir -p /mnt/d; D=/dev/$(ls /sys/block | grep sr | head -1)
mount -t iso9660 -o ro $D /mnt/d; echo "vmms-first $(cat /mnt/d/hello.txt)"; umount /mnt/d
echo "VIRIDIAN-DVD: vmms-change-now"
for i in $(seq 1 120); do
  if mount -t iso9660 -o ro $D /mnt/d 2>/dev/null; then [ -f /mnt/d/second.txt ] && break; umount /mnt/d; fi
  sleep 1
done
echo "vmms-after-change [$(cat /mnt/d/second.txt 2>&1)]"; umount /mnt/d'
hv New-VM -Name dvd -MemoryStartupBytes 256MB >/dev/null
hv Set-VMFirmware -VMName dvd -KernelPath "$G/vmlinuz" -InitrdPath "$G/initramfs.cpio.gz" \
  -KernelCommandLine "console=ttyS0 quiet $(viridian_cmdline_arg "$guest")" >/dev/null
check "vmms: Add-VMDvdDrive" bash -c "'$B/hv' Add-VMDvdDrive -VMName dvd -Path '$w/a.iso' | grep -qE '^dvd +SCSI +0 +0 +ISO '"
check "vmms: Start-VM" hv Start-VM dvd
console=$(echo "$t"/root/Virtual\ Machines/*/console.log)
for _ in $(seq 240); do grep -q "vmms-change-now" "$console" 2>/dev/null && break; sleep 1; done
check "vmms: the guest read the first disc" grep -q "vmms-first first disc" "$console"
check "vmms: Remove-VMDvdDrive refused while running (32788)" \
  bash -c "! '$B/hv' Remove-VMDvdDrive -VMName dvd -ControllerLocation 0 2>'$t/err' && grep -q 32788 '$t/err'"
check "vmms: Set-VMDvdDrive on the running VM" hv Set-VMDvdDrive -VMName dvd -ControllerLocation 0 -Path "$w/b.iso"
for _ in $(seq 150); do grep -q "vmms-after-change" "$console" 2>/dev/null && break; sleep 1; done
check "vmms: the guest sees the new disc" grep -q "vmms-after-change \[second disc\]" "$console"
check "vmms: Get-VMDvdDrive shows it" bash -c "'$B/hv' Get-VMDvdDrive dvd | grep -qE '^dvd +SCSI +0 +0 +ISO +$w/b.iso'"
for _ in $(seq 60); do grep -q '"state": "Off"' <<<"$(hv Get-VM dvd -Json)" && break; sleep 1; done
check "vmms: Remove-VMDvdDrive once the guest powered off" hv Remove-VMDvdDrive -VMName dvd -ControllerLocation 0
wp=$(hv Get-VM dvd -Json | sed -n 's/.*"worker_pid": \([0-9]*\).*/\1/p')
hv Stop-VM dvd -TurnOff >/dev/null 2>&1
[ -n "$wp" ] && kill "$wp" 2>/dev/null
kill "$vmms"; wait "$vmms" 2>/dev/null
[ "$fails" = 0 ] || cat "$console"
rm -rf "$w" "$t"
finish
