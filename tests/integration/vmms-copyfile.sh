#!/usr/bin/env bash
# Copy-VMFile into a stock guest through vmms: the guest's own hv_utils (fcopy channel) and
# hv_fcopy_daemon (hyperv-daemons) write the files. The guest has no network adapter; the host
# talks to it only through the Guest Service Interface: to have the guest run a command, the
# test copies a small script to /tmp/cmd.N, which the guest's loop runs, printing its output as
# "OUT N: ..." on the console. Checks: the service is off by default and refused while off; a
# 100 MiB random file lands intact (MD5 in the guest); an existing file is refused without
# -Force and replaced with it; -CreateFullPath; a full guest file system (a 1200 KiB tmpfs) fails
# with the guest's error and leaves no partial file; bad sources and destinations fail in one
# line; -AsJob gives a job that completes; Save-VM waits for no copy (it is refused meanwhile).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 600 "$0" "$@"
t=$(mktemp -d /tmp/vmms-copy.XXXXXX)  # sockets cannot live on the 9p output folder
export VIRIDIAN_SOCKET=$t/vmms.sock
vmms=""
hv() { "$B/hv" "$@"; }
quiet() { "$@" >/dev/null 2>&1; }
cleanup() { [ -n "$vmms" ] && kill "$vmms" 2>/dev/null; pkill -f "vmwp.*$t" 2>/dev/null; }
trap cleanup EXIT
"$B/vmms" --foreground --root "$t/root" 2>>"$out/vmms.log" & vmms=$!
for _ in $(seq 100); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done

con() { cat "$t"/root/Virtual\ Machines/*/console.log 2>/dev/null | tr -d '\r'; }
wait_con() { # wait_con SECONDS PATTERN
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do con | grep -a -- "$2" >/dev/null && return 0; sleep 0.5; done
  echo "no '$2' on the console" >&2; return 1
}
# guest N CMD: the guest runs CMD (copied in as /tmp/cmd.N); prints its output
guest() {
  printf '%s\nexit 0\n#END\n' "$2" >"$t/cmd.$1"
  hv Copy-VMFile g -SourcePath "$t/cmd.$1" -DestinationPath "/tmp/cmd.$1" -FileSource Host >/dev/null || return 1
  wait_con 60 "^OUT $1 END" || return 1
  con | sed -n "s/^OUT $1: //p"
}
guest_md5() { guest "$1" "md5sum $2 | cut -d' ' -f1"; }
host_md5() { md5sum "$1" | cut -d' ' -f1; }
# fails_with TEXT CMD...: CMD fails, printing one line with TEXT on stderr
fails_with() {
  local text=$1 rc
  shift
  "$@" >/dev/null 2>"$t/err"; rc=$?
  echo "  -> rc $rc: $(cat "$t/err")"
  [ "$rc" != 0 ] && [ "$(wc -l <"$t/err")" = 1 ] && grep -q -- "$text" "$t/err"
}

guest_script=$(cat <<'G'
# 1200 KiB: a whole number of 6 KiB fragments, so that the write that finds it full writes
# nothing and fails with ENOSPC (hv_fcopy_daemon calls a short write a plain failure)
mkdir -p /small && mount -t tmpfs -o size=1228800 small /small
n=1
while :; do
  f=/tmp/cmd.$n
  if [ -f $f ] && tail -n 1 $f | grep -q '^#END$'; then
    sh $f 2>&1 | sed "s/^/OUT $n: /"
    echo "OUT $n END"
    n=$((n + 1))
  fi
  sleep 0.2
done
G
)
hv New-VM -Name g -MemoryStartupBytes 512MB -ProcessorCount 1 >/dev/null
hv Set-VMFirmware -VMName g -KernelPath "$G/vmlinuz" -InitrdPath "$G/initramfs.cpio.gz" \
  -KernelCommandLine "console=ttyS0 quiet viridian.daemons $(viridian_cmdline_arg "$guest_script")" >/dev/null
head -c 1024 /dev/urandom >"$t/small.bin"
check "Guest Service Interface: off for a new VM (as in Hyper-V)" \
  bash -c "'$B/hv' Get-VMIntegrationService g | grep -qE '^g +Guest Service Interface +False'"
check "Copy-VMFile with the service off: refused, saying so" \
  fails_with "Guest Service Interface of 'g' is disabled" hv Copy-VMFile g -SourcePath "$t/small.bin" -DestinationPath /tmp/x -FileSource Host
check "Enable-VMIntegrationService 'Guest Service Interface'" quiet hv Enable-VMIntegrationService -VMName g -Name 'Guest Service Interface'
check "Copy-VMFile of an Off VM: refused (32788)" \
  fails_with 32788 hv Copy-VMFile g -SourcePath "$t/small.bin" -DestinationPath /tmp/x -FileSource Host
check "Start-VM" quiet hv Start-VM g
check "the guest runs hv_fcopy_daemon" wait_con 300 "daemon hv_fcopy_daemon rc=0"
if [ "$fails" != 0 ]; then
  # Nothing after this can pass (clean-clone run 21: the guest's timers stopped and every check
  # after it waited for its time-out): keep the console where in_vmhost looks for a guest that
  # died or hung (126: tests/run retries it once), and stop.
  con >"$out/guest-console.log"
  exit_if_no_init "$out/guest-console.log"
  tail -n 40 "$out/guest-console.log"
  finish
fi
gsi_ok() { for _ in $(seq 60); do grep -qE '^g +Guest Service Interface +True +OK' <<<"$(hv Get-VMIntegrationService g)" && return 0; sleep 1; done; return 1; }
check "Get-VMIntegrationService: Guest Service Interface True OK" gsi_ok
hello=$(guest 1 'echo hello from $(uname -r)')
echo "  guest: $hello"
check "...the guest ran it" grep -q '^hello from [0-9]' <<<"$hello"

head -c $((100 << 20)) /dev/urandom >"$t/big.bin"
s=$SECONDS
check "Copy-VMFile of a 100 MiB random file" quiet hv Copy-VMFile g -SourcePath "$t/big.bin" -DestinationPath /tmp/big.bin -FileSource Host
el=$((SECONDS - s))
echo "  100 MiB in ${el}s ($(grep -o 'copy-file: /tmp/big.bin: .*' "$t"/root/Virtual\ Machines/*/worker.log 2>/dev/null | tail -1))"
check "...its MD5 in the guest is the host's" [ "$(guest_md5 2 /tmp/big.bin)" = "$(host_md5 "$t/big.bin")" ]
check "...the event log has it" bash -c "'$B/hv' Get-VMEvent g | grep -q 'Copy-VMFile to /tmp/big.bin: done'"

check "an existing file without -Force: refused with the guest's reason" \
  fails_with "already exists" hv Copy-VMFile g -SourcePath "$t/small.bin" -DestinationPath /tmp/big.bin -FileSource Host
check "...the guest's file is untouched" [ "$(guest_md5 3 /tmp/big.bin)" = "$(host_md5 "$t/big.bin")" ]
check "-Force replaces it" quiet hv Copy-VMFile g -SourcePath "$t/small.bin" -DestinationPath /tmp/big.bin -FileSource Host -Force
check "...with the new contents" [ "$(guest_md5 4 /tmp/big.bin)" = "$(host_md5 "$t/small.bin")" ]

check "a missing guest folder without -CreateFullPath: refused" \
  fails_with "refused" hv Copy-VMFile g -SourcePath "$t/small.bin" -DestinationPath /tmp/a/b/c.bin -FileSource Host
check "-CreateFullPath makes the folders" quiet hv Copy-VMFile g -SourcePath "$t/small.bin" -DestinationPath /tmp/a/b/c.bin -FileSource Host -CreateFullPath
check "...and the file is there" [ "$(guest_md5 5 /tmp/a/b/c.bin)" = "$(host_md5 "$t/small.bin")" ]

head -c $((3 << 20)) /dev/urandom >"$t/3m.bin"
check "a full guest file system (1200 KiB tmpfs, 3 MiB file): the guest's 'disk full'" \
  fails_with "disk is full" hv Copy-VMFile g -SourcePath "$t/3m.bin" -DestinationPath /small/3m.bin -FileSource Host
check "...no partial file is left" [ "$(guest 6 '[ -e /small/3m.bin ] && echo there || echo gone')" = gone ]

check "a missing host file: one line" fails_with "no such file" hv Copy-VMFile g -SourcePath "$t/none" -DestinationPath /tmp/n -FileSource Host
check "a host folder as the source: one line" fails_with "not a regular file" hv Copy-VMFile g -SourcePath "$t" -DestinationPath /tmp/n -FileSource Host
check "a relative guest path: one line" fails_with "absolute" hv Copy-VMFile g -SourcePath "$t/small.bin" -DestinationPath tmp/n -FileSource Host
check "-FileSource Guest: one line (Hyper-V has Host only)" fails_with "only Host" hv Copy-VMFile g -SourcePath "$t/small.bin" -DestinationPath /tmp/n -FileSource Guest

job=$(hv Copy-VMFile g -SourcePath "$t/big.bin" -DestinationPath /tmp/big2.bin -FileSource Host -AsJob)
check "-AsJob prints the job's id" grep -qE '^[0-9a-f-]{36}$' <<<"$job"
check "Save-VM while the copy runs: refused, the VM keeps running" \
  bash -c "! '$B/hv' Save-VM g >/dev/null 2>&1 && '$B/hv' Get-VM g | grep -q '^g  *Running '"
job_done() { for _ in $(seq 600); do grep -q '"state": "Completed"' <<<"$(hv Get-VMJob -Id "$job" -Json)" && return 0; sleep 0.5; done; return 1; }
check "...the job completes" job_done
check "...and that copy is intact too" [ "$(guest_md5 7 /tmp/big2.bin)" = "$(host_md5 "$t/big.bin")" ]
check "no oops in the guest" bash -c "! grep -qE 'BUG:|Oops|general protection' <<<\"\$(cat '$t'/root/Virtual\\ Machines/*/console.log)\""
check "Stop-VM -TurnOff" quiet hv Stop-VM g -TurnOff
[ "$fails" = 0 ] || { con | tail -n 40; tail -n 30 "$out/vmms.log"; }
finish
