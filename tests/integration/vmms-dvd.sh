#!/usr/bin/env bash
# vmms's DVD drives without a guest: Add-/Get-/Set-/Remove-VMDvdDrive through `hv` (Hyper-V's
# columns, an empty drive, the next free location shared with the hard disks, one-line
# refusals: a missing ISO, a taken location, IDE, hot-add/remove on a running VM), the drives
# kept in the inventory across a vmms restart, the worker's command line (--dvd after the disks,
# '' for an empty drive) and Set-VMDvdDrive on a running VM sent to the worker as a live
# dvd-change at its LUN, and a disc the guest ejected shown and stored as None (a stand-in vmwp
# plays the worker, lib/stand-in-vmwp; storvsp-dvd.sh does it with a real guest).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/vmms-standin.bash vmms-dvd
touch "$t/a.iso" "$t/b.iso" "$t/vmlinuz"
hv New-VHD -Path "$t/d0.vhdx" -SizeBytes 16MB >/dev/null; hv New-VHD -Path "$t/d1.vhdx" -SizeBytes 16MB >/dev/null
start_vmms

hv New-VM -Name lab -VHDPath "$t/d0.vhdx" >/dev/null
hv Set-VMFirmware -VMName lab -KernelPath "$t/vmlinuz" >/dev/null
check "Add-VMDvdDrive with an ISO takes the next free location (1)" \
  bash -c "'$B/hv' Add-VMDvdDrive -VMName lab -Path '$t/a.iso' | grep -qE '^lab +SCSI +0 +1 +ISO +$t/a.iso\$'"
check "Add-VMDvdDrive without -Path: an empty drive at location 5" \
  bash -c "'$B/hv' Add-VMDvdDrive -VMName lab -ControllerLocation 5 | grep -qE '^lab +SCSI +0 +5 +None +\$'"
check "Add-VMHardDiskDrive skips the DVD's location (2)" \
  bash -c "'$B/hv' Add-VMHardDiskDrive -VMName lab -Path '$t/d1.vhdx' | grep -qE '^lab +SCSI +0 +2 '"
check "Get-VMDvdDrive: Hyper-V's columns, both drives" bash -c "'$B/hv' Get-VMDvdDrive -VMName lab > '$t/get' &&
  head -1 '$t/get' | grep -qE '^VMName +ControllerType +ControllerNumber +ControllerLocation +DvdMediaType +Path\$' && [ \$(grep -c '^lab ' '$t/get') = 2 ]"
check "Get-VMDvdDrive -Json" bash -c "'$B/hv' Get-VMDvdDrive lab -Json | grep -q '\"DvdMediaType\": \"ISO\"'"
check "a missing ISO is refused in one line" refused hv Add-VMDvdDrive -VMName lab -Path "$t/missing.iso"
check "... naming the file" says "missing.iso' does not exist"
check "a relative ISO path is refused" refused hv Add-VMDvdDrive -VMName lab -Path a.iso
check "a taken location is refused (32788)" refused hv Add-VMDvdDrive -VMName lab -ControllerLocation 0
check "... as a configuration conflict" says 32788
check "IDE is refused" refused hv Add-VMDvdDrive -VMName lab -ControllerType IDE
check "a second controller is refused" refused hv Add-VMDvdDrive -VMName lab -ControllerNumber 1
check "an out-of-range location is refused" refused hv Add-VMDvdDrive -VMName lab -ControllerLocation 64
check "Set-VMDvdDrive at a location with no DVD drive is refused" refused hv Set-VMDvdDrive -VMName lab -ControllerLocation 0 -Path "$t/b.iso"
check "Set-VMDvdDrive without -Path is refused" refused hv Set-VMDvdDrive -VMName lab -ControllerLocation 1
check "Set-VMDvdDrive of an Off VM" bash -c "'$B/hv' Set-VMDvdDrive -VMName lab -ControllerLocation 5 -Path '$t/b.iso' | grep -qE '^lab +SCSI +0 +5 +ISO +$t/b.iso\$'"
check "Set-VMDvdDrive -Path '\$null' ejects" bash -c "'$B/hv' Set-VMDvdDrive -VMName lab -ControllerLocation 5 -Path '\$null' | grep -qE '^lab +SCSI +0 +5 +None'"
check "event log: the changes" bash -c "'$B/hv' Get-VMEvent lab | grep -q 'DVD drive at SCSI 0:5: $t/b.iso -> (empty)'"
stop_vmms; start_vmms
check "the drives survive a vmms restart" bash -c "[ \$('$B/hv' Get-VMDvdDrive lab | grep -c '^lab ') = 2 ]"
check "Start-VM" hv Start-VM lab
check "Running" until_true bash -c "[ \"\$('$B/hv' Get-VM lab -Json | sed -n 's/.*\"state\": \"\([A-Za-z]*\)\".*/\1/p')\" = Running ]"
argv=$(cat "$t"/root/Virtual\ Machines/*/argv.json)
check "the worker gets the disks, then the DVD drives in location order ('' = empty)" \
  python3 -c "
import json, sys
a = json.loads(sys.argv[1]); pairs = [(a[i], a[i + 1]) for i in range(len(a) - 1) if a[i] in ('--disk', '--dvd')]
sys.exit(pairs != [('--disk', '$t/d0.vhdx'), ('--disk', '$t/d1.vhdx'), ('--dvd', '$t/a.iso'), ('--dvd', '')])" "$argv"
check "Add-VMDvdDrive on a running VM is refused (32788)" refused hv Add-VMDvdDrive -VMName lab
check "Remove-VMDvdDrive on a running VM is refused (32788)" refused hv Remove-VMDvdDrive -VMName lab -ControllerLocation 1
check "... as a configuration conflict" says 32788
check "Set-VMDvdDrive on a running VM: live" bash -c "'$B/hv' Set-VMDvdDrive -VMName lab -ControllerLocation 5 -Path '$t/a.iso' | grep -q ' ISO '"
check "... sent to the worker as dvd-change at its LUN (2 disks + drive 1 = 3)" \
  grep -qF "{\"lun\": 3, \"op\": \"dvd-change\", \"path\": \"$t/a.iso\"}" "$t"/root/Virtual\ Machines/*/requests
check "Set-VMDvdDrive -Path '' on a running VM: eject (path null)" bash -c "'$B/hv' Set-VMDvdDrive -VMName lab -ControllerLocation 1 -Path '' >/dev/null &&
  grep -qF '{\"lun\": 2, \"op\": \"dvd-change\", \"path\": null}' '$t'/root/Virtual\ Machines/*/requests"
touch "$(dirname "$(ls "$t"/root/Virtual\ Machines/*/argv.json)")/guest-eject-1"
check "a disc the guest ejected shows as None" bash -c "'$B/hv' Get-VMDvdDrive lab | grep -qE '^lab +SCSI +0 +5 +None'"
check "... and stays so in the inventory (event logged)" bash -c "'$B/hv' Get-VMEvent lab | grep -q 'the guest ejected the disc $t/a.iso'"
check "Set-VMDvdDrive puts a disc back" bash -c "'$B/hv' Set-VMDvdDrive -VMName lab -ControllerLocation 5 -Path '$t/a.iso' | grep -q ' ISO '"
check "the inventory follows" bash -c "'$B/hv' Get-VMDvdDrive lab | grep -qE '^lab +SCSI +0 +1 +None' && '$B/hv' Get-VMDvdDrive lab | grep -qE '^lab +SCSI +0 +5 +ISO +$t/a.iso'"
check "Stop-VM -TurnOff" hv Stop-VM lab -TurnOff
check "Remove-VMDvdDrive" hv Remove-VMDvdDrive -VMName lab -ControllerLocation 1
check "Remove-VMDvdDrive of a location with none is refused" refused hv Remove-VMDvdDrive -VMName lab -ControllerLocation 1
check "one drive left" bash -c "[ \$('$B/hv' Get-VMDvdDrive lab | grep -c '^lab ') = 1 ]"
check "Get-Help lists the cmdlets" bash -c "'$B/hv' Get-Help | grep -c 'VMDvdDrive' | grep -qx 4"
check "Remove-VM takes the drives with it" bash -c "'$B/hv' Remove-VM lab >/dev/null && sqlite3 '$t/root/vmms.db' 'SELECT count(*) FROM dvd_drives' 2>/dev/null | grep -qx 0 || ! command -v sqlite3 >/dev/null"
[ "$fails" = 0 ] || tail -20 "$t/vmms.log"
echo "$fails failed"
[ "$fails" = 0 ]
