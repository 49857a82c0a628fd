#!/usr/bin/env bash
# Checkpoints with the stock guest through vmms: the guest keeps a counter process and writes
# tagged blocks to its VHDX disk on command (commands go in through its serial console).
# Standard checkpoint c1 of the running VM; more writes; Restore-VMCheckpoint c1 -> Saved;
# Start-VM: the guest is back at c1 (the same counter, c1's blocks, the later writes gone).
# A branch: write, checkpoint c2 (child of c1), write more, Remove-VMCheckpoint c2 and then c1
# while the VM runs (live merges); the guest sees all its data throughout, and after it powers
# off the one remaining image is sound and byte-identical to a reference written without
# checkpoints. Production checkpoints: with hv_vss_daemon the guest's file systems are frozen and
# thawed; ProductionOnly with the VSS service off fails in one line and changes nothing.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 900 "$0" "$@"
t=$(mktemp -d /tmp/vmms-ckpt.XXXXXX)  # sockets cannot live on the 9p output folder
export VIRIDIAN_SOCKET=$t/vmms.sock
vmms=""
hv() { "$B/hv" "$@"; }
field() { hv Get-VM "$1" -Json | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -1; }
wait_field() { # wait_field SECONDS VM FIELD VALUE-REGEX
  local deadline=$((SECONDS + $1)) v=""
  while [ $SECONDS -lt $deadline ]; do
    v=$(field "$2" "$3"); if grep -qE -- "^($4)\$" <<<"$v"; then return 0; fi; sleep 1
  done
  echo "$2 $3 is '$v'" >&2; return 1
}
cleanup() { [ -n "$vmms" ] && kill "$vmms" 2>/dev/null; pkill -f "vmwp.*$t" 2>/dev/null; }
trap cleanup EXIT
"$B/vmms" --foreground --root "$t/root" 2>>"$out/vmms.log" & vmms=$!
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done

con() { cat "$t"/root/Virtual\ Machines/*/console.log 2>/dev/null; }
mark=0
# send LINE: one command line to the guest's console; waits for its answer (a line with "#N")
send() {
  mark=$((mark + 1))
  local data; data=$(printf '%s %s\n' "$1" "$mark" | base64 -w0)
  printf '{"op":"console-input","vm":"g","data":"%s"}\n' "$data" | socat -t 5 - "UNIX-CONNECT:$VIRIDIAN_SOCKET" >/dev/null
  for _ in $(seq 120); do con | grep -qa "#$mark\$" && return 0; sleep 0.5; done
  echo "no answer to '$1'" >&2; return 1
}
answer() { con | grep -a "#$mark\$" | tail -1 | tr -d '\r'; }
readblk() { send "R x $1" && answer | grep -q "^READ $1 \[$2\] #$mark\$"; }
last_count() { con | grep -ao 'COUNT=[0-9]*' | tail -1 | cut -d= -f2; }

guest='(i=0; while :; do i=$((i+1)); echo "COUNT=$i"; sleep 1; done) &
for t in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done
echo CKPT-GUEST-READY
while :; do read -r op tag blk n </dev/ttyS0 || continue
  case $op in
  W) printf "%-16s" "$tag" | dd of=/dev/sda bs=512 seek=$blk conv=sync oflag=direct 2>/dev/null && echo "WROTE $tag $blk #$n" ;;
  R) echo "READ $blk [$(dd if=/dev/sda bs=512 skip=$blk count=1 iflag=direct 2>/dev/null | tr -d "\000 " | head -c 16)] #$n" ;;
  esac
done'
hv New-VHD -Path "$t/disk.vhdx" -SizeBytes 32MB -Dynamic >/dev/null
hv New-VM -Name g -MemoryStartupBytes 256MB -ProcessorCount 1 >/dev/null
hv Set-VMFirmware -VMName g -KernelPath "$G/vmlinuz" -InitrdPath "$G/initramfs.cpio.gz" \
  -KernelCommandLine "console=ttyS0 quiet viridian.daemons $(viridian_cmdline_arg "$guest")"
hv Add-VMHardDiskDrive -VMName g -Path "$t/disk.vhdx" >/dev/null
check "Set-VM -CheckpointType Standard" hv Set-VM g -CheckpointType Standard
check "Start-VM" hv Start-VM g
check "the guest is ready" bash -c "for i in \$(seq 240); do cat '$t'/root/Virtual\ Machines/*/console.log 2>/dev/null | grep -qa CKPT-GUEST-READY && exit 0; sleep 1; done; exit 1"
check "the guest writes A to block 1" send "W A 1"

check "Checkpoint-VM c1 of the running VM" hv Checkpoint-VM -Name g -SnapshotName c1
c1=$(last_count)
check "...it stays Running" wait_field 5 g state Running
check "Get-VMCheckpoint lists c1 (Standard)" bash -c "'$B/hv' Get-VMCheckpoint -VMName g | grep -E '^g +c1 +Standard'"
check "the guest writes on: B over block 1" send "W B 1"
check "...and C to block 2" send "W C 2"
check "Restore-VMCheckpoint c1 -> Saved" bash -c "'$B/hv' Restore-VMCheckpoint -VMName g -Name c1 && [ \"\$('$B/hv' Get-VM g -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Saved ]"
lines=$(con | wc -l)
check "Start-VM resumes c1's state" hv Start-VM g
check "...the same counter goes on from c1's ($c1)" bash -c "for i in \$(seq 60); do n=\$(cat '$t'/root/Virtual\ Machines/*/console.log | tail -n +$lines | grep -ao 'COUNT=[0-9]*' | head -1 | cut -d= -f2); [ -n \"\$n\" ] && { [ \$n -ge $c1 ] && [ \$n -le \$(( $c1 + 3 )) ]; exit; }; sleep 1; done; exit 1"
check "...block 1 holds A again" readblk 1 A
check "...block 2 is empty again" readblk 2 ""

check "a branch: the guest writes D to block 3" send "W D 3"
check "Checkpoint-VM c2" hv Checkpoint-VM -Name g -SnapshotName c2
check "...c2's parent is c1" bash -c "'$B/hv' Get-VMCheckpoint -VMName g | grep -E '^g +c2 +Standard .* c1 *$'"
check "the guest writes E to block 4" send "W E 4"
check "Remove-VMCheckpoint c2 while the VM runs (live merge)" hv Remove-VMCheckpoint -VMName g -Name c2
check "...c2 is gone, c1 stays" bash -c "! '$B/hv' Get-VMCheckpoint -VMName g | grep -q ' c2 ' && '$B/hv' Get-VMCheckpoint -VMName g | grep -q ' c1 '"
check "...the VM is Running, no operation left" wait_field 10 g state Running
check "...the guest reads D" readblk 3 D
check "...and E" readblk 4 E
check "Remove-VMCheckpoint c1 (the base) while the VM runs" hv Remove-VMCheckpoint -VMName g -Name c1
check "...no checkpoint left" bash -c "! '$B/hv' Get-VMCheckpoint -VMName g | grep -qE '^g '"
check "...the guest reads A" readblk 1 A
check "...D" readblk 3 D
check "...E" readblk 4 E
check "...and an empty block 2" readblk 2 ""
check "the guest writes F to block 5 after the merges" send "W F 5"

# Production: hv_vss_daemon freezes the guest's file systems for the checkpoint.
check "Set-VM -CheckpointType ProductionOnly" hv Set-VM g -CheckpointType ProductionOnly
check "VSS ready" bash -c "for i in \$(seq 120); do '$B/hv' Get-VMIntegrationService g | grep -qE '^VSS +True +OK' && exit 0; sleep 1; done; exit 1"
check "Checkpoint-VM c3 (Production, the guest freezes)" hv Checkpoint-VM -Name g -SnapshotName c3
check "...listed as Production" bash -c "'$B/hv' Get-VMCheckpoint -VMName g | grep -E '^g +c3 +Production'"
check "...the event log names the freeze" bash -c "'$B/hv' Get-VMEvent g | grep -qi 'froze\|freez'"
check "Remove-VMCheckpoint c3" hv Remove-VMCheckpoint -VMName g -Name c3
check "Stop-VM (graceful)" hv Stop-VM g
disk=$(hv Get-VMHardDiskDrive -VMName g | grep -o '/[^ ]*\.a\{0,1\}vhdx' | head -1)
echo "the VM's disk now: $disk"
check "one image left, the base" [ "$disk" = "$t/disk.vhdx" ]
check "...no AVHDX left behind" bash -c "! ls '$t'/*.avhdx '$t'/root/Virtual\ Machines/*/*.avhdx 2>/dev/null | grep -q ."
check "...Test-VHD calls it sound" hv Test-VHD -Path "$disk"
check "...qemu-img check calls it clean" qemu-img check -q "$disk"
# The reference: the same blocks written to a plain image with no checkpoint ever taken.
truncate -s 32M "$t/ref.raw"
for b in "A 1" "D 3" "E 4" "F 5"; do
  set -- $b; printf "%-16s" "$1" | dd of="$t/ref.raw" bs=512 seek="$2" conv=sync,notrunc 2>/dev/null
done
check "...its data equals a reference written without checkpoints (qemu-img compare)" qemu-img compare -f vhdx -F raw "$disk" "$t/ref.raw"

# ProductionOnly without the guest's VSS service: a clean failure, nothing changed.
hv Disable-VMIntegrationService -VMName g -Name VSS >/dev/null
check "Start-VM without VSS" hv Start-VM g
check "ProductionOnly Checkpoint-VM fails in one line" bash -c "! '$B/hv' Checkpoint-VM -Name g -SnapshotName c4 2>$out/c4.err && [ \$(wc -l <$out/c4.err) = 1 ] && cat $out/c4.err"
check "...no checkpoint was made" bash -c "! '$B/hv' Get-VMCheckpoint -VMName g | grep -q ' c4 '"
check "...the VM still Running on its one disk" bash -c "[ \"\$('$B/hv' Get-VMHardDiskDrive -VMName g | grep -o '/[^ ]*\.a\{0,1\}vhdx' | head -1)\" = '$t/disk.vhdx' ]"
hv Stop-VM g -TurnOff >/dev/null
cp "$t"/root/Virtual\ Machines/*/console.log "$out/g.console.log" 2>/dev/null
[ "$fails" = 0 ] || { echo "--- vmms log"; tail -40 "$out/vmms.log"; hv Get-VMEvent g; echo "--- console"; tail -30 "$out/g.console.log"; }
finish
