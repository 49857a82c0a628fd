#!/usr/bin/env bash
# Resource metering through vmms and hv, without a guest: Enable-VMResourceMetering,
# Measure-VM, Reset-VMResourceMetering, Disable-VMResourceMetering. The stand-in worker
# (lib/stand-in-vmwp) reports the storage and network counters the test writes; vmms counts
# their growth from the moment metering is enabled, across a worker restart (a new worker's
# counters start at zero) and a vmms restart (no double count), and afresh after a reset.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/vmms-standin.bash vmms-meter
# counters READ_MIB WRITTEN_MIB IN_MIB OUT_MIB: what the worker's status says from now on
counters() {
  printf '{"storage":{"read_bytes":%d,"write_bytes":%d,"normalized_ops":%d},"nics":[{"rx_bytes":%d,"tx_bytes":0},{"rx_bytes":0,"tx_bytes":%d}]}\n' \
    $(($1 << 20)) $(($2 << 20)) $(($1 * 128)) $(($3 << 20)) $(($4 << 20)) >"$(folder)/counters.json"
}
# usage FIELD...: Measure-VM -Json's fields, space-separated
usage() { hv Measure-VM m -Json | /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print(' '.join(str(d[k]) for k in sys.argv[1:]))" "$@"; }
io() { usage AggregatedDiskDataRead AggregatedDiskDataWritten NetworkInbound NetworkOutbound; }
touch "$t/vmlinuz"
hv New-VHD -Path "$t/d.vhdx" -SizeBytes 16MB >/dev/null
start_vmms
hv New-VM -Name m -MemoryStartupBytes 1024MB -VHDPath "$t/d.vhdx" >/dev/null
hv Set-VMFirmware -VMName m -KernelPath "$t/vmlinuz" >/dev/null

check "Measure-VM before metering is refused in one line" refused hv Measure-VM m
check "...saying to enable it" says "Enable-VMResourceMetering"
check "Enable-VMResourceMetering (VM Off)" hv Enable-VMResourceMetering m
check "Measure-VM: nothing used yet" [ "$(io)" = "0 0 0 0" ]
check "Start-VM" hv Start-VM m
until_true [ -f "$(folder)/stand-in.pid" ]
counters 10 4 3 1
check "the running worker's reads, writes and traffic (MB): 10 4 3 1" [ "$(io)" = "10 4 3 1" ]
check "...memory 1024 MB at most and at least" [ "$(usage MaxRAM MinRAM)" = "1024 1024" ]
check "...the Hyper-V table" bash -c "'$B/hv' Measure-VM m | head -1 | grep -qE '^VMName +AvgCPU\(MHz\) AvgRAM\(M\) MaxRAM\(M\) MinRAM\(M\) TotalDisk\(M\) NetworkInbound\(M\) NetworkOutbound\(M\)\$'"
counters 30 4 3 1
check "counted on: 30 4 3 1" [ "$(io)" = "30 4 3 1" ]
check "Reset-VMResourceMetering" hv Reset-VMResourceMetering m
check "...counts afresh: 0" [ "$(io)" = "0 0 0 0" ]
counters 35 6 3 2
check "...from the reset on: 5 2 0 1" [ "$(io)" = "5 2 0 1" ]
hv Stop-VM m -TurnOff >/dev/null
until_true [ "$(state m)" = Off ]
check "Off: the counts stay" [ "$(io)" = "5 2 0 1" ]
rm -f "$(folder)/stand-in.pid"
hv Start-VM m >/dev/null
until_true [ -f "$(folder)/stand-in.pid" ]
counters 2 0 1 0
check "a new worker counts from zero: 7 2 1 1" [ "$(io)" = "7 2 1 1" ]
stop_vmms; start_vmms
counters 3 0 1 0
check "after a vmms restart, no double count: 8 2 1 1" [ "$(io)" = "8 2 1 1" ]
check "Enable-VMResourceMetering again: it goes on counting" bash -c "'$B/hv' Enable-VMResourceMetering m && [ \"\$('$B/hv' Measure-VM m -Json | grep -o '\"AggregatedDiskDataRead\": [0-9]*')\" = '\"AggregatedDiskDataRead\": 8' ]"
check "the VM's disk counts in TotalDisk (MB)" [ "$(usage TotalDisk)" = "$(( $(stat -c %s "$t/d.vhdx") >> 20 ))" ]
check "Disable-VMResourceMetering" hv Disable-VMResourceMetering m
check "...Measure-VM refused again" refused hv Measure-VM m
check "...enabled afresh: from zero" bash -c "'$B/hv' Enable-VMResourceMetering m && [ \"\$('$B/hv' Measure-VM m -Json | grep -o '\"AggregatedDiskDataRead\": [0-9]*')\" = '\"AggregatedDiskDataRead\": 0' ]"
check "event log: enabled, reset, disabled" bash -c "'$B/hv' Get-VMEvent m > '$t/ev' && grep -q 'resource metering enabled' '$t/ev' && grep -q 'resource metering reset' '$t/ev' && grep -q 'resource metering disabled' '$t/ev'"
hv Stop-VM m -TurnOff >/dev/null
check "vmms still serves" hv Get-VM m
[ "$fails" = 0 ] || { echo "--- vmms log"; tail -20 "$t/vmms.log"; }
exit $((fails > 0))
