#!/usr/bin/env bash
# Set-VMProcessor -Maximum with the stock guest (in the test host, on its cgroup v2 hierarchy):
# a 1-processor guest that burns its CPU without pause; the host measures its worker's CPU time
# over 10 s from /proc (every thread of the process): capped at 25 % from its start it uses at
# most 27 % of a processor, raised live to 50 % at most 52 %, with the cap lifted clearly more;
# Measure-VM has counted its processor time and memory meanwhile.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 400 "$0" "$@"
t=$(mktemp -d /tmp/vmms-cpug.XXXXXX)  # sockets cannot live on the 9p output folder
export VIRIDIAN_SOCKET=$t/vmms.sock
vmms=""
hv() { "$B/hv" "$@"; }
cleanup() { [ -n "$vmms" ] && kill "$vmms" 2>/dev/null; pkill -f "vmwp.*$t" 2>/dev/null; }
trap cleanup EXIT
# The test host boots with no cgroup mounted; a systemd host would have cgroup2 here.
grep -q " /sys/fs/cgroup cgroup2 " /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup || exit 1
"$B/vmms" --foreground --root "$t/root" 2>>"$out/vmms.log" & vmms=$!
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
con() { cat "$t"/root/Virtual\ Machines/*/console.log 2>/dev/null; }
# busy PERCENT-OF-A-PROCESSOR over 10 s of the worker (utime + stime of all its threads)
busy() {
  local p=$1 a b
  a=$(awk '{ print $14 + $15 }' "/proc/$p/stat"); sleep 10; b=$(awk '{ print $14 + $15 }' "/proc/$p/stat")
  echo $(( (b - a) * 100 / $(getconf CLK_TCK) / 10 ))
}

hv New-VM -Name burn -MemoryStartupBytes 256MB -ProcessorCount 1 >/dev/null
hv Set-VMFirmware -VMName burn -KernelPath "$G/vmlinuz" -InitrdPath "$G/initramfs.cpio.gz" \
  -KernelCommandLine "console=ttyS0 quiet $(viridian_cmdline_arg 'echo BURNING; while :; do :; done')" >/dev/null
check "Set-VMProcessor -Maximum 25" hv Set-VMProcessor burn -Maximum 25
check "Enable-VMResourceMetering" hv Enable-VMResourceMetering burn
check "Start-VM" hv Start-VM burn
for _ in $(seq 300); do con | grep -a BURNING >/dev/null && break; sleep 1; done
check "the guest burns its processor" bash -c "cat '$t'/root/Virtual\ Machines/*/console.log | grep -aq BURNING"
if [ "$fails" != 0 ]; then con >"$out/guest-console.log"; exit_if_no_init "$out/guest-console.log"; finish; fi
w=$(hv Get-VM burn -Json | sed -n 's/.*"worker_pid": \([0-9]*\).*/\1/p')
check "its worker is in the VM's cgroup with cpu.max 25000 100000" \
  bash -c "d=/sys/fs/cgroup\$(cut -d: -f3 /proc/$w/cgroup); [ \"\$(cat \$d/cpu.max)\" = '25000 100000' ]"
# capped MAX LOW HIGH: at -Maximum MAX the worker uses LOW..HIGH % of a processor over 10 s
capped() {
  sleep 2
  local u; u=$(busy "$w")
  echo "FIGURES -Maximum $1: the worker used $u % of a processor"
  check "-Maximum $1: at most $3 % of a processor ($u)" [ "$u" -le "$3" ]
  check "...and at least $2 % ($u)" [ "$u" -ge "$2" ]
}
capped 25 15 27
check "Set-VMProcessor -Maximum 50 of the running VM" hv Set-VMProcessor burn -Maximum 50
capped 50 35 52
check "Set-VMProcessor -Maximum 100 lifts the cap" hv Set-VMProcessor burn -Maximum 100
capped 100 60 110 # the vCPU and the worker's other threads
hv Measure-VM burn -Json >"$out/measure.json"
cat "$out/measure.json"
meter() { /usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$out/measure.json" "$1"; }
check "Measure-VM: the processor time it used (AvgCPUPercent $(meter AvgCPUPercent) > 10)" [ "$(meter AvgCPUPercent)" -gt 10 ]
check "...its 256 MB (MaxRAM $(meter MaxRAM))" [ "$(meter MaxRAM)" = 256 ]
check "Stop-VM -TurnOff" hv Stop-VM burn -TurnOff
for _ in $(seq 50); do kill -0 "$w" 2>/dev/null || break; sleep 0.2; done
id=$(hv Get-VM burn -Json | sed -n 's/.*"id": "\([0-9a-f-]*\)".*/\1/p' | head -1)
check "the VM's cgroup is gone with its worker" bash -c "for i in \$(seq 50); do [ -d /sys/fs/cgroup/viridian/$id ] || exit 0; sleep 0.1; done; exit 1"
[ "$fails" = 0 ] || { con | tail -20; tail -20 "$out/vmms.log"; }
finish
