#!/usr/bin/env bash
# vmms benchmark, directly on this machine (no guest needed):
#  1. New-VM x100 into a fresh inventory (hv end to end).
#  2. Get-VM with 100 VMs: the API's {"op":"list"} round trip on one connection (200 runs),
#     and `hv Get-VM -Json` end to end, process start included (50 runs).
#  3. Start-VM latency with a tiny bzImage (bench/boot/tiny-bzimage.py --halt): from vmms
#     receiving the request to the worker's first guest exit (the worker's own trace), and
#     `hv Start-VM` wall time to Running (the control socket answers); then Stop-VM -TurnOff.
# Usage: bench/vmms/run.sh [STARTS]   (VIRIDIAN_BUILD: the build to measure, default build)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${VIRIDIAN_BUILD:-build}
starts=${1:-10}
t=$(mktemp -d /tmp/vmms-bench.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock
VIRIDIAN_VMMS_TRACE=1 "$B/vmms" --foreground --root "$t/root" 2>"$t/vmms.log" & vmms=$!
trap 'kill $vmms 2>/dev/null; wait 2>/dev/null; rm -rf "$t"' EXIT
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
ms() { echo $(( $(date +%s%N) / 1000 )); } # microseconds
stats() { sort -n | awk '{a[NR]=$1} END {printf "median %.2f ms, p90 %.2f ms, min %.2f ms (%d runs)\n", a[int((NR+1)/2)]/1000, a[int(NR*0.9)]/1000, a[1]/1000, NR}'; }

s=$(ms)
for i in $(seq -w 100); do "$B/hv" New-VM -Name "vm-$i" -MemoryStartupBytes 512MB >/dev/null; done
e=$(ms)
printf 'New-VM x100 (hv end to end): %.2f ms each\n' "$(echo "($e - $s) / 100000" | bc -l)"

python3 - "$VIRIDIAN_SOCKET" <<'PY' | stats | sed 's/^/Get-VM, 100 VMs, API round trip: /'
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rb")
for i in range(200):
    t = time.perf_counter_ns(); s.sendall(b'{"op":"list"}\n'); line = f.readline()
    assert line.count(b'"name"') == 100, line[:200]
    print((time.perf_counter_ns() - t) // 1000)
PY
for _ in $(seq 50); do s=$(ms); "$B/hv" Get-VM -Json >/dev/null; echo $(( $(ms) - s )); done | stats | sed 's/^/Get-VM, 100 VMs, hv -Json end to end: /'

python3 bench/boot/tiny-bzimage.py "$t/off.bz"        # powers off at its first instruction
python3 bench/boot/tiny-bzimage.py --halt "$t/halt.bz" # stays up (no exits): for Start-VM -> Running
"$B/hv" New-VM -Name start-bench -MemoryStartupBytes 512MB >/dev/null
"$B/hv" Set-VMFirmware start-bench -KernelPath "$t/off.bz"
log=$("$B/hv" Get-VM start-bench -Json | sed -n 's/.*"path": "\(.*\)".*/\1/p')/worker.log
for _ in $(seq "$starts"); do
  "$B/hv" Start-VM start-bench >/dev/null 2>&1 || true # it powers off at once
  for _ in $(seq 100); do grep -q '"state": "Off"' <<<"$("$B/hv" Get-VM start-bench -Json)" && break; sleep 0.05; done
done
sed -n 's/.*first guest exit \([0-9.]*\) ms.*/\1/p' "$log" | awk '{printf "%d\n", $1 * 1000}' | stats | sed 's/^/Start-VM request -> first guest exit: /'
"$B/hv" Set-VMFirmware start-bench -KernelPath "$t/halt.bz"
: >"$t/wall"
for _ in $(seq "$starts"); do
  s=$(ms); "$B/hv" Start-VM start-bench; echo $(( $(ms) - s )) >>"$t/wall"
  "$B/hv" Stop-VM start-bench -TurnOff
done
stats <"$t/wall" | sed 's/^/hv Start-VM until Running (control socket answers): /'
