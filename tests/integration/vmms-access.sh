#!/usr/bin/env bash
# Who may manage VMs (docs/security.md): vmms serves root and members of group viridian
# (SO_PEERCRED; the peer's groups); anyone else gets one "access denied" line. A member's file
# paths are resolved with the member's own rights: it cannot attach a root-only file as a disk,
# reach one through ../ or a symlinked folder, name a symlink, boot a root-only kernel, or get a
# file swapped for a symlink past the check (attach, then Start-VM). No guest needed.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${VIRIDIAN_BUILD:-build}
[ "$(id -u)" = 0 ] || { echo "skip: needs root (to act as other users)"; exit 77; }
command -v setpriv >/dev/null || { echo "skip: no setpriv (util-linux)"; exit 77; }
vg=$(getent group viridian | cut -d: -f3)
[ -n "$vg" ] || { echo "skip: no group viridian (tools/deps creates it: groupadd --system viridian)"; exit 77; }
t=$(mktemp -d /tmp/vmms-access.XXXXXX)
chmod 0755 "$t"
export VIRIDIAN_SOCKET=$t/vmms.sock
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$t"; }
trap cleanup EXIT
fails=0
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi; }
# An admin (uid 4242, in group viridian) and an outsider (uid 4343), neither in /etc/passwd.
admin() { setpriv --reuid=4242 --regid=4242 --groups="$vg" "$B/hv" "$@"; }
outsider() { setpriv --reuid=4343 --regid=4343 --clear-groups "$B/hv" "$@"; }
# hv makes paths absolute and resolves symlinks itself; admin_raw sends a request as it is.
admin_raw() { printf '%s\n' "$1" | setpriv --reuid=4242 --regid=4242 --groups="$vg" socat -t 10 - "UNIX-CONNECT:$VIRIDIAN_SOCKET"; }
attach_raw() { admin_raw "{\"op\":\"add-disk\",\"vm\":\"mine\",\"path\":\"$1\"}"; }
# denied WHAT PATTERN CMD...: the command fails with one line matching PATTERN.
denied() {
  local what=$1 want=$2; shift 2
  local out; out=$("$@" 2>&1); local rc=$?
  check "$what (${out})" bash -c "[ $rc -ne 0 ] && [ \$(wc -l <<<'$out') = 1 ] && grep -qE -- '$want' <<<'$out'"
}

"$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
check "the socket is root:viridian 0660" [ "$(stat -c %a:%g "$VIRIDIAN_SOCKET")" = "660:$vg" ]
check "a member of viridian manages: Get-VM" admin Get-VM
check "...New-VM" admin New-VM -Name mine -MemoryStartupBytes 64MB
denied "an outsider cannot reach the socket" "ermission denied|access denied" outsider Get-VM
chmod 0666 "$VIRIDIAN_SOCKET" # past the file mode: vmms itself refuses (SO_PEERCRED)
denied "an outsider is refused by vmms" "access denied: you do not have the required permission" outsider Get-VM
denied "...also to change anything" "access denied" outsider Remove-VM mine
chmod 0660 "$VIRIDIAN_SOCKET"

# The admin's own folder and disk; files of root's beside it.
mkdir -p "$t/u/sub" && chown -R 4242:4242 "$t/u"
check "the admin makes its own disk (New-VHD runs as the admin)" admin New-VHD -Path "$t/u/own.vhdx" -SizeBytes 16MB
check "...and attaches it" admin Add-VMHardDiskDrive mine -Path "$t/u/own.vhdx"
check "...stored as the file the admin named" bash -c "'$B/hv' Get-VM mine -Json | grep -q '$t/u/own.vhdx'"
install -m 0600 /dev/null "$t/u/rootonly.vhdx" && truncate -s 16M "$t/u/rootonly.vhdx"
install -m 0644 /dev/null "$t/readonly.vhdx" && truncate -s 16M "$t/readonly.vhdx"
denied "a member cannot attach /etc/shadow" "cannot be used: General access denied" admin Add-VMHardDiskDrive mine -Path /etc/shadow
denied "...nor a root-only file in its own folder" "General access denied" admin Add-VMHardDiskDrive mine -Path "$t/u/rootonly.vhdx"
denied "...nor a file it may only read (the guest would write it)" "General access denied" admin Add-VMHardDiskDrive mine -Path "$t/readonly.vhdx"
denied "...nor reach /etc/shadow through ../" "General access denied" admin Add-VMHardDiskDrive mine -Path "$t/u/../../../etc/shadow"
ln -s /etc "$t/u/etc" && chown -h 4242:4242 "$t/u/etc"
denied "...nor through a symlinked folder" "General access denied" admin Add-VMHardDiskDrive mine -Path "$t/u/etc/shadow"
for p in "$t/u/../../../etc/shadow" "$t/u/etc/shadow"; do
  reply=$(attach_raw "$p")
  check "...as sent to vmms unresolved ($p): $reply" grep -q '"ok":false.*General access denied' <<<"$reply"
done
ln -s "$t/u/own.vhdx" "$t/u/link.vhdx" && chown -h 4242:4242 "$t/u/link.vhdx"
reply=$(attach_raw "$t/u/link.vhdx")
check "...nor name a symlink, even to its own file (vmms opens with O_NOFOLLOW): $reply" grep -q '"ok":false.*symbolic link' <<<"$reply"
install -m 0600 "$B/vmwp" "$t/rootkernel"
denied "...nor boot a kernel only root may read" "General access denied" admin Set-VMFirmware mine -KernelPath "$t/rootkernel"
denied "...nor give the guest /etc/shadow as a DVD" "General access denied" admin Add-VMDvdDrive -VMName mine -Path /etc/shadow
check "...no DVD drive was added" bash -c "! '$B/hv' Get-VMDvdDrive -VMName mine | grep -q shadow"
denied "...nor export into a folder only root may write" "General access denied" admin Export-VM -Name mine -Path /etc
check "...nothing was written there" test ! -e /etc/mine -a ! -e /etc/mine.partial
check "root still attaches what it likes" "$B/hv" Add-VMHardDiskDrive mine -Path "$t/u/rootonly.vhdx"
"$B/hv" Remove-VMHardDiskDrive mine -Path "$t/u/rootonly.vhdx" >/dev/null

# Swapped after the check: the admin attaches its own disk and then makes the name a symlink to
# a root-only file; starting the VM re-checks with the admin's rights and refuses.
python3 bench/boot/tiny-bzimage.py --halt "$t/u/halt.bz" && chown 4242:4242 "$t/u/halt.bz"
check "the admin sets its own kernel" admin Set-VMFirmware mine -KernelPath "$t/u/halt.bz"
setpriv --reuid=4242 --regid=4242 --clear-groups bash -c "mv '$t/u/own.vhdx' '$t/u/own.old' && ln -s '$t/u/rootonly.vhdx' '$t/u/own.vhdx'"
denied "a disk swapped for a symlink after the attach: Start-VM refuses" "cannot start: .*symbolic link" admin Start-VM mine
check "...and the VM stays Off" bash -c "'$B/hv' Get-VM mine | grep -q '^mine  *Off '"
# Racing the check itself: a loop swaps the name between the admin's disk and a symlink to the
# root-only file while the admin attaches it again and again; every attach that passes stored
# the admin's own file (never the root-only one), each refusal is one line.
rm -f "$t/u/own.vhdx"
"$B/hv" Remove-VMHardDiskDrive mine -ControllerLocation 0 >/dev/null
setpriv --reuid=4242 --regid=4242 --clear-groups bash -c "
  cd '$t/u'; end=\$((SECONDS + 8))
  while [ \$SECONDS -lt \$end ]; do
    ln -sfn rootonly.vhdx tmp-link && mv -T tmp-link race.vhdx; cp own.old tmp-file && mv -T tmp-file race.vhdx
  done" &
swapper=$!
ok=0 refused=0 bad=0
for _ in $(seq 40); do
  reply=$(attach_raw "$t/u/race.vhdx")
  if grep -q '"ok":true' <<<"$reply"; then
    ok=$((ok + 1))
    "$B/hv" Remove-VMHardDiskDrive mine -ControllerLocation 0 >/dev/null
  elif grep -qE '"ok":false.*(symbolic link|changed while|General access denied|does not exist)' <<<"$reply"; then
    refused=$((refused + 1))
  else
    bad=$((bad + 1)); echo "unexpected: $reply"
  fi
done
wait "$swapper"
check "racing swaps: $ok attached, $refused refused, $bad otherwise" [ "$bad" = 0 ]
check "...vmms never stored the root-only file" bash -c "! '$B/hv' Get-VM mine -Json | grep -q rootonly"
check "vmms still serves" admin Get-VM mine
[ "$fails" = 0 ] || { echo "--- vmms log"; cat "$t/vmms.log"; }
exit $((fails > 0))
