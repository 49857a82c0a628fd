#!/usr/bin/env bash
# vmms with the stock guest (in the test host where this machine's KVM cannot run guests):
# New-VM -> Set-VMFirmware -> Start-VM -> Get-VM Running with uptime and heartbeat OK ->
# Get-VMIntegrationService; SIGKILL of one worker marks only that VM Off (the other stays
# Running); a vmms restart keeps the running VM and re-attaches; Stop-VM then shuts the guest
# down gracefully (the guest's init sees the host's power-off) -> Off, after a Save-VM and a
# Start-VM that resumes the same guest (uptime goes on). Networking the Hyper-V
# way: New-VMSwitch (Private), Add-VMNetworkAdapter with static MACs; the two guests ping each
# other through it and Get-VMNetworkAdapter shows the adapters connected with traffic.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 400 "$0" "$@"
t=$(mktemp -d /tmp/vmms-guests.XXXXXX)  # sockets cannot live on the 9p output folder
export VIRIDIAN_SOCKET=$t/vmms.sock
vmms=""
hv() { "$B/hv" "$@"; }
field() { hv Get-VM "$1" -Json | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -1; }
start_vmms() {
  "$B/vmms" --foreground --root "$t/root" 2>>"$out/vmms.log" & vmms=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
}
wait_field() { # wait_field SECONDS VM FIELD VALUE-REGEX
  local deadline=$((SECONDS + $1)) v=""
  while [ $SECONDS -lt $deadline ]; do
    v=$(field "$2" "$3"); if grep -qE -- "^($4)\$" <<<"$v"; then return 0; fi; sleep 1
  done
  echo "$2 $3 is '$v'" >&2; return 1
}
copy_logs() {
  for f in "$t"/root/Virtual\ Machines/*/console.log; do [ -f "$f" ] && cp "$f" "$out/$(basename "$(dirname "$f")").console.log"; done
}
cleanup() {
  [ -n "$vmms" ] && kill "$vmms" 2>/dev/null
  pkill -f "vmwp.*$t" 2>/dev/null
}
trap cleanup EXIT
start_vmms

check "New-VMSwitch lab (Private)" bash -c "'$B/hv' New-VMSwitch -Name lab -SwitchType Private >/dev/null"
for i in 1 2; do
  vm=g$i mac=00:15:5d:33:00:0$i
  guest="for t in \$(seq 150); do for d in /sys/class/net/*; do [ \"\$(cat \$d/address)\" = $mac ] && n=\${d##*/}; done; [ -n \"\$n\" ] && break; sleep 0.1; done
ip addr add 10.33.0.$i/24 dev \$n; ip link set \$n up
for t in \$(seq 120); do ping -c 1 -W 1 10.33.0.$((3 - i)) >/dev/null && { echo VMMS-NET-PING-OK; break; }; done
sleep 600"
  hv New-VM -Name $vm -MemoryStartupBytes 256MB -ProcessorCount 1 >/dev/null
  hv Set-VMFirmware -VMName $vm -KernelPath "$G/vmlinuz" -InitrdPath "$G/initramfs.cpio.gz" \
    -KernelCommandLine "console=ttyS0 quiet $(viridian_cmdline_arg "$guest")"
  check "Add-VMNetworkAdapter $vm on lab" bash -c "'$B/hv' Add-VMNetworkAdapter -VMName $vm -SwitchName lab -StaticMacAddress $mac >/dev/null"
done
check "Start-VM g1 returns Running" hv Start-VM g1
check "Start-VM g2 returns Running" hv Start-VM g2
check "Get-VM shows g1 Running" wait_field 5 g1 state Running
check "worker runs in its own session" bash -c "p=\$('$B/hv' Get-VM g1 -Json | sed -n 's/.*\"worker_pid\": \([0-9]*\).*/\1/p'); [ \"\$(ps -o sid= -p \$p | tr -d ' ')\" = \"\$p\" ]"
check "heartbeat OK on g1" wait_field 240 g1 heartbeat OK
check "heartbeat OK on g2" wait_field 120 g2 heartbeat OK
# Polled for a few seconds: clean-clone run 17 saw g1's worker answer no status request for a
# while (Get-VM: uptime 0) right after both guests came up in the test host.
check "uptime counts" wait_field 15 g1 uptime_ms '[0-9]{4,}'
check "Get-VM table shows Running with an uptime" bash -c "'$B/hv' Get-VM | grep -E '^g1 +Running +[0-9]+ +256 +00:0[0-9]:[0-9]{2}'"
ic_ok() { for _ in $(seq 15); do grep -qE 'Heartbeat +True +OK' <<<"$(hv Get-VMIntegrationService g1)" && return 0; sleep 1; done; return 1; }
check "Get-VMIntegrationService: Heartbeat OK" ic_ok
check "g1 and g2 ping each other through switch lab" bash -c "for i in \$(seq 120); do [ \$(cat '$t'/root/Virtual\ Machines/*/console.log | grep -c VMMS-NET-PING-OK) -ge 2 ] && exit 0; sleep 1; done; exit 1"
check "Get-VMNetworkAdapter: g1's adapter connected to lab with traffic" bash -c "'$B/hv' Get-VMNetworkAdapter -VMName g1 | tee -a $out/adapters.txt | grep -E 'lab +00155D330001 .*True +[1-9]'"
check "Set-VM refused while running (32788)" bash -c "'$B/hv' Set-VM g1 -ProcessorCount 2 2>&1 | grep -q 32788"
check "Remove-VM refused while running (32788)" bash -c "'$B/hv' Remove-VM g1 2>&1 | grep -q 32788"

p2=$(field g2 worker_pid)
kill -9 "$p2"
check "SIGKILL of g2's worker marks g2 Off" wait_field 10 g2 state Off
check "g1 stays Running" wait_field 2 g1 state Running
check "g2's event log names the signal" bash -c "'$B/hv' Get-VMEvent g2 | grep -q 'killed by signal 9'"

p1=$(field g1 worker_pid)
kill "$vmms"; wait "$vmms"
check "g1's worker survives vmms exiting" kill -0 "$p1"
start_vmms
check "after the restart g1 is Running" wait_field 5 g1 state Running
check "vmms re-attached to the same worker" [ "$(field g1 worker_pid)" = "$p1" ]
check "heartbeat still OK after the restart" wait_field 30 g1 heartbeat OK
check "event log: re-attached" bash -c "'$B/hv' Get-VMEvent g1 | grep -q 're-attached'"
# Save-VM and Start-VM: the same guest goes on (its uptime continues, its ICs answer).
up=$(field g1 uptime_ms)
check "Save-VM g1 -> Saved" bash -c "'$B/hv' Save-VM g1 && [ \"\$('$B/hv' Get-VM g1 -Json | sed -n 's/.*\"state\": \"\([A-Za-z]*\)\".*/\1/p')\" = Saved ]"
check "...its worker is gone" bash -c "for i in \$(seq 50); do kill -0 $p1 2>/dev/null && ! grep -q Z /proc/$p1/stat 2>/dev/null || exit 0; sleep 0.1; done; exit 1"
check "...the state file is in the VM's folder" bash -c "ls '$t'/root/Virtual\ Machines/*/*.vmrs"
check "Start-VM g1 restores it -> Running" hv Start-VM g1
p1=$(field g1 worker_pid)
check "...the saved state was consumed" bash -c "! ls '$t'/root/Virtual\ Machines/*/*.vmrs 2>/dev/null"
check "...heartbeat OK after the restore" wait_field 60 g1 heartbeat OK
# (a busy worker may miss Get-VM's 2 s status call: then its uptime reads 0 for that call)
check "...the guest's uptime went on from ${up} ms" bash -c "for i in \$(seq 20); do u=\$('$B/hv' Get-VM g1 -Json | sed -n 's/.*\"uptime_ms\": \([0-9]*\).*/\1/p'); [ \"\${u:-0}\" -gt $up ] && exit 0; sleep 1; done; echo \"uptime \$u ms\" >&2; exit 1"
check "...event log: saved and restored" bash -c "'$B/hv' Get-VMEvent g1 | grep -qi 'saved' && '$B/hv' Get-VMEvent g1 | grep -qi 'restor'"
check "Stop-VM (graceful) after the restart" hv Stop-VM g1
check "g1 is Off" wait_field 5 g1 state Off
check "the guest's init saw the host's power-off" bash -c "grep -q 'VIRIDIAN-MARK: host-poweroff' '$t'/root/Virtual\ Machines/*/console.log"
check "g1's worker is gone" bash -c "! kill -0 $p1 2>/dev/null || grep -q Z /proc/$p1/stat"
check "Start-VM again, then Stop-VM -TurnOff" bash -c "'$B/hv' Start-VM g2 && '$B/hv' Stop-VM g2 -TurnOff"
check "Remove-VM once Off" hv Remove-VM g1
copy_logs
[ "$fails" = 0 ] || { echo "--- vmms log"; cat "$out/vmms.log"; for f in "$out"/*.console.log; do echo "--- $f"; tail -20 "$f"; done; }
finish
