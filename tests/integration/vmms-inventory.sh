#!/usr/bin/env bash
# vmms without a guest: New-VM / Get-VM / Set-VM / Set-VMFirmware / Remove-VM through `hv`,
# drives, integration services, Get/Set-VMHost and Connect-VM,
# bad input refused with nothing half-created, the socket's mode, a refused non-root peer,
# and a vmms restart that keeps the inventory.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/skip.bash
B=${VIRIDIAN_BUILD:-build}
[ -x "$B/vmms" ] && [ -x "$B/hv" ] || { echo "build $B/vmms and $B/hv first (make)"; exit 1; }
t=$(mktemp -d /tmp/vmms-inv.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock VIRIDIAN_BOOT_ID=boot-1  # the host's boot id, as vmms sees it
pid=""
# Workers run in their own sessions and outlive vmms by design: end them too.
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; pkill -f -- "--control $t/" 2>/dev/null; wait 2>/dev/null; rm -rf "$t"' EXIT
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
refused() { ! "$@" >"$t/out" 2>"$t/err" && [ "$(wc -l <"$t/err")" = 1 ]; } # nonzero, one line
hv() { "$B/hv" "$@"; }
start_vmms() {
  "$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
}
start_vmms

check "VM cmdlets without vmms fail with one line" bash -c "! VIRIDIAN_SOCKET=$t/none.sock '$B/hv' Get-VM 2>&1 | grep -c . | grep -qv '^1$'"
check "socket is mode 0660" [ "$(stat -c %a "$VIRIDIAN_SOCKET")" = 660 ]
check "Hyper-V folders under the root" test -d "$t/root/Virtual Machines" -a -d "$t/root/Virtual Hard Disks" -a -d "$t/root/Snapshots"
check "New-VM with a new VHDX" hv New-VM -Name web -MemoryStartupBytes 1GB -ProcessorCount 2 -NewVHDPath web.vhdx -NewVHDSizeBytes 2GB
check "the new disk is a 2 GiB VHDX" bash -c "'$B/hv' Get-VHD '$t/root/Virtual Hard Disks/web.vhdx' -Json | grep -q 2147483648"
hv New-VHD -Path "$t/db.vhdx" -SizeBytes 1GB >/dev/null
check "New-VM with an existing disk, case-insensitive parameters" hv new-vm -name db -vhdpath "$t/db.vhdx" -generation 2
check "New-VM in its own -Path" hv New-VM -Name other -Path "$t"
check "-Path holds Virtual Machines/<GUID>" bash -c "ls '$t/other/Virtual Machines' | grep -qE '^[0-9a-f-]{36}$'"
nvm=$(ls "$t/root/Virtual Machines" | wc -l)
check "duplicate name refused (other case)" refused hv New-VM -Name WEB
check "invalid size refused" refused hv New-VM -Name x -MemoryStartupBytes 10XB
check "memory not in 2 MB units refused" refused hv New-VM -Name x -MemoryStartupBytes 1000001
check "missing disk refused" refused hv New-VM -Name x -VHDPath "$t/missing.vhdx"
check "unknown parameter refused" refused hv New-VM -Name x -Frobnicate 1
check "unknown cmdlet refused" refused hv Frob-VM
check "bad processor count refused" refused hv New-VM -Name x -ProcessorCount 0
check "existing -NewVHDPath refused" refused hv New-VM -Name x -NewVHDPath web.vhdx -NewVHDSizeBytes 1GB
check "nothing half-created" [ "$(ls "$t/root/Virtual Machines" | wc -l)" = "$nvm" ]
check "Get-VM lists three" [ "$(hv Get-VM -Json | grep -c '"name"')" = 3 ]
check "Get-VM table has Hyper-V's columns" bash -c "'$B/hv' Get-VM | head -1 | grep -q 'Name.*State.*CPUUsage.*MemoryAssigned.*Uptime.*Status.*Version'"
check "Get-VM wildcard" bash -c "[ \"\$('$B/hv' Get-VM -Name 'W*' -Json | grep -c '\"name\"')\" = 1 ]"
check "Get-VM unknown name fails" refused hv Get-VM nobody
id=$(hv Get-VM web -Json | sed -n 's/.*"id": "\([0-9a-f-]*\)".*/\1/p')
check "VM named by GUID" bash -c "'$B/hv' Get-VM '$id' -Json | grep -q '\"name\": \"web\"'"
check "Set-VM" hv Set-VM web -ProcessorCount 4 -MemoryStartupBytes 2GB -AutomaticStartAction Start -Notes "front end"
check "Set-VM took" bash -c "'$B/hv' Get-VM web -Json | grep -q '\"cpus\": 4' && '$B/hv' Get-VM web -Json | grep -q '\"notes\": \"front end\"'"
check "Set-VM bad action refused" refused hv Set-VM web -AutomaticStartAction Sometimes
check "Set-VMFirmware missing kernel refused" refused hv Set-VMFirmware web -KernelPath "$t/no-kernel"
touch "$t/vmlinuz"
check "Set-VMFirmware" hv Set-VMFirmware -VMName web -KernelPath "$t/vmlinuz" -KernelCommandLine "console=ttyS0 quiet"
check "Start-VM without a kernel refused" refused hv Start-VM db
check "Start-VM of an unbootable kernel fails with the worker's reason" bash -c "'$B/hv' Start-VM web 2>&1 | grep -q 'failed with status 1'"
check "...and leaves the VM Off" bash -c "'$B/hv' Get-VM web -Json | grep -q '\"state\": \"Off\"'"
check "Get-VMEvent shows the changes" bash -c "'$B/hv' Get-VMEvent web | grep -q 'configuration changed'"

# Hard disk drives, integration services, the host's folders (no worker needed).
hv New-VHD -Path "$t/data.vhdx" -SizeBytes 1GB >/dev/null
check "Add-VMHardDiskDrive takes the next free LUN" bash -c "'$B/hv' Add-VMHardDiskDrive -VMName db -Path '$t/data.vhdx' | grep -q '^db  *SCSI  *0  *1  *$t/data.vhdx'"
check "...a duplicate path refused (32788)" bash -c "'$B/hv' add-vmharddiskdrive db -path '$t/data.vhdx' 2>&1 | grep -q 32788"
check "...an occupied location refused in one line" refused hv Add-VMHardDiskDrive db -Path "$t/root/Virtual Hard Disks/web.vhdx" -ControllerLocation 0
check "...a missing file refused" refused hv Add-VMHardDiskDrive db -Path "$t/missing.vhdx"
check "Get-VMHardDiskDrive lists both" [ "$(hv Get-VMHardDiskDrive db -Json | grep -c '"Path"')" = 2 ]
check "Remove-VMHardDiskDrive by location keeps the file" bash -c "'$B/hv' Remove-VMHardDiskDrive db -ControllerLocation 1 && test -f '$t/data.vhdx' && [ \$('$B/hv' Get-VMHardDiskDrive db -Json | grep -c '\"Path\"') = 1 ]"
check "Disable-VMIntegrationService: Enabled False" bash -c "'$B/hv' Disable-VMIntegrationService -VMName web -Name 'Key-Value Pair Exchange' && '$B/hv' Get-VMIntegrationService web | grep 'Key-Value Pair Exchange' | grep -q False"
check "Enable-VMIntegrationService: Enabled True" bash -c "'$B/hv' enable-vmintegrationservice web -name 'key-value pair exchange' && '$B/hv' Get-VMIntegrationService web | grep 'Key-Value Pair Exchange' | grep -q True"
check "...an unknown service refused" refused hv Enable-VMIntegrationService web -Name Frob
check "Get-VMHost: the root by default" bash -c "'$B/hv' Get-VMHost | grep -q '^VirtualMachinePath  *: $t/root\$'"
mkdir -p "$t/hostvms" "$t/hostdisks"
check "Set-VMHost" hv Set-VMHost -VirtualMachinePath "$t/hostvms" -VirtualHardDiskPath "$t/hostdisks"
check "...New-VM uses the host's folders" bash -c "'$B/hv' New-VM -Name hostdef -NewVHDPath h.vhdx -NewVHDSizeBytes 1GB >/dev/null && test -f '$t/hostdisks/h.vhdx' && ls '$t/hostvms/Virtual Machines' | grep -qE '^[0-9a-f-]{36}\$'"
check "...a missing folder refused" refused hv Set-VMHost -VirtualHardDiskPath "$t/nowhere"
hv Remove-VM hostdef >/dev/null; hv Set-VMHost -VirtualMachinePath "$t/root" -VirtualHardDiskPath "$t/root/Virtual Hard Disks" >/dev/null
check "Connect-VM of an Off VM prints its console log and returns" hv Connect-VM web

# Worker lifecycle without a guest: a tiny bzImage that halts (bench/boot/tiny-bzimage.py).
python3 bench/boot/tiny-bzimage.py --halt "$t/halt.bz"
wpid() { hv Get-VM "$1" -Json | sed -n 's/.*"worker_pid": \([0-9]*\).*/\1/p'; }
state() { hv Get-VM "$1" -Json | sed -n 's/.*"state": "\([A-Za-z]*\)".*/\1/p'; }
hv New-VM -Name tiny -MemoryStartupBytes 64MB >/dev/null
hv New-VM -Name tiny2 -MemoryStartupBytes 64MB >/dev/null
hv Set-VMFirmware tiny -KernelPath "$t/halt.bz"
hv Set-VMFirmware tiny2 -KernelPath "$t/halt.bz"
if ! kvm_usable; then
  skip_part "worker lifecycle (no usable /dev/kvm here)"
else
hv Disable-VMIntegrationService tiny -Name "Key-Value Pair Exchange"
check "Start-VM (tiny kernel) -> Running" hv Start-VM tiny
check "a disabled integration service: the worker reports it disabled" bash -c "'$B/hv' Get-VMIntegrationService tiny -Json | grep -A3 '\"Key-Value Pair Exchange\"' | grep -q '\"State\": \"disabled\"' && '$B/hv' Get-VMIntegrationService tiny -Json | grep -A3 '\"Heartbeat\"' | grep -q '\"State\": \"closed\"'"
check "Start-VM of a running VM is no error" hv Start-VM tiny
check "Start-VM a second VM" hv Start-VM tiny2
p1=$(wpid tiny)
check "worker in its own session" [ "$(ps -o sid= -p "$p1" | tr -d ' ')" = "$p1" ]
check "console and worker log in the VM folder" bash -c "d=\$('$B/hv' Get-VM tiny -Json | sed -n 's/.*\"path\": \"\\(.*\\)\".*/\\1/p'); [ -S \"\$d/worker.sock\" ] && [ -f \"\$d/console.log\" ]"
d2=$(hv Get-VM tiny2 -Json | sed -n 's/.*"path": "\(.*\)".*/\1/p')
echo connect-marker >>"$d2/console.log"
hv Connect-VM tiny2 >"$t/con" 2>/dev/null & cpid=$!
check "Set-VM refused while running with 32788" bash -c "'$B/hv' Set-VM tiny -ProcessorCount 2 2>&1 | grep -q 32788"
check "console input reaches the worker's COM1 (vmms console-input)" python3 -c '
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(os.environ["VIRIDIAN_SOCKET"])
s.sendall(b"{\"op\":\"console-input\",\"vm\":\"tiny\",\"data\":\"YWJj\"}\n")
r = json.loads(s.makefile().readline()); sys.exit(0 if r.get("ok") and r.get("accepted") == 3 else 1)'
check "Connect-VM forwards piped input without complaint" bash -c "printf x | timeout 1 '$B/hv' Connect-VM tiny >/dev/null 2>'$t/cerr'; ! grep -q . '$t/cerr'"
check "Add-VMHardDiskDrive to a running VM refused with 32788" bash -c "'$B/hv' Add-VMHardDiskDrive tiny -Path '$t/data.vhdx' 2>&1 | grep -q 32788"
check "graceful Stop-VM without a guest IC refused in one line" refused hv Stop-VM tiny
check "...and the VM still Running" [ "$(state tiny)" = Running ]
check "Restart-VM gives a new worker" bash -c "'$B/hv' Restart-VM tiny && [ \"\$('$B/hv' Get-VM tiny -Json | sed -n 's/.*\"worker_pid\": \\([0-9]*\\).*/\\1/p')\" != $p1 ]"
# Suspend-VM / Resume-VM need a worker with pause ({"op":"pause"}); older workers say "unknown op".
if hv Suspend-VM tiny 2>"$t/err"; then
  check "Suspend-VM -> Paused" [ "$(state tiny)" = Paused ]
  check "graceful Stop-VM of a paused VM refused (32788)" bash -c "'$B/hv' Stop-VM tiny 2>&1 | grep -q 32788"
  check "Resume-VM -> Running" bash -c "'$B/hv' Resume-VM tiny && [ \"\$('$B/hv' Get-VM tiny -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Running ]"
elif grep -q "unknown op pause" "$t/err"; then
  skip_part "Suspend-VM/Resume-VM (this worker cannot pause)"
  check "...and the VM stays Running" [ "$(state tiny)" = Running ]
else
  check "Suspend-VM" false; cat "$t/err"
fi
check "Resume-VM of a running VM refused (32788)" bash -c "'$B/hv' Resume-VM tiny 2>&1 | grep -q 32788"
kill -9 "$(wpid tiny2)"
for _ in $(seq 20); do [ "$(state tiny2)" = Off ] && break; sleep 0.2; done
check "SIGKILL of one worker: that VM Off" [ "$(state tiny2)" = Off ]
for _ in $(seq 30); do kill -0 $cpid 2>/dev/null || break; sleep 0.1; done
check "Connect-VM showed the console and ended when the VM stopped" bash -c "! kill -0 $cpid 2>/dev/null && grep -q connect-marker '$t/con'"
wait $cpid 2>/dev/null
check "...the other Running" [ "$(state tiny)" = Running ]
check "...the reason in its event log" bash -c "'$B/hv' Get-VMEvent tiny2 | grep -q 'killed by signal 9'"
p1=$(wpid tiny)
kill $pid; wait $pid; pid=""
check "the worker outlives vmms" kill -0 "$p1"
start_vmms
check "re-attached after the restart" bash -c "[ \"\$('$B/hv' Get-VM tiny -Json | sed -n 's/.*\"worker_pid\": \\([0-9]*\\).*/\\1/p')\" = $p1 ]"
check "Stop-VM -TurnOff after the restart" hv Stop-VM tiny -TurnOff
check "...Off" [ "$(state tiny)" = Off ]
# vmms must be gone before the worker dies, or it would see the death itself.
check "a worker killed while vmms is down: started" hv Start-VM tiny
p=$(wpid tiny)
kill $pid; wait $pid 2>/dev/null; pid=""
check "...and killed while vmms is down" kill -9 "$p"
# SIGKILL is asynchronous: wait until the worker has exited (or is a zombie nobody reaps)
for _ in $(seq 100); do [ -e /proc/$p ] && ! grep -q '^State:.Z' /proc/$p/status 2>/dev/null || break; sleep 0.05; done
start_vmms
check "...is Off after the restart" [ "$(state tiny)" = Off ]
check "...with the reason" bash -c "'$B/hv' Get-VMEvent tiny | tail -1 | grep -q 'gone when vmms started'"

# A host restart (new boot id): automatic start actions apply.
hv Set-VM tiny -AutomaticStartAction Start >/dev/null
hv Set-VM other -AutomaticStartAction Nothing >/dev/null
hv Start-VM tiny2 >/dev/null  # StartIfRunning (the default), running at the "restart"
p2=$(wpid tiny2)
kill $pid; wait $pid; pid=""
kill -9 "$p2"
export VIRIDIAN_BOOT_ID=boot-2
start_vmms
for _ in $(seq 50); do [ "$(state tiny)" = Running ] && [ "$(state tiny2)" = Running ] && [ "$(state web)" = Off ] && break; sleep 0.2; done
check "host restart: AutomaticStartAction Start starts the VM" [ "$(state tiny)" = Running ]
check "host restart: StartIfRunning starts the VM that was running" [ "$(state tiny2)" = Running ]
check "host restart: Nothing leaves the VM Off" [ "$(state other)" = Off ]
check "host restart: a VM that cannot boot stays Off with the reason" bash -c "'$B/hv' Get-VMEvent web | grep -q 'automatic start' && [ \"\$('$B/hv' Get-VM web -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Off ]"
hv Stop-VM tiny -TurnOff; hv Stop-VM tiny2 -TurnOff
kill $pid; wait $pid; pid=""
start_vmms
check "same boot id: no automatic start" bash -c "sleep 1; [ \"\$('$B/hv' Get-VM tiny -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Off ]"
fi

# restart vmms: the inventory stays
kill $pid; wait $pid; pid=""
start_vmms
check "inventory survives a vmms restart" bash -c "'$B/hv' Get-VM web -Json | grep -q '\"cpus\": 4' && [ \"\$('$B/hv' Get-VM -Json | grep -c '\"name\"')\" = 5 ]"
check "kernel survives a vmms restart" bash -c "'$B/hv' Get-VM web -Json | grep -q 'console=ttyS0 quiet'"
check "a second vmms on the same root refused" bash -c "'$B/vmms' --foreground --root '$t/root' --socket '$t/other.sock' 2>&1 | grep -q 'another vmms manages this root'"
check "a second vmms on the same socket refused" bash -c "! '$B/vmms' --foreground --root '$t/root2' 2>/dev/null"
if id nobody >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chmod 0777 "$t" "$VIRIDIAN_SOCKET"
  check "another uid is refused (SO_PEERCRED)" bash -c "setpriv --reuid=nobody --regid=nogroup --clear-groups '$B/hv' Get-VM 2>&1 | grep -q 'access denied'"
  chmod 0660 "$VIRIDIAN_SOCKET"
fi
check "Remove-VM" hv Remove-VM db
check "Remove-VM keeps the disk" test -f "$t/db.vhdx"
check "removed VM is gone" refused hv Get-VM db
check "VHD cmdlets work without vmms" bash -c "VIRIDIAN_SOCKET=$t/none.sock '$B/hv' Get-VHD '$t/db.vhdx' >/dev/null"
[ "$fails" = 0 ] || { echo "--- vmms log"; cat "$t/vmms.log"; }
exit $((fails > 0))
