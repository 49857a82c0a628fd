#!/usr/bin/env bash
# Live migration between two workers in one host (control request "migrate-send", vmwp
# --incoming), over a Unix socket, with the stock guest sharing one disk image: the guest
# prints a counter with its uptime every 0.1 s, writes and reads back its disk every second and,
# once the host sets a KVP key, dirties 16 MiB of its RAM without pause.
#  - faults first: a destination of another configuration, and one killed in mid-copy: the
#    source says why and the guest keeps counting there;
#  - an idle guest to a second worker: the same counter goes on there (no reboot), its disk
#    works, the source worker is gone;
#  - a destination that does not trust the source's TLS certificate: refused, VM stays;
#  - back again over TCP with mutual TLS while the guest dirties memory (auto-converge).
# Both with "verify": paused, the source hashes every page its dirty set does not name against
# what it sent: none may differ (KVM's dirty log and the host's own writes are all tracked).
# Prints, for each, the worker's figures (bytes, passes, downtime) and the largest gap the guest
# saw between two ticks of its counter.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 900 "$0" "$@"

ctl_a=/tmp/viridian-mig-$$-a.sock ctl_b=/tmp/viridian-mig-$$-b.sock stream=/tmp/viridian-mig-$$-stream.sock
log=$out/migrate.log
disk=$out/data.vhdx
ctl() { printf '%s\n' "$2" | socat -t 600 - "UNIX-CONNECT:$1" 2>/dev/null; }
wait_log() { # wait_log SECONDS PATTERN [FROM-LINE]
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    tail -n +"${3:-1}" "$log" | grep -a -- "$2" >/dev/null && return 0
    sleep 0.3
  done
  return 1
}
# A destination killed with SIGKILL leaves its socket: callers remove it before starting the next.
wait_sock() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }
wait_port() { for _ in $(seq 100); do grep -q ":$(printf %04X "$1") 00000000:0000 0A" /proc/net/tcp && return 0; sleep 0.1; done; return 1; }
last_tick() { grep -ao 'TICK=[0-9]*' "$log" | tail -1 | cut -d= -f2; }
# The largest step of the guest's uptime between consecutive ticks after line $1, in ms.
max_gap() { tail -n +"$1" "$log" | grep -aoE 'TICK=[0-9]+ UP=[0-9.]+' | awk -F'UP=' '{ t = $2 * 1000; if (p && t - p > m) m = t - p; p = t } END { printf "%d", m }'; }
field() { grep -o "\"$1\":[0-9]*" <<<"$2" | cut -d: -f2; }

ip link set lo up 2>/dev/null # the TLS part goes over TCP on loopback
"$B/hv" New-VHD -Path "$disk" -SizeBytes 64MB -Dynamic >/dev/null || exit 1
guest='for i in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done
(i=0; while :; do i=$((i+1)); read up idle </proc/uptime; echo "TICK=$i UP=$up"; sleep 0.1; done) &
(i=0; while :; do i=$((i+1)); printf "block-%08d" $i | dd of=/dev/sda bs=4096 seek=$((i % 1000)) conv=sync oflag=direct 2>/dev/null
  [ "$(dd if=/dev/sda bs=4096 skip=$((i % 1000)) count=1 iflag=direct 2>/dev/null | head -c 14)" = "$(printf "block-%08d" $i)" ] && echo "DISK-OK $i"; sleep 1; done) &
(while :; do if grep -qa DirtyNow /var/lib/hyperv/.kvp_pool_0 2>/dev/null; then [ -e /dev/shm/d ] || echo DIRTYING
  dd if=/dev/urandom of=/dev/shm/d bs=1M count=16 conv=notrunc 2>/dev/null; else sleep 0.5; fi; done) &
sleep 100000'
args=(--memory 512M --cpus 2 --disk "$disk" --serial "file:$log")
boot=(--kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --cmdline "console=ttyS0 quiet viridian.daemons $(viridian_cmdline_arg "$guest")")
"$B/vmwp" "${boot[@]}" "${args[@]}" --control "$ctl_a" </dev/null 2>"$out/vmwp-a.err" &
pa=$!
wait_sock "$ctl_a"
check "the guest counts and writes its disk" bash -c "$(declare -f wait_log); log='$log'; wait_log 300 'TICK=30 ' && wait_log 60 'DISK-OK 3'"
grep -q "$init_mark" "$log" || tail -n 40 "$out/vmwp-a.err"
exit_if_no_init "$log"
# hv_kvp_daemon must be up before the dirtying switch can reach the guest later.
for _ in $(seq 120); do grep -q '"KeyValuePairExchange":"ready"' <<<"$(ctl "$ctl_a" '{"op":"status"}')" && break; sleep 1; done

# ---- faults: the VM stays on the source ----
rm -f "$stream"
"${VIRIDIAN_REAL_VMWP:-$B/vmwp}" "${boot[@]}" "${args[@]/512M/256M}" --incoming "unix:$stream" </dev/null 2>"$out/vmwp-bad.err" &
pb=$!
wait_sock "$stream"
reply=$(ctl "$ctl_a" "{\"op\":\"migrate-send\",\"address\":\"unix:$stream\"}")
echo "other configuration: $reply"
check "a destination of another configuration is refused" grep -q '"ok":false.*configuration' <<<"$reply"
wait $pb; rc=$?
check "...that destination exits 1 saying why" bash -c "[ $rc = 1 ] && grep -q 'configuration' '$out/vmwp-bad.err'"
t=$(last_tick)
check "...the guest counts on on the source" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'TICK=$((t + 10)) '"

rm -f "$stream"
"${VIRIDIAN_REAL_VMWP:-$B/vmwp}" "${boot[@]}" "${args[@]}" --incoming "unix:$stream" </dev/null 2>"$out/vmwp-killed.err" &
pb=$!
wait_sock "$stream"
# The destination stops taking data a moment in (the source's sends then block on the full
# socket) and dies: mid-copy however fast the machine (a quiet one copies it all in ~4 s).
(sleep 0.3; kill -STOP $pb; sleep 3; kill -9 $pb) &
reply=$(ctl "$ctl_a" "{\"op\":\"migrate-send\",\"address\":\"unix:$stream\",\"max_downtime_ms\":1,\"max_passes\":1000}")
echo "destination killed: $reply"
wait $pb 2>/dev/null
check "a destination killed in mid-copy fails the migration" grep -q '"ok":false' <<<"$reply"
t=$(last_tick)
check "...the guest counts on on the source" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'TICK=$((t + 10)) '"
d=$(grep -ao 'DISK-OK [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
check "...and its disk works there" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'DISK-OK $((d + 2))'"

# ---- an idle guest, A -> B ----
migrate() { # migrate FROM-CTL FROM-PID TO-CTL NAME ADDRESS EXTRA-JSON [DEST OPTIONS]: sets reply, pb (the new worker)
  case $5 in unix:*) rm -f "${5#unix:}";; esac
  "$B/vmwp" "${boot[@]}" "${args[@]}" --control "$3" --incoming "$5" "${@:7}" </dev/null 2>"$out/vmwp-$4.err" &
  pb=$!
  case $5 in unix:*) wait_sock "${5#unix:}";; *) wait_port "${5##*:}";; esac
  lines=$(wc -l <"$log")
  reply=$(ctl "$1" "{\"op\":\"migrate-send\",\"address\":\"$5\",\"verify\":true$6}")
  echo "$4: $reply"
  check "$4: migrate-send succeeds" grep -q '"ok":true,"state":"Migrated"' <<<"$reply"
  # verify: every page outside the last dirty set was hashed against what was sent
  check "$4: the dirty tracking missed no page (guest or host writes)" [ "$(field unlogged_pages "$reply")" = 0 ]
  for _ in $(seq 50); do kill -0 "$2" 2>/dev/null || break; sleep 0.2; done
  check "$4: the source worker is gone" bash -c "! kill -0 $2 2>/dev/null"
  t=$(last_tick)
  check "$4: the same counter goes on on the destination" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'TICK=$((t + 20)) ' $lines"
  check "$4: ...not a new boot" bash -c "! tail -n +$lines '$log' | grep -qaE 'TICK=1 |Linux version'"
  d=$(grep -ao 'DISK-OK [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  check "$4: its disk works on the destination" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'DISK-OK $((d + 2))' $lines"
  check "$4: the guest saw no SCSI reset, rescind or oops" bash -c "! tail -n +$lines '$log' | grep -qaiE 'storvsc.*(reset|abort)|rescind|Call Trace|Oops|BUG:'"
  grep -h 'migration: pass\|paused pass' "$out"/vmwp-*.err | tail -4
  echo "FIGURES $4: total $(field total_ms "$reply") ms, downtime $(field downtime_ms "$reply") ms (worker), largest tick gap $(max_gap "$lines") ms (guest), $(field bytes "$reply") bytes, $(field passes "$reply") passes, last pass $(field last_pass_pages "$reply") pages, throttle $(field throttle_pct "$reply")%"
}
migrate "$ctl_a" $pa "$ctl_b" idle "unix:$stream" ""
pa=""

# ---- a guest dirtying memory, B -> A, over TCP with mutual TLS ----
# Each side has its certificate and trusts the other's (tests/unit/worker/tls: self-signed).
T=$PWD/tests/unit/worker/tls port=$((40000 + $$ % 20000))
src_tls=",\"cert\":\"$T/b.pem\",\"key\":\"$T/b.key\",\"trust\":\"$T/a.pem\""
dst_tls=(--migration-cert "$T/a.pem" --migration-key "$T/a.key")
# Fault: the destination trusts another host's certificate only.
"${VIRIDIAN_REAL_VMWP:-$B/vmwp}" "${boot[@]}" "${args[@]}" --incoming "tls:127.0.0.1:$port" "${dst_tls[@]}" \
  --migration-trust "$T/c.pem" </dev/null 2>"$out/vmwp-badcert.err" &
pc=$!
wait_port $port
reply=$(ctl "$ctl_b" "{\"op\":\"migrate-send\",\"address\":\"tls:127.0.0.1:$port\"$src_tls}")
echo "untrusted certificate: $reply"
check "a destination that does not trust the source's certificate refuses it" grep -q '"ok":false.*TLS: the destination refused' <<<"$reply"
wait $pc; rc=$?
check "...that destination exits 1: the certificate is not trusted" bash -c "[ $rc = 1 ] && grep -q 'not trusted' '$out/vmwp-badcert.err'"
t=$(last_tick)
check "...the guest counts on on the source" bash -c "$(declare -f wait_log); log='$log'; wait_log 60 'TICK=$((t + 10)) '"

ctl "$ctl_b" '{"op":"kvp-set","key":"ViridianMigrate","value":"DirtyNow"}' >/dev/null
check "the guest dirties memory" bash -c "$(declare -f wait_log); log='$log'; wait_log 90 'DIRTYING'"
sleep 3
pold=$pb
migrate "$ctl_b" $pold "$ctl_a" dirtying "tls:127.0.0.1:$port" ',"max_passes":5'"$src_tls" "${dst_tls[@]}" --migration-trust "$T/b.pem"

check "graceful shutdown at the end" bash -c "printf '%s\n' '{\"op\":\"shutdown\"}' | socat -t 5 - UNIX-CONNECT:$ctl_a | grep -q '\"ok\":true'"
for _ in $(seq 120); do kill -0 $pb 2>/dev/null || break; sleep 1; done
kill -0 $pb 2>/dev/null && kill $pb
wait $pb; rc=$?
check "the migrated guest powered off (exit 0)" [ "$rc" = 0 ]
[ "$fails" = 0 ] || { echo "--- guest log"; tail -60 "$log"; for f in "$out"/vmwp-*.err; do echo "--- $f"; tail -30 "$f"; done; }
finish
