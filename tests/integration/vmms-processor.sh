#!/usr/bin/env bash
# Set-VMProcessor / Get-VMProcessor through vmms and hv, without a guest: -Maximum and
# -RelativeWeight put the worker in a cgroup of its own with those limits (this host's cgroup
# v2 cpu.max / cpu.weight, or v1 cpu.cfs_quota_us / cpu.shares), before it runs, changed live
# on a running VM, the cgroup removed when the worker is gone (also one that died while vmms was
# down: the next vmms removes it); -Reserve admits a start only while
# the running VMs' reserves fit the host's processors; -Count only when Off; bad values refused in
# one line; the settings kept across a vmms restart; a host without a cpu controller refuses
# limits (and runs VMs without them). A stand-in vmwp plays the worker; vmms-processor-guest.sh
# measures a capped guest.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/vmms-standin.bash vmms-cpu
proc() { hv Get-VMProcessor "$1" -Json | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(' '.join(str(d[k]) for k in ('Count','Maximum','Reserve','RelativeWeight')))"; }
vm_id() { hv Get-VM "$1" -Json | sed -n 's/.*"id": "\([0-9a-f-]*\)".*/\1/p' | head -1; }
worker_pid() { cat "$t"/root/Virtual\ Machines/"$(vm_id "$1")"/stand-in.pid 2>/dev/null; }

# The hierarchy vmms finds: cgroup2 with the cpu controller, else v1's cpu hierarchy.
v2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
if [ -n "$v2" ] && grep -qw cpu "$v2/cgroup.controllers" 2>/dev/null; then
  kind=v2 cg=$v2/viridian
else
  kind=v1 cg=$(awk '$9 == "cgroup" && $NF ~ /(^|,)cpu(,|$)/ { print $5; exit }' /proc/self/mountinfo)/viridian
fi
[ "$cg" != /viridian ] || { echo "SKIP: this host mounts no cgroup hierarchy with the cpu controller"; exit 77; }
echo "cgroup $kind: $cg"
limits() { # the VM's cgroup limits as "QUOTA WEIGHT" in v2 terms (v1: quota_us, shares)
  local d=$cg/$1
  if [ $kind = v2 ]; then echo "$(cut -d' ' -f1 "$d/cpu.max") $(cat "$d/cpu.weight")"
  else echo "$(cat "$d/cpu.cfs_quota_us") $(cat "$d/cpu.shares")"; fi
}

touch "$t/vmlinuz"
start_vmms
host=$(nproc)
hv New-VM -Name lab -ProcessorCount 2 >/dev/null
hv Set-VMFirmware -VMName lab -KernelPath "$t/vmlinuz" >/dev/null
check "Get-VMProcessor: Hyper-V's defaults (Maximum 100, Reserve 0, RelativeWeight 100)" [ "$(proc lab)" = "2 100 0 100" ]
check "...its table" bash -c "'$B/hv' Get-VMProcessor lab | grep -qE '^lab +2 +100 +0 +100\$'"
check "Set-VMProcessor -Maximum 25 -RelativeWeight 200 (Off)" hv Set-VMProcessor lab -Maximum 25 -RelativeWeight 200
check "...prints nothing" [ -z "$(hv Set-VMProcessor lab -Maximum 25)" ]
check "...Get-VMProcessor shows it" [ "$(proc lab)" = "2 25 0 200" ]
check "nothing to change is refused in one line" refused hv Set-VMProcessor lab
check "-Maximum 0 refused" refused hv Set-VMProcessor lab -Maximum 0
check "...saying the range" says "Maximum must be 1 to 100"
check "-Maximum 101 refused" refused hv Set-VMProcessor lab -Maximum 101
check "-Reserve 101 refused" refused hv Set-VMProcessor lab -Reserve 101
check "-RelativeWeight 0 refused" refused hv Set-VMProcessor lab -RelativeWeight 0
check "-Count 65 refused" refused hv Set-VMProcessor lab -Count 65
check "...nothing changed" [ "$(proc lab)" = "2 25 0 200" ]
check "event log: the change" bash -c "'$B/hv' Get-VMEvent lab | grep -q 'processors: Count 2, Maximum 25%, Reserve 0%, RelativeWeight 200'"
stop_vmms; start_vmms
check "kept across a vmms restart" [ "$(proc lab)" = "2 25 0 200" ]

id=$(vm_id lab)
check "Start-VM" hv Start-VM lab
until_true [ -n "$(worker_pid lab)" ]
w=$(worker_pid lab)
check "the worker runs in the VM's own cgroup" grep -q "/viridian/$id\$" "/proc/$w/cgroup"
if [ $kind = v2 ]; then want="50000 200"; else want="50000 2048"; fi
check "...at 25 % of its 2 processors ($kind: quota 50000 us of 100000, weight 200): $(limits "$id")" [ "$(limits "$id")" = "$want" ]
check "Set-VMProcessor -Maximum 50 of the running VM" hv Set-VMProcessor lab -Maximum 50
check "...changed live: quota 100000 us" [ "$(limits "$id" | cut -d' ' -f1)" = 100000 ]
check "-Maximum 100 lifts the cap" bash -c "'$B/hv' Set-VMProcessor lab -Maximum 100 && grep -qE '^(max|-1)' '$cg/$id/'$([ $kind = v2 ] && echo cpu.max || echo cpu.cfs_quota_us)"
check "-Count of a running VM refused (32788)" bash -c "'$B/hv' Set-VMProcessor lab -Count 1 2>&1 | grep -q 32788"

# Reserve: lab (2 processors) reserves all of them; b, with the host's other processors all reserved too, does not fit.
check "-Reserve 100 of the running VM (200 % of the host's $((host * 100)) %)" hv Set-VMProcessor lab -Reserve 100
hv New-VM -Name b -ProcessorCount $((host > 2 ? host - 1 : 1)) >/dev/null
hv Set-VMFirmware -VMName b -KernelPath "$t/vmlinuz" >/dev/null
hv Set-VMProcessor b -Reserve 100 >/dev/null
check "a VM whose reserve does not fit is refused at start, in one line" refused hv Start-VM b
check "...saying how much is left (32788)" bash -c "grep -q 'processor reserve' '$t/err' && grep -q 32788 '$t/err'"
check "...and stays Off" [ "$(state b)" = Off ]
check "with -Reserve 0 it starts" bash -c "'$B/hv' Set-VMProcessor b -Reserve 0 && '$B/hv' Start-VM b"
check "a reserve the running VM cannot have is refused" refused hv Set-VMProcessor b -Reserve 100
check "...saying so" says "processor reserve"
hv Stop-VM b -TurnOff >/dev/null
hv Stop-VM lab -TurnOff >/dev/null
until_true [ "$(state lab)" = Off ]
check "the worker gone, its cgroup is removed" until_true [ ! -d "$cg/$id" ]
# A worker that exits while vmms is not running leaves its cgroup behind: the next vmms removes it.
check "Start-VM lab again" hv Start-VM lab
until_true [ -s "$cg/$id/cgroup.procs" ]
w=$(head -n 1 "$cg/$id/cgroup.procs")
stop_vmms
kill -9 "$w"; until_true bash -c "! kill -0 $w 2>/dev/null || grep -q '^State:.*Z' /proc/$w/status"
start_vmms
check "a worker that died while vmms was down: after the restart the VM is Off" [ "$(state lab)" = Off ]
check "...and its cgroup is gone" [ ! -d "$cg/$id" ]

# A host whose cgroups vmms cannot use: limits refused, a VM without them still runs.
stop_vmms
mkdir -p "$t/plain"
VIRIDIAN_CGROUP=$t/plain start_vmms
check "no cpu controller: a VM with limits does not start (one line)" refused hv Start-VM lab
check "...saying why" says "processor limits cannot be set"
check "...a VM without limits starts" bash -c "until [ \"\$('$B/hv' Get-VM b -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Off ]; do sleep 0.1; done; '$B/hv' Start-VM b"
hv Stop-VM b -TurnOff >/dev/null
check "vmms still serves" hv Get-VM lab
[ "$fails" = 0 ] || { echo "--- vmms log"; tail -20 "$t/vmms.log"; }
exit $((fails > 0))
