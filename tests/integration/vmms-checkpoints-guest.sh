#!/usr/bin/env bash
# Checkpoints of the stock guest through vmms and hv, driven by the guest itself: its script (on
# the kernel command line) keeps one writer process that every ~0.5 s appends record N (512
# bytes that depend only on N) to its VHDX disk with O_DIRECT, reads the disk's first MiB back
# and prints "TICK n=N pid=P boot=B sum=MD5 up=S"; it also relays its syslog (hv_vss_daemon's
# freeze/thaw) to the console and stops hv_vss_daemon once it has seen a thaw. The host only
# reads the console: it takes checkpoints while the guest writes, applies them and checks that
# the same process goes on from the checkpoint's counter with the disk as it was then (the MD5
# the host computes for record N), makes a branch of the tree, takes a Production checkpoint
# (the guest logs the freeze and thaw), sees ProductionOnly fail in one line once the daemon is
# gone, removes every checkpoint while the VM runs (live merges, jobs) and finally compares
# the one remaining image with a reference written without checkpoints (MD5, qemu-img compare).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 600 "$0" "$@"
t=$(mktemp -d /tmp/vmms-ckg.XXXXXX)  # sockets cannot live on the 9p output folder
export VIRIDIAN_SOCKET=$t/vmms.sock
vmms=""
hv() { "$B/hv" "$@"; }
quiet() { "$@" >/dev/null; }
py() { /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print("\n".join(map(str,r)) if isinstance(r,list) else r)' "$1"; }
vm_field() { hv Get-VM g -Json | sed -n "s/^ *\"$1\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -1; }
drive() { hv Get-VM g -Json | py 'd[0]["disks"][0]["path"]'; }
cp_field() { hv Get-VMCheckpoint g -Json | py "[c.get('$2') for c in d if c['name'] == '$1'][0]"; }
cps() { hv Get-VMCheckpoint g -Json | py '[c["name"] for c in d]' | sort | tr '\n' ' ' | sed 's/ *$//'; }
wait_state() { # wait_state SECONDS STATE
  local deadline=$((SECONDS + $1)) v=""
  while [ $SECONDS -lt $deadline ]; do v=$(vm_field state); [ "$v" = "$2" ] && return 0; sleep 0.5; done
  echo "state is '$v', not $2" >&2; return 1
}
cleanup() { [ -n "$vmms" ] && kill "$vmms" 2>/dev/null; pkill -f "vmwp.*$t" 2>/dev/null; }
trap cleanup EXIT
"$B/vmms" --foreground --root "$t/root" 2>>"$out/vmms.log" & vmms=$!
for _ in $(seq 100); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done

# The console: the worker appends to it across restores, so byte offsets mark "after X".
con() { cat "$t"/root/Virtual\ Machines/*/console.log 2>/dev/null; }
mark() { con | wc -c; }
ticks() { con | tail -c +$(( ${1:-0} + 1 )) | tr -d '\r' | grep -ao 'TICK n=[0-9]* pid=[0-9]* boot=[0-9a-f]* sum=[0-9a-f]* up=[0-9.]*'; }
tick_field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
last_n() { ticks "${1:-0}" | tail -1 | tick_field n; }
# wait_n SECONDS N [FROM]: until a tick with n >= N after byte FROM; exits early if the worker is gone
wait_n() {
  local deadline=$((SECONDS + $1)) n
  while [ $SECONDS -lt $deadline ]; do
    n=$(last_n "${3:-0}"); [ "${n:-0}" -ge "$2" ] && return 0
    [ "$(vm_field state)" = Running ] || { echo "the VM is $(vm_field state)" >&2; return 1; }
    sleep 0.5
  done
  echo "counter at '${n:-}' after ${1}s, wanted $2" >&2; return 1
}
wait_con() { # wait_con SECONDS PATTERN [FROM]
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do con | tail -c +$(( ${3:-0} + 1 )) | grep -a -- "$2" >/dev/null && return 0; sleep 0.5; done
  echo "no '$2' on the console" >&2; return 1
}
# ref_md5 N: the MD5 of the disk's first MiB once records 1..N are written (what the guest prints)
ref_md5() { /usr/bin/python3 - "$1" <<'PY'
import hashlib, sys
n = int(sys.argv[1])
buf = bytearray(1 << 20)
for k in range(1, n + 1):
    r = b"record %08d\n" % k
    buf[(k - 1) * 512:(k - 1) * 512 + len(r)] = r
print(hashlib.md5(buf).hexdigest())
PY
}
# first_tick FROM: the first tick after byte FROM; sum_ok FROM: its MD5 is what the host expects for its n
first_tick() { ticks "$1" | head -1; }
sum_ok() { local l; l=$(first_tick "$1"); [ -n "$l" ] && [ "$(tick_field sum <<<"$l")" = "$(ref_md5 "$(tick_field n <<<"$l")")" ]; }

guest=$(cat <<'G'
syslogd -O /tmp/syslog
i=0; while [ $i -lt 150 ] && ! [ -b /dev/sda ]; do sleep 0.1; i=$((i + 1)); done
cat >/tmp/writer.sh <<'W'
n=0 seen=0 vss=1
while [ $n -lt 2048 ]; do
  n=$((n + 1))
  printf 'record %08d\n' $n | dd of=/dev/sda bs=512 seek=$((n - 1)) conv=sync,notrunc oflag=direct 2>/dev/null || echo "WRITE-FAILED n=$n"
  sum=$(dd if=/dev/sda bs=1048576 count=1 iflag=direct 2>/dev/null | md5sum)
  echo "TICK n=$n pid=$$ boot=$(cut -c1-8 /proc/sys/kernel/random/boot_id) sum=${sum%% *} up=$(cut -d' ' -f1 /proc/uptime)"
  l=$(wc -l </tmp/syslog 2>/dev/null); l=${l:-0}
  if [ "$l" -gt "$seen" ]; then
    tail -n +$((seen + 1)) /tmp/syslog | head -n $((l - seen)) | sed 's/^/GUESTLOG: /'
    seen=$l
  fi
  if [ $vss = 1 ] && grep -q 'op=THAW: succeeded' /tmp/syslog 2>/dev/null; then
    killall hv_vss_daemon && echo VSS-DAEMON-STOPPED; vss=0
  fi
  sleep 0.5
done
W
sh /tmp/writer.sh
G
)
hv New-VHD -Path "$t/disk.vhdx" -SizeBytes 32MB -Dynamic >/dev/null
hv New-VM -Name g -MemoryStartupBytes 256MB -ProcessorCount 1 >/dev/null
hv Set-VMFirmware -VMName g -KernelPath "$G/vmlinuz" -InitrdPath "$G/initramfs.cpio.gz" \
  -KernelCommandLine "console=ttyS0 quiet viridian.daemons $(viridian_cmdline_arg "$guest")" >/dev/null
hv Add-VMHardDiskDrive -VMName g -Path "$t/disk.vhdx" >/dev/null
check "Set-VM -CheckpointType Standard" quiet hv Set-VM g -CheckpointType Standard
check "Start-VM" quiet hv Start-VM g
check "the guest writes and counts" wait_n 300 5
if [ "$fails" != 0 ]; then
  # Nothing else can pass: keep the console where in_vmhost looks, and say whether the guest
  # ever reached /init (an early-boot hang in the emulator is run again by tests/run).
  con >"$out/guest-console.log"
  exit_if_no_init "$out/guest-console.log"
  tail -n 40 "$out/guest-console.log"
  exit 1
fi
pid0=$(ticks | head -1 | tick_field pid); boot0=$(ticks | head -1 | tick_field boot)
check "...its disk reads as the host computes (MD5 of records 1..n)" sum_ok 0

# checkpoint NAME: Checkpoint-VM while the guest writes; sets lo/hi, the counter before and after
checkpoint() {
  lo=$(last_n); hv Checkpoint-VM -Name g -SnapshotName "$1" || return 1; hi=$(last_n)
  echo "  $1 taken between n=$lo and n=$hi"
}
check "Checkpoint-VM c1 of the running VM" checkpoint c1
c1lo=$lo c1hi=$hi
check "...the VM stays Running" wait_state 10 Running
check "...Get-VMCheckpoint lists c1, Standard" [ "$(cp_field c1 type)" = Standard ]
check "...the event log has the pause time" bash -c "'$B/hv' Get-VMEvent g | grep -qE 'paused [0-9]+ ms for the checkpoint'"
hv Get-VMEvent g | grep -E 'paused [0-9]+ ms' | sed 's/^/  /'
check "the guest writes on" wait_n 120 $((c1hi + 6))
check "Checkpoint-VM c2 (a child of c1)" checkpoint c2
c2hi=$hi
check "...c2's parent is c1" [ "$(cp_field c2 parent_name)" = c1 ]
check "the guest writes more" wait_n 120 $((c2hi + 6))
later=$(last_n)
up_later=$(ticks | tail -1 | tick_field up)

# Apply the older checkpoint: the VM is turned off and becomes Saved; Start-VM resumes c1.
apply() { hv Restore-VMCheckpoint -VMName g -Name "$1" && [ "$(vm_field state)" = Saved ]; }
check "Restore-VMCheckpoint c1 of the running VM -> Saved" apply c1
at=$(mark)
check "Start-VM resumes it -> Running" quiet hv Start-VM g
check "...the guest ticks again" wait_n 120 1 "$at"
l=$(first_tick "$at"); echo "  first tick after the apply: $l (c1 between $c1lo and $c1hi, later n=$later)"
n=$(tick_field n <<<"$l")
check "...its counter goes on from c1's value, not from $later" [ "$n" -ge $((c1lo + 1)) -a "$n" -le $((c1hi + 1)) ]
check "...the same process of the same boot" [ "$(tick_field pid <<<"$l") $(tick_field boot <<<"$l")" = "$pid0 $boot0" ]
check "...its disk is as it was at c1 (records 1..$n, the later ones gone)" sum_ok "$at"
check "...its uptime is c1's, not the later ${up_later}s" awk -v a="$(tick_field up <<<"$l")" -v b="$up_later" 'BEGIN { exit !(a < b) }'
check "...it keeps writing" wait_n 60 $((n + 3)) "$at"

# A branch: checkpoint again after applying c1.
check "Checkpoint-VM c3 after the apply" checkpoint c3
check "...c3's parent is c1: c2 and c3 branch from c1" [ "$(cp_field c3 parent_name) $(cp_field c2 parent_name)" = "c1 c1" ]
hv Get-VMCheckpoint g | sed 's/^/  /'

# Production: hv_vss_daemon freezes the guest's file systems around a disk-only checkpoint.
check "Set-VM -CheckpointType ProductionOnly" quiet hv Set-VM g -CheckpointType ProductionOnly
vss_ok() { for _ in $(seq 120); do grep -qE '^g +VSS +True +OK' <<<"$(hv Get-VMIntegrationService g)" && return 0; sleep 1; done; return 1; }
check "...VSS ready in the guest" vss_ok
at=$(mark)
check "Checkpoint-VM c4 (ProductionOnly, the guest freezes)" checkpoint c4
check "...listed as Production, child of c3" [ "$(cp_field c4 type) $(cp_field c4 parent_name)" = "Production c3" ]
check "...the guest logged the freeze" wait_con 60 'GUESTLOG: .*op=FREEZE: succeeded' "$at"
check "...and the thaw" wait_con 60 'GUESTLOG: .*op=THAW: succeeded' "$at"
check "...the VM kept running through it" wait_n 60 $((hi + 3))
check "the guest stops hv_vss_daemon" wait_con 60 VSS-DAEMON-STOPPED "$at"
d4=$(drive)
fails_one_line() { ! hv Checkpoint-VM -Name g -SnapshotName c5 >"$out/c5.out" 2>"$out/c5.err" && [ "$(wc -l <"$out/c5.err")" = 1 ]; }
check "ProductionOnly without the daemon fails in one line" fails_one_line
sed 's/^/  /' "$out/c5.err"
check "...no checkpoint made, the VM Running" [ "$(cps) $(vm_field state)" = "c1 c2 c3 c4 Running" ]
check "...its disk is still c4's child" [ "$(drive)" = "$d4" ]
check "...the guest writes on" wait_n 60 $(( $(last_n) + 3 ))

# Connect-VM's keyboard: bytes typed through vmms reach the guest's COM1 (its tty echoes them).
at=$(mark)
printf '{"op":"console-input","vm":"g","data":"%s"}\n' "$(printf 'typed-through-vmms\n' | base64 -w0)" |
  socat -t 10 - "UNIX-CONNECT:$VIRIDIAN_SOCKET" >"$out/typed.json"
check "console-input through vmms reaches the guest's tty (echoed)" wait_con 30 typed-through-vmms "$at"

# Remove every checkpoint while the VM runs: live merges into the chain, as jobs.
merging=0
hv Remove-VMCheckpoint -VMName g -Name c4 -AsJob >"$t/job"
job=$(cat "$t/job")
check "Remove-VMCheckpoint c4 of the running VM starts a job" grep -Eq '^[0-9a-f-]{36}$' "$t/job"
deadline=$((SECONDS + 120))
while [ $SECONDS -lt $deadline ]; do
  [ "$(vm_field status)" = "Merging Disk" ] && merging=1
  grep -q '"state": *"Running"' <<<"$(hv Get-VMJob -Id "$job" -Json)" || break
  sleep 0.2
done
echo "  Merging Disk seen while the job ran: $merging"
check "...the merge job completed" bash -c "'$B/hv' Get-VMJob -Id $job | tee -a '$out/jobs.txt' | grep -q 'merge.*Completed'"
check "...the event log: merged live by the worker" bash -c "'$B/hv' Get-VMEvent g | grep -q 'merging .*$(basename "$d4") into .* (live)'"
check "...the VM runs on c4's frozen disk, its child gone" [ "$(drive)" != "$d4" -a ! -e "$d4" ]
# writes_on: the guest goes on writing and its disk reads as expected
writes_on() { local at; at=$(mark); wait_n 60 $(( $(last_n) + 2 )) "$at" && sum_ok "$at"; }
check "...the guest writes on after the merge, its disk as expected" writes_on
check "Remove-VMCheckpoint c2 (a branch the VM does not use)" hv Remove-VMCheckpoint -VMName g -Name c2
check "Remove-VMCheckpoint c3 (live merge)" hv Remove-VMCheckpoint -VMName g -Name c3
check "Remove-VMCheckpoint c1 (live merge into the base)" hv Remove-VMCheckpoint -VMName g -Name c1
check "...no checkpoint left, the VM Running" [ "$(cps)-$(vm_field state)" = "-Running" ]
check "...no job left running" bash -c "! '$B/hv' Get-VMJob -Json | grep -q '\"state\": *\"Running\"'"
hv Get-VMJob | sed 's/^/  /'
on_base() { for _ in $(seq 60); do [ "$(drive)" = "$t/disk.vhdx" ] && return 0; sleep 1; done; return 1; }
check "...the VM's disk is the base again" on_base
check "...no AVHDX left" bash -c "! find '$t' -name '*.avhdx' | grep -q ."
check "...the guest writes on, its disk as expected" writes_on
check "Stop-VM -TurnOff" quiet hv Stop-VM g -TurnOff
check "...Off" wait_state 30 Off
last=$(last_n)
check "Test-VHD calls the base sound" quiet hv Test-VHD -Path "$t/disk.vhdx"
check "qemu-img check calls it clean" qemu-img check -q -f vhdx "$t/disk.vhdx"
# The reference: records 1..last written to a plain image, no checkpoint ever taken (the
# guest may have written record last+1 before it printed its tick: that one is allowed too).
reference() { /usr/bin/python3 - "$1" "$2" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "wb") as f:
    f.truncate(32 << 20)
    for k in range(1, n + 1):
        f.seek((k - 1) * 512); f.write(b"record %08d\n" % k)
PY
}
qemu-img convert -f vhdx -O raw "$t/disk.vhdx" "$t/final.raw"
got=$(md5sum <"$t/final.raw" | cut -d' ' -f1); match=""
for k in "$last" $((last + 1)); do
  reference "$k" "$t/ref.raw"
  [ "$(md5sum <"$t/ref.raw" | cut -d' ' -f1)" = "$got" ] && { match=$k; break; }
done
echo "  final disk MD5 $got; the guest printed up to record $last; equal to the reference of ${match:-none}"
check "the final disk equals a reference written without checkpoints (MD5)" [ -n "$match" ]
check "...qemu-img compare agrees" qemu-img compare -q -f vhdx -F raw "$t/disk.vhdx" "$t/ref.raw"
cp "$t"/root/Virtual\ Machines/*/console.log "$out/g.console.log" 2>/dev/null
[ "$fails" = 0 ] || { echo "--- vmms log"; tail -40 "$out/vmms.log"; hv Get-VMEvent g; echo "--- console"; tail -40 "$out/g.console.log"; }
finish
