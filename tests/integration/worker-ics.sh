#!/usr/bin/env bash
# Integration services with the stock guest (hv_utils + hv_kvp_daemon + hv_vss_daemon),
# driven through vmwp's control socket: heartbeat OK, KVP both ways (a host entry appears
# in the daemon's pool file; the guest's OS name and host name appear on the host), VSS
# freeze/thaw with the daemon, and a graceful shutdown that powers the guest off (exit 0).
# A second boot without the daemons: VSS freeze reports the guest's failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 900 "$0" "$@"

ctl() { printf '%s\n' "$1" | socat -t 5 - "UNIX-CONNECT:$sock" 2>/dev/null; }
# wait_for SECONDS REQUEST JQ-LESS-PATTERN: poll the control socket until the reply matches
wait_for() {
  local deadline=$((SECONDS + $1)) reply
  while [ $SECONDS -lt $deadline ] && kill -0 "$pid" 2>/dev/null; do
    reply=$(ctl "$2"); if grep -qE -- "$3" <<<"$reply"; then echo "$reply"; return 0; fi; sleep 1
  done
  echo "last reply: $reply" >&2; return 1
}

sock=/tmp/viridian-ics-$$.sock  # 9p (the output folder) cannot hold sockets
log=$out/ics.log
guest='date -s @$(( $(date +%s) - 3600 )) >/dev/null && echo CLOCK-OFFSET-SET
(while :; do echo "GUEST-TIME=$(date +%s)"; sleep 1; done) &
for i in $(seq 90); do grep -q viridian-host-value /var/lib/hyperv/.kvp_pool_0 2>/dev/null && break; sleep 1; done
grep -q viridian-host-value /var/lib/hyperv/.kvp_pool_0 && echo "KVP-HOST-TO-GUEST-OK"
sleep 300'
"$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --cpus 2 --control "$sock" \
  --cmdline "console=ttyS0 quiet viridian.daemons $(viridian_cmdline_arg "$guest")" </dev/null >"$log" 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done

check "heartbeat OK" wait_for 120 '{"op":"status"}' '"heartbeat":"OK"'
check "status lists the heartbeat channel, open" wait_for 5 '{"op":"status"}' '"device":"heartbeat","class_id":"57164f39-9115-4e78-ab55-382f3bd5422d","open":true'
check "VMBus 5.x in status" wait_for 5 '{"op":"status"}' '"vmbus_version":"5\.[0-3]"'
check "KVP service ready" wait_for 60 '{"op":"status"}' '"KeyValuePairExchange":"ready"'
check "kvp-set accepted" wait_for 5 '{"op":"kvp-set","key":"ViridianTest","value":"viridian-host-value"}' '"ok":true'
check "guest reports its OS to the host (KVP guest->host)" wait_for 60 '{"op":"guest-info"}' '"OSName":"[^"]+'
check "guest reports its host name" wait_for 5 '{"op":"guest-info"}' '"FullyQualifiedDomainName":'
check "unknown op refused" wait_for 5 '{"op":"frobnicate"}' '"ok":false,"error":"unknown op frobnicate"'
check "malformed request refused" wait_for 5 'not json' '"ok":false'
check "VSS service ready" wait_for 30 '{"op":"status"}' '"VSS":"ready"'
ctl '{"op":"vss-freeze"}' >/dev/null
check "VSS freeze succeeds with the daemon" wait_for 60 '{"op":"vss-status"}' '"state":"frozen"'
ctl '{"op":"vss-thaw"}' >/dev/null
check "VSS thaw returns to idle" wait_for 60 '{"op":"vss-status"}' '"state":"idle"'
# Time sync: the guest set its clock an hour back; a SYNC sample from the host steps it.
guest_offset() { local t; t=$(grep -ao 'GUEST-TIME=[0-9]*' "$log" | tail -1 | cut -d= -f2); echo $(( $(date +%s) - ${t:-0} )); }
check "guest clock was an hour off" bash -c "for i in \$(seq 60); do grep -q CLOCK-OFFSET-SET '$log' && grep -q GUEST-TIME '$log' && exit 0; sleep 1; done; exit 1"
sleep 2
before=$(guest_offset)
check "time-sync accepted" wait_for 5 '{"op":"time-sync"}' '"ok":true'
# The guest prints its clock every second; a loaded machine may take a while to show the step.
for _ in $(seq 30); do after=$(guest_offset); [ "${after#-}" -le 3 ] && break; sleep 1; done
echo "guest clock behind the host: before sync ${before}s, after ${after}s"
check "offset before sync is about an hour" [ "$before" -ge 3500 ]
check "time sync corrected the guest clock" [ "${after#-}" -le 3 ]
# Pause stops every vCPU: the guest prints nothing; resume lets it go on.
ticks() { grep -c 'GUEST-TIME=' "$log"; }
check "pause accepted" wait_for 5 '{"op":"pause"}' '"state":"Paused"'
check "status says Paused" wait_for 5 '{"op":"status"}' '"state":"Paused"'
sleep 1; n1=$(ticks); sleep 3; n2=$(ticks)
check "a paused guest runs nothing ($n1 -> $n2 clock lines)" [ "$n1" = "$n2" ]
check "resume accepted" wait_for 5 '{"op":"resume"}' '"state":"Running"'
for _ in $(seq 30); do sleep 1; n3=$(ticks); [ "$n3" -gt "$n2" ] && break; done
check "the guest runs again after resume ($n2 -> $n3 clock lines)" [ "$n3" -gt "$n2" ]
check "heartbeat OK after resume" wait_for 30 '{"op":"status"}' '"heartbeat":"OK"'
check "heartbeat round trip reported" wait_for 5 '{"op":"status"}' '"heartbeat_rtt_us":[0-9]+'
check "guest read the host's KVP entry" bash -c "for i in \$(seq 60); do grep -q KVP-HOST-TO-GUEST-OK '$log' && exit 0; sleep 1; done; exit 1"
check "graceful shutdown accepted" wait_for 5 '{"op":"shutdown"}' '"ok":true'
for _ in $(seq 120); do kill -0 $pid 2>/dev/null || break; sleep 1; done
kill -0 $pid 2>/dev/null && kill $pid
wait $pid; rc=$?
check "guest powered off after the shutdown request (exit 0)" [ "$rc" = 0 ]
check "the guest's init saw the host's power-off" grep -q "VIRIDIAN-MARK: host-poweroff" "$log"
[ "$fails" = 0 ] || { echo "--- guest log"; cat "$log"; }

# Without hv_vss_daemon the guest answers the freeze with a failure.
log=$out/novss.log
"$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --control "$sock" \
  --cmdline "console=ttyS0 quiet $(viridian_cmdline_arg 'sleep 300')" </dev/null >"$log" 2>&1 &
pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
check "VSS service ready (no daemon)" wait_for 120 '{"op":"status"}' '"VSS":"ready"'
ctl '{"op":"vss-freeze"}' >/dev/null
check "VSS freeze fails without the daemon" wait_for 90 '{"op":"vss-status"}' '"state":"failed"'
ctl '{"op":"turn-off"}' >/dev/null
wait $pid
finish
