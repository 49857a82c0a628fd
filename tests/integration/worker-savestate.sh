#!/usr/bin/env bash
# Saved state with the stock guest: it keeps a counter process, a marker file in its RAM, a
# disk it writes and reads back every second (O_DIRECT, on the synthetic SCSI controller) and
# pings over a tap. The host saves the VM (control request "save"), turns the worker off, and a
# new worker resumes it with --restore: the same counter goes on from where it was, the marker
# is there, the guest's uptime did not restart, its disk and NIC keep working, the integration
# services answer without renegotiating and the guest logs no SCSI reset or VMBus rescind.
# Then bad saved states: truncated, one flipped byte, another VM's configuration, not a file
# at all — each one error line from vmwp, exit 1, before the guest runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 900 "$0" "$@"

sock=/tmp/viridian-save-$$.sock  # 9p (the output folder) cannot hold sockets
state=$out/vm.vmrs
log=$out/savestate.log
disk=$out/data.vhdx
ctl() { printf '%s\n' "$1" | socat -t 60 - "UNIX-CONNECT:$sock" 2>/dev/null; }
wait_log() { # wait_log SECONDS PATTERN [FROM-LINE]: until the log has PATTERN after line FROM-LINE
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    tail -n +"${3:-1}" "$log" | grep -a -- "$2" >/dev/null && return 0
    sleep 0.5
  done
  return 1
}
wait_status() { # wait_status SECONDS PATTERN
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do grep -qE -- "$2" <<<"$(ctl '{"op":"status"}')" && return 0; sleep 1; done
  return 1
}
last_count() { grep -ao 'COUNT=[0-9]*' "$log" | tail -1 | cut -d= -f2; }
last_uptime() { grep -ao 'COUNT=[0-9]* UP=[0-9]*' "$log" | tail -1 | sed 's/.*UP=//'; }

modprobe tun 2>/dev/null
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
ip tuntap add dev vtap0 mode tap || exit 1
ip addr add 192.168.223.1/24 dev vtap0
ip link set vtap0 up
"$B/hv" New-VHD -Path "$disk" -SizeBytes 64MB -Dynamic >/dev/null || exit 1

guest='echo PRE-SAVE-MARKER >/tmp/marker
n=""; for i in $(seq 100); do n=$(ls /sys/class/net | grep -v "^lo$" | head -1); [ -n "$n" ] && break; sleep 0.1; done
ip addr add 192.168.223.2/24 dev $n; ip link set $n up
for i in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done
(i=0; while :; do i=$((i+1)); echo "COUNT=$i UP=$(cut -d. -f1 /proc/uptime) MARK=$(cat /tmp/marker)"; sleep 1; done) &
(i=0; while :; do i=$((i+1)); printf "block-%08d" $i | dd of=/dev/sda bs=4096 seek=$((i % 1000)) conv=sync oflag=direct 2>/dev/null
  [ "$(dd if=/dev/sda bs=4096 skip=$((i % 1000)) count=1 iflag=direct 2>/dev/null | head -c 14)" = "$(printf "block-%08d" $i)" ] && echo "DISK-OK $i"; sleep 1; done) &
(i=0; while :; do i=$((i+1)); ping -c 1 -W 2 192.168.223.1 >/dev/null && echo "NET-OK $i"; sleep 1; done) &
sleep 100000'
args=(--memory 512M --cpus 2 --disk "$disk" --nic tap=vtap0,mac=00:15:5d:12:34:99 --control "$sock" --serial "file:$log")
"$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" "${args[@]}" \
  --cmdline "console=ttyS0 quiet viridian.daemons $(viridian_cmdline_arg "$guest")" </dev/null 2>"$out/vmwp1.err" &
pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done

check "the guest counts, writes its disk and pings" bash -c "$(declare -f wait_log); log='$log'; wait_log 240 'COUNT=8 ' && wait_log 60 'DISK-OK' && wait_log 60 'NET-OK'"
check "integration services ready" wait_status 120 '"Heartbeat":"ready".*"KeyValuePairExchange":"ready"'
reply=$(ctl "{\"op\":\"save\",\"path\":\"$state\"}")
echo "save: $reply"
check "save accepted, the VM paused" grep -q '"ok":true,"state":"Paused"' <<<"$reply"
check "the saved state is there, no partial file" bash -c "[ -s '$state' ] && ! [ -e '$state.partial' ]"
before=$(last_count); up_before=$(last_uptime); lines=$(wc -l <"$log")
sleep 2
check "a saved VM runs nothing" [ "$(last_count)" = "$before" ]
ctl '{"op":"turn-off"}' >/dev/null
wait $pid; pid=""
echo "saved at COUNT=$before UP=${up_before}s; $(stat -c %s "$state") bytes"

# Bad saved states first (they must leave the good one untouched).
bad() { # bad NAME FILE [extra vmwp options...]: vmwp refuses FILE in one line, exit 1
  local f=$2; shift 2
  # the worker itself, not the crash-trace wrapper: no guest runs, and its dump is noise here;
  # a file wrongly accepted would run its guest: the time limit ends that (124, a failure)
  timeout 120 "${VIRIDIAN_REAL_VMWP:-$B/vmwp}" --restore "$f" --memory 512M --cpus 2 --disk "$disk" --nic tap=vtap0,mac=00:15:5d:12:34:99 \
    --serial "file:$out/bad.log" "$@" </dev/null >/dev/null 2>"$out/bad.err"
  local rc=$?
  echo "  -> rc $rc: $(grep 'error:' "$out/bad.err")"
  # one error line; the others are the worker's usual log (disks attached, counters at exit)
  [ "$rc" = 1 ] && [ "$(grep -c '^vmwp: error: ' "$out/bad.err")" = 1 ] && grep -q '^vmwp: error: cannot restore' "$out/bad.err"

}
head -c $(( $(stat -c %s "$state") / 2 )) "$state" >"$out/truncated.vmrs"
cp "$state" "$out/flipped.vmrs"
# Flip every bit of one byte (writing a fixed 0xff changed nothing when the byte was 0xff
# already: clean-clone run 26 restored that "corrupted" file and ran its guest).
flip_at=$(( $(stat -c %s "$state") / 3 ))
byte=$(od -An -tu1 -j "$flip_at" -N1 "$state" | tr -d ' ')
printf "\\$(printf %03o $(( byte ^ 0xff )))" | dd of="$out/flipped.vmrs" bs=1 seek="$flip_at" conv=notrunc 2>/dev/null
head -c 4096 /dev/urandom >"$out/foreign.vmrs"
check "a truncated saved state is refused" bad truncated "$out/truncated.vmrs"
check "a corrupted saved state is refused" bad flipped "$out/flipped.vmrs"
check "a foreign file is refused" bad foreign "$out/foreign.vmrs"
check "a missing file is refused" bad missing "$out/none.vmrs"
check "another VM's configuration is refused" bad other-config "$state" --disable-ic vss
check "...saying the configuration differs" grep -qi 'configuration' "$out/bad.err"

"$B/vmwp" --restore "$state" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" "${args[@]}" </dev/null 2>"$out/vmwp2.err" &
pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
check "the restored guest counts on from $before" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'COUNT=$((before + 3)) ' $lines"
check "...the same counter, not a new boot" bash -c "! tail -n +$lines '$log' | grep -qa 'COUNT=1 '"
check "...its RAM kept the marker" bash -c "tail -n +$lines '$log' | grep -qa 'MARK=PRE-SAVE-MARKER'"
up_after=$(last_uptime)
echo "uptime before the save ${up_before}s, after the restore ${up_after}s"
check "...its uptime went on" [ "${up_after:-0}" -ge "${up_before:-1}" ]
d1=$(grep -ao 'DISK-OK [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
check "its disk works after the restore" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'DISK-OK $((d1 + 2))' $lines"
n1=$(grep -ao 'NET-OK [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
check "its network works after the restore" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'NET-OK $((n1 + 2))' $lines"
check "heartbeat OK after the restore" wait_status 60 '"heartbeat":"OK"'
check "integration services still ready" wait_status 10 '"Shutdown":"ready"'
check "the guest saw no SCSI reset, rescind or oops" bash -c "! tail -n +$lines '$log' | grep -qaiE 'storvsc.*(reset|abort)|rescind|Call Trace|Oops|BUG:|hung_task'"
check "vmwp said it restored" grep -q 'restored from' "$out/vmwp2.err"
check "graceful shutdown after the restore" bash -c "printf '%s\n' '{\"op\":\"shutdown\"}' | socat -t 5 - UNIX-CONNECT:$sock | grep -q '\"ok\":true'"
for _ in $(seq 120); do kill -0 $pid 2>/dev/null || break; sleep 1; done
kill -0 $pid 2>/dev/null && kill $pid
wait $pid; rc=$?
check "the restored guest powered off (exit 0)" [ "$rc" = 0 ]
[ "$fails" = 0 ] || { echo "--- guest log"; tail -80 "$log"; echo "--- vmwp"; cat "$out/vmwp1.err" "$out/vmwp2.err"; }
finish
