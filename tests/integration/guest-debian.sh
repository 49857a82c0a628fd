#!/usr/bin/env bash
# The installed Debian guest (guest/build-debian) through vmms in the test host, booted from its
# own disk: no kernel is configured, so the worker's loader reads the kernel, initramfs and
# command line of grub.cfg's default entry from the VHDX (docs/boot.md). The VHDX is SCSI LUN 0
# through a differencing child (the cached base stays pristine); one adapter on an Internal
# switch whose host side runs a DHCP server. Checks: systemd reaches multi-user.target (the
# image's ready line), the system is running and hv-kvp-daemon and hv-vss-daemon are active (the
# image prints their states), Get-VM shows the leased address from KVP, ssh with the cached key
# runs `uname -r` and gives the installed kernel, /proc/cmdline is GRUB's entry; then the guest
# adds a second GRUB entry, makes it the default and reboots, and comes up on it; Stop-VM shuts
# it down through the shutdown IC. Prints the boot time to the ready line.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
D=$(guest/build-debian --print-dir)
if [ "${1:-}" != --inner ]; then
  if [ ! -s "$D/debian.vhdx" ] && [ "$(id -u)" != 0 ]; then
    echo "skip: the Debian guest is not built and building it needs root (guest/build-debian)"
    exit 77
  fi
  guest/build-debian -q --hv "$B/hv" || exit 1
fi
in_vmhost 1500 "$0" "$@"

t=$(mktemp -d /tmp/guest-debian.XXXXXX)  # sockets cannot live on the 9p output folder
export VIRIDIAN_SOCKET=$t/vmms.sock
vmms="" udhcpd=""
hv() { "$B/hv" "$@"; }
cleanup() {
  [ -n "$udhcpd" ] && kill "$udhcpd" 2>/dev/null
  [ -n "$vmms" ] && kill "$vmms" 2>/dev/null
  pkill -f "vmwp.*$t" 2>/dev/null
}
trap cleanup EXIT
"$B/vmms" --foreground --root "$t/root" 2>>"$out/vmms.log" & vmms=$!
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done

modprobe tun 2>/dev/null
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
diag() {
  echo "--- vmms log"; tail -30 "$out/vmms.log"
  for f in "$t"/root/Virtual\ Machines/*/worker.log; do [ -f "$f" ] && { echo "--- worker log"; tail -40 "$f"; }; done
  echo "--- console"; tail -60 "${log:-/dev/null}"
}
# setup CHECK...: a step the rest needs; if it fails, stop here with the evidence.
setup() { check "$@" || { diag; finish; }; }
# guest_lost WHAT: the guest did not come up. Its worker is stopped (under the test host's
# crashtrace that leaves the VM's last KVM events in the worker log) and the console and worker
# log go to $out; a crash report in them says the guest died, with none it hung. Either way
# exit 126 for tests/run to run the test again: the image reaches its ready line in some
# 120 s (250 s on a loaded machine), so one that has not in $boot_wait s is stuck in the
# emulator (docs/testhost.md), and a fault of ours would fail every attempt.
guest_lost() {
  hv Stop-VM deb -TurnOff >/dev/null 2>&1
  sleep 2
  diag
  cp "$log" "$out/deb.console.log" 2>/dev/null
  local w why="hung in the test host: $1" crash
  for w in "$t"/root/Virtual\ Machines/*/worker.log; do cp "$w" "$out/deb.worker.log" 2>/dev/null; done
  crash=$(grep -shoE "$guest_crash.{0,100}" "$out/deb.console.log" "$out/deb.worker.log" | head -n 1)
  [ -z "$crash" ] || why="died in the test host: $crash"
  echo "--- a guest $why (console's last line: $(tail -n 1 "$log" 2>/dev/null | tr -d '\r' | cut -c1-120))"
  exit 126
}
boot_wait=600
setup "New-VMSwitch deb (Internal)" bash -c "'$B/hv' New-VMSwitch -Name deb -SwitchType Internal >/dev/null"
tap=$(hv Get-VMSwitch deb -Json | sed -n 's/.*"HostAdapterName": "\(.*\)".*/\1/p')
for _ in $(seq 50); do ip link show "$tap" >/dev/null 2>&1 && break; sleep 0.1; done
ip addr add 192.168.61.1/24 dev "$tap" && ip link set "$tap" up
printf 'interface %s\nstart 192.168.61.50\nend 192.168.61.60\noption subnet 255.255.255.0\nlease_file %s/leases\npidfile %s/udhcpd.pid\n' \
  "$tap" "$t" "$t" >"$t/udhcpd.conf"
touch "$t/leases"
busybox udhcpd -f "$t/udhcpd.conf" >"$out/udhcpd.log" 2>&1 & udhcpd=$!

kver=$(sed -n 's/^kernel=//p' "$D/manifest")
hv New-VHD -Path "$t/debian.avhdx" -ParentPath "$D/debian.vhdx" -Differencing >/dev/null
hv New-VM -Name deb -MemoryStartupBytes 1GB -ProcessorCount 2 >/dev/null
setup "Add-VMHardDiskDrive: the Debian disk (a child of the cached one)" bash -c "'$B/hv' Add-VMHardDiskDrive -VMName deb -Path '$t/debian.avhdx' >/dev/null"
setup "Add-VMNetworkAdapter on deb" bash -c "'$B/hv' Add-VMNetworkAdapter -VMName deb -SwitchName deb -StaticMacAddress 00:15:5d:61:00:02 >/dev/null"
con=$(echo "$t"/root/Virtual\ Machines)
t0=$SECONDS
log=$(ls -d "$con"/*/ | head -1)console.log
setup "Start-VM deb" hv Start-VM deb
wait_log() { # SECONDS PATTERN: fails at once where the console or the worker says the guest died
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    grep -qs -- "$2" "$log" && return 0
    grep -qsE "$guest_crash" "$log" "$t"/root/Virtual\ Machines/*/worker.log && return 1
    sleep 1
  done
  return 1
}
check "systemd reached multi-user.target (VIRIDIAN-READY on the console)" wait_log "$boot_wait" "VIRIDIAN-READY" ||
  guest_lost "no ready line in $boot_wait s"
ready_wall=$((SECONDS - t0))
check "...booted the image's own kernel $kver" bash -c "grep -a 'VIRIDIAN-READY' '$log' | grep -q 'kernel=$kver'"
check "the boot finished (VIRIDIAN-STATUS)" wait_log 180 "VIRIDIAN-STATUS"
status=$(grep -a -m1 -o 'VIRIDIAN-STATUS.*' "$log" | tr -d '\r')
echo "guest: $status"
check "systemctl is-system-running: running" grep -q 'system=running' <<<"$status"
check "hv-kvp-daemon is active" grep -q 'hv-kvp-daemon=active' <<<"$status"
check "hv-vss-daemon is active" grep -q 'hv-vss-daemon=active' <<<"$status"
check "ssh and systemd-networkd are active" grep -qE 'ssh=active.*systemd-networkd=active' <<<"$status"
check "the guest leased an address from the host's DHCP server" grep -qE 'ipv4=192\.168\.61\.(5[0-9]|60)/24' <<<"$status"
ip=$(sed -n 's/.*ipv4=\(192\.168\.61\.[0-9]*\).*/\1/p' <<<"$status")
kvp_ip() {
  local i
  for i in $(seq 60); do
    grep -q "\"ip_addresses\":\[[^]]*\"${ip:-none}\"" <<<"$(hv Get-VM deb -Json | tr -d ' \n')" && return 0
    sleep 1
  done
  hv Get-VM deb -Json >&2
  return 1
}
check "Get-VM shows the guest's address ${ip:-?} from KVP" kvp_ip
sshg() {
  ssh -i "$t/key" -o UserKnownHostsFile="$D/known_hosts" -o HostKeyAlias=viridian-debian -o StrictHostKeyChecking=yes \
    -o BatchMode=yes -o ConnectTimeout=60 "root@$ip" "$@"
}
install -m 600 "$D/id_ed25519" "$t/key"
ssh_uname() { [ "$(sshg uname -r 2>>"$out/ssh.log")" = "$kver" ]; }
ssh_root() { grep -q "^$(sed -n 's/^root_uuid=//p' "$D/manifest") rw" <<<"$(sshg findmnt -no UUID,OPTIONS / 2>>"$out/ssh.log")"; }
check "ssh with the cached key runs uname -r: $kver" ssh_uname
check "...the root file system is the image's (by UUID, read-write)" ssh_root
grub_entry() { [ "$(sshg cat /proc/cmdline 2>>"$out/ssh.log")" = "BOOT_IMAGE=/boot/vmlinuz-$kver $(cat "$D/cmdline")" ]; }
check "...booted through grub.cfg's default entry (BOOT_IMAGE and its command line in /proc/cmdline)" grub_entry
# Where the boot's time went (for bench/boot): kernel, initrd, userspace, the slowest units.
sshg 'systemd-analyze; systemd-analyze blame | head -n 8; systemd-analyze critical-chain --no-pager | tail -n +3 | head -n 12' 2>>"$out/ssh.log" | sed 's/^/guest: /'
# The guest changes its own boot configuration and reboots: the worker re-execs on the reset
# and its loader reads the disk again.
sshg 'bash -s' >>"$out/ssh.log" 2>&1 <<'EOF'
set -e
f=/boot/grub/grub.cfg
awk '/^menuentry /{p=1} p{print} p&&/^}/{exit}' "$f" |
  sed "s/^menuentry '[^']*'/menuentry 'Debian, second entry'/; s/^\([[:space:]]*linux[[:space:]].*\)$/\1 viridian.entry=second/" >/tmp/entry
grep -q 'viridian.entry=second' /tmp/entry
cat /tmp/entry >>"$f"
sed -i 's/^set default=0$/set default=1/' "$f"
sync
systemctl reboot
EOF
second_entry() {
  local deadline=$((SECONDS + boot_wait))
  while [ $SECONDS -lt $deadline ]; do
    grep -q 'viridian.entry=second' <<<"$(sshg cat /proc/cmdline 2>>"$out/ssh.log")" && return 0
    sleep 5
  done
  return 1
}
check "after a reboot from inside, the guest is up on the new default entry (/proc/cmdline)" second_entry ||
  guest_lost "not up $boot_wait s after its reboot"
check "...on the same installed kernel $kver" ssh_uname
check "Stop-VM: the guest shuts down through the shutdown IC -> Off" bash -c "'$B/hv' Stop-VM deb && for i in \$(seq 120); do '$B/hv' Get-VM deb -Json | grep -q '\"state\": \"Off\"' && exit 0; sleep 1; done; exit 1"
up=$(grep -a -m1 -o 'VIRIDIAN-READY uptime=[0-9.]*' "$log" | sed 's/.*uptime=//')
echo "boot to the ready line: guest uptime ${up:-?} s, ${ready_wall} s wall from Start-VM ($([ "${VIRIDIAN_IN_TESTHOST:-}" = 1 ] && echo "in the nested test host" || echo "on this host's KVM"))"
cp "$log" "$out/deb.console.log" 2>/dev/null
[ "$fails" = 0 ] || diag
finish
