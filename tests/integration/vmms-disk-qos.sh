#!/usr/bin/env bash
# Set-VMHardDiskDrive's storage QoS through vmms and hv, without a guest: -MaximumIOPS and
# -MaximumBandwidth stored by drive location (kept across a vmms restart and a storage-path
# change, gone with the drive), shown by Get-VMHardDiskDrive -Json, passed to the worker as
# --disk PATH,iops=N,bw=N, changed live on a running VM through the worker's disk-limits at the
# drive's worker LUN (a refusal there changes nothing), one-line refusals for bad values and
# missing drives. A stand-in vmwp plays the worker (lib/stand-in-vmwp: it refuses disk-limits
# while a file refuse-limits is in the VM's folder) (tests/unit/web/test_route.c: the web route);
# storvsp-qos.sh measures the limits in a real guest.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/vmms-standin.bash vmms-qos
# drive_field LUN FIELD: Get-VMHardDiskDrive -Json's FIELD of the drive at LUN
drive_field() { hv Get-VMHardDiskDrive lab -Json | /usr/bin/python3 -c "import json,sys; print([d['$2'] for d in json.load(sys.stdin) if d['ControllerLocation'] == $1][0])"; }
touch "$t/vmlinuz" "$t/a.iso"
for d in d0 d1 d2; do hv New-VHD -Path "$t/$d.vhdx" -SizeBytes 16MB >/dev/null; done
start_vmms

hv New-VM -Name lab -VHDPath "$t/d0.vhdx" >/dev/null
hv Set-VMFirmware -VMName lab -KernelPath "$t/vmlinuz" >/dev/null
hv Add-VMDvdDrive -VMName lab -Path "$t/a.iso" >/dev/null          # location 1: the disks' worker LUNs skip it
hv Add-VMHardDiskDrive -VMName lab -Path "$t/d1.vhdx" >/dev/null   # location 2, the worker's LUN 1
check "a new drive has no limits" [ "$(drive_field 2 MaximumIOPS)/$(drive_field 2 MaximumBandwidth)" = 0/0 ]
check "Set-VMHardDiskDrive -MaximumIOPS 500 -MaximumBandwidth 100MB of an Off VM" \
  hv Set-VMHardDiskDrive -VMName lab -ControllerLocation 2 -MaximumIOPS 500 -MaximumBandwidth 100MB
check "...prints nothing (as Hyper-V without -Passthru)" [ -z "$(hv Set-VMHardDiskDrive lab -ControllerLocation 2 -MaximumIOPS 500)" ]
check "...Get-VMHardDiskDrive -Json shows both" [ "$(drive_field 2 MaximumIOPS)/$(drive_field 2 MaximumBandwidth)" = 500/104857600 ]
check "...the other drive keeps none" [ "$(drive_field 0 MaximumIOPS)" = 0 ]
check "by -Path, one of the two: the other stays" hv Set-VMHardDiskDrive lab -Path "$t/d1.vhdx" -MaximumBandwidth 0
check "...bandwidth lifted, IOPS kept" [ "$(drive_field 2 MaximumIOPS)/$(drive_field 2 MaximumBandwidth)" = 500/0 ]
check "-Json prints the drive" bash -c "'$B/hv' Set-VMHardDiskDrive lab -ControllerLocation 2 -MaximumBandwidth 1MB -Json | grep -q '\"MaximumBandwidth\": 1048576'"
check "event log: the change" bash -c "'$B/hv' Get-VMEvent lab | grep -q 'hard disk drive at SCSI 0:2: MaximumIOPS 500, MaximumBandwidth 1048576 bytes/s'"
check "nothing to change is refused in one line" refused hv Set-VMHardDiskDrive lab -ControllerLocation 2
check "a location with no hard disk is refused" refused hv Set-VMHardDiskDrive lab -ControllerLocation 1 -MaximumIOPS 5
check "...saying so" says "no hard disk drive at SCSI 0:1"
check "more than 1e9 IOPS is refused" refused hv Set-VMHardDiskDrive lab -ControllerLocation 2 -MaximumIOPS 1000000001
check "a bad number is refused" refused hv Set-VMHardDiskDrive lab -ControllerLocation 2 -MaximumIOPS lots
check "...and nothing changed" [ "$(drive_field 2 MaximumIOPS)/$(drive_field 2 MaximumBandwidth)" = 500/1048576 ]

stop_vmms; start_vmms
check "kept across a vmms restart" [ "$(drive_field 2 MaximumIOPS)/$(drive_field 2 MaximumBandwidth)" = 500/1048576 ]

check "Start-VM" hv Start-VM lab
until_true [ -f "$(folder)/argv.json" ]
check "the worker gets --disk PATH,iops=N,bw=N for that disk, the plain path for the other" /usr/bin/python3 -c "
import json, sys
a = json.load(open(sys.argv[1]))
disks = [a[i + 1] for i, x in enumerate(a) if x == '--disk']
sys.exit(disks != [sys.argv[2] + '/d0.vhdx', sys.argv[2] + '/d1.vhdx,iops=500,bw=1048576'])" "$(folder)/argv.json" "$t"
check "a running VM: changed live" hv Set-VMHardDiskDrive lab -ControllerLocation 2 -MaximumIOPS 250
check "...through disk-limits at the worker's LUN 1 (after the DVD drive's location)" \
  grep -q '"lun": 1, "max_bandwidth": 1048576, "max_iops": 250, "op": "disk-limits"' "$(folder)/requests"
check "...and stored" [ "$(drive_field 2 MaximumIOPS)" = 250 ]
touch "$(folder)/refuse-limits"
check "a worker that refuses: one line" refused hv Set-VMHardDiskDrive lab -ControllerLocation 2 -MaximumIOPS 7
check "...with its reason" says "the controller refused the limits"
check "...and the inventory unchanged" [ "$(drive_field 2 MaximumIOPS)" = 250 ]
rm -f "$(folder)/refuse-limits"
check "Add-VMHardDiskDrive still refused on a running VM (32788)" bash -c "'$B/hv' Add-VMHardDiskDrive lab -Path '$t/d2.vhdx' 2>&1 | grep -q 32788"
hv Stop-VM lab -TurnOff >/dev/null
until_true [ "$(state lab)" = Off ]

check "Remove-VMHardDiskDrive: the limits go with the drive" hv Remove-VMHardDiskDrive lab -ControllerLocation 2
hv Add-VMHardDiskDrive -VMName lab -Path "$t/d2.vhdx" -ControllerLocation 2 >/dev/null
check "...a new drive at that location has none" [ "$(drive_field 2 MaximumIOPS)/$(drive_field 2 MaximumBandwidth)" = 0/0 ]
check "vmms still serves" hv Get-VM lab
[ "$fails" = 0 ] || { echo "--- vmms log"; tail -20 "$t/vmms.log"; }
exit $((fails > 0))
