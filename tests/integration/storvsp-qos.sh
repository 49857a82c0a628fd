#!/usr/bin/env bash
# Storage QoS with the stock guest (Hyper-V's Set-VMHardDiskDrive -MaximumIOPS and
# -MaximumBandwidth, at the worker: --disk PATH,iops=N,bw=N and the disk-limits request). The
# host sets a KVP key naming a phase; the guest's script runs dd with O_DIRECT for it and prints
# what it did and its uptime before and after. For 8 KiB reads, 8 KiB writes, 64 KiB reads (8
# normalized operations each) and 1 MiB reads (a byte rate): the guest's own rate with no limit,
# then a limit a third of that (8 KiB: at most 500 IOPS), set live, which the rate must meet
# within 5 % while storvsp holds requests back; then, lifted, none is held back any more.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 600 "$0" "$@"

ctl_sock=/tmp/viridian-qos-$$.sock
log=$out/qos.log
disk=$out/data.vhdx
ctl() { printf '%s\n' "$1" | socat -t 30 - "UNIX-CONNECT:$ctl_sock" 2>/dev/null; }
wait_log() { # wait_log SECONDS PATTERN
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    grep -a -- "$2" "$log" >/dev/null && return 0
    sleep 0.3
  done
  return 1
}
limits() { ctl "{\"op\":\"disk-limits\",\"lun\":0,\"max_iops\":$1,\"max_bandwidth\":$2}"; }
# phase N KIND COUNT BS: the guest runs it; prints its rate (operations, or bytes, per second)
phase() {
  ctl "{\"op\":\"kvp-set\",\"key\":\"QosPhase\",\"value\":\"$1:$2:$3:$4\"}" >/dev/null
  wait_log 120 "QOS-RESULT phase=$1 " || { echo "phase $1: no result" >&2; echo 0; return 1; }
  local line; line=$(grep -a "QOS-RESULT phase=$1 " "$log" | tr -d '\r' | tail -1)
  echo "$line" >&2
  awk -v c="$3" -v what="${5:-ops}" -v bs="$4" '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    t = f["t1"] - f["t0"]; if (t <= 0) { print 0; exit }
    b = bs; sub(/k$/, "", b); if (b != bs) b *= 1024; else { sub(/M$/, "", b); b *= 1048576 }
    printf "%d\n", (what == "bytes" ? c * b : c) / t }' <<<"$line"
}
# within PCT RATE LIMIT
within() { awk -v p="$1" -v r="$2" -v l="$3" 'BEGIN { d = r - l; if (d < 0) d = -d; exit !(l > 0 && d * 100 <= p * l) }'; }

"$B/hv" New-VHD -Path "$disk" -SizeBytes 64MB -Dynamic >/dev/null || exit 1
guest='for i in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done
dd if=/dev/zero of=/dev/sda bs=1M count=32 oflag=direct 2>/dev/null; echo QOS-FILLED
last=""
while :; do
  p=$(tr -s "\0" "\n" </var/lib/hyperv/.kvp_pool_0 2>/dev/null | grep -a -A1 "^QosPhase$" | tail -1)
  if [ -z "$p" ] || [ "$p" = "$last" ]; then sleep 0.2; continue; fi
  last=$p
  set -- $(echo "$p" | tr ":" " ")
  t0=$(cut -d" " -f1 /proc/uptime)
  if [ "$2" = read ]; then dd if=/dev/sda of=/dev/null bs=$4 count=$3 iflag=direct 2>/dev/null; rc=$?
  else dd if=/dev/zero of=/dev/sda bs=$4 count=$3 seek=4096 oflag=direct 2>/dev/null; rc=$?; fi
  t1=$(cut -d" " -f1 /proc/uptime)
  echo "QOS-RESULT phase=$1 kind=$2 count=$3 bs=$4 rc=$rc t0=$t0 t1=$t1"
done'
# The flags on the command line: bw at its largest (no practical limit), shown by status.
"$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 256M --cpus 1 \
  --cmdline "console=ttyS0 quiet viridian.daemons $(viridian_cmdline_arg "$guest")" \
  --disk "$disk,bw=1099511627776" --serial "file:$log" --control "$ctl_sock" </dev/null 2>"$out/vmwp.err" &
pid=$!
for _ in $(seq 100); do [ -S "$ctl_sock" ] && break; sleep 0.1; done
check "the guest fills its disk" wait_log 300 QOS-FILLED
exit_if_no_init "$log"
[ "$fails" = 0 ] || { tail -n 40 "$log"; finish; } # nothing after it can pass (in_vmhost reads $log)
for _ in $(seq 120); do grep -q '"KeyValuePairExchange":"ready"' <<<"$(ctl '{"op":"status"}')" && break; sleep 1; done
check "status shows the command line's limits" grep -q '"max_iops":0,"max_bandwidth":1099511627776' <<<"$(ctl '{"op":"status"}')"
check "disk-limits refuses a bad request" grep -q '"ok":false' <<<"$(ctl '{"op":"disk-limits","lun":0,"max_iops":-1}')"
check "...and a LUN the VM lacks" grep -q '"ok":false.*no LUN 3' <<<"$(ctl '{"op":"disk-limits","lun":3,"max_iops":5}')"
check "...and more than 1e9 IOPS" grep -q '"ok":false.*at most' <<<"$(ctl '{"op":"disk-limits","lun":0,"max_iops":1000000001}')"

throttled() { grep -o '"throttled":[0-9]*' <<<"$(ctl '{"op":"status"}')" | cut -d: -f2; }
# Each limit is a third of what the guest does with none just before (8 KiB: at most 500 IOPS;
# bytes: at most 4 MiB/s),
# so that the machine's load, which moves the guest's own rate, does not decide the result.
n=0
# limited KIND BS WHAT LIMIT-KEY: the guest's rate with no limit (sets $base, printed), then with
# LIMIT-KEY (max_iops or max_bandwidth) at a third of it for 8 s (bytes: 12 s); sets $lim and $r
limited() {
  local kind=$1 bs=$2 what=$3 key=$4 probe per
  check "$kind $bs: no limit to start with" grep -q '"ok":true' <<<"$(limits 0 0)"
  case $bs in 8k) probe=600 ;; 64k) probe=100 ;; *) probe=12 ;; esac
  n=$((n + 1)); base=$(phase $n "$kind" $probe "$bs" "$what")
  echo "FIGURES $kind $bs, no limit: $base ${what/ops/requests}/s"
  per=1; [ "$bs" = 64k ] && [ "$key" = max_iops ] && per=8 # normalized: 8 operations each
  if [ "$key" = max_iops ]; then lim=$(( base * per / 3 )); [ $lim -gt 500 ] && lim=500; lim=$(( lim / 8 * 8 ))
  else lim=$(( base / 3 > 4194304 ? 4194304 : base / 3 / 65536 * 65536 )); fi # 12 s of it fits the 64 MiB disk
  if [ "$lim" -le 0 ]; then check "$kind $bs: the guest is fast enough to measure a limit ($base)" false; r=0; return; fi
  check "$kind $bs: $key $lim set live" grep -q '"ok":true' <<<"$(ctl "{\"op\":\"disk-limits\",\"lun\":0,\"$key\":$lim}")"
  local held=$(throttled) count
  if [ "$key" = max_iops ]; then count=$(( lim * 8 / per )); else count=$(( lim * 12 / 1048576 > 8 ? lim * 12 / 1048576 : 8 )); fi # 12 s: fewer, larger requests
  n=$((n + 1)); r=$(phase $n "$kind" $count "$bs" "$what")
  local want=$lim # in the rate's unit: requests (not normalized operations) or bytes per second
  [ "$key" = max_iops ] && want=$(( lim / per ))
  echo "FIGURES $kind $bs at $key $lim: $r ${what/ops/requests}/s (limit $want)"
  check "$kind $bs: within 5 % of $want/s ($r)" within 5 "$r" "$want"
  check "...requests were held back" [ "$(throttled)" -gt "$held" ]
}
limited read 8k ops max_iops
check "...status shows the limit while it is on" grep -q "\"max_iops\":$lim,\"max_bandwidth\":0" <<<"$(ctl '{"op":"status"}')"
limited write 8k ops max_iops
limited read 64k ops max_iops
limited read 1M bytes max_bandwidth
check "both limits lifted" grep -q '"ok":true' <<<"$(limits 0 0)"
held=$(throttled)
n=$((n + 1)); r=$(phase $n read 600 8k)
echo "FIGURES 8 KiB reads, no limit again: $r IOPS"
check "...none held back any more" [ "$(throttled)" = "$held" ]
check "no dd failed in the guest" bash -c "! grep -a 'QOS-RESULT' '$log' | grep -qv ' rc=0 '"

check "graceful shutdown" grep -q '"ok":true' <<<"$(ctl '{"op":"shutdown"}')"
for _ in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 1; done
kill -0 $pid 2>/dev/null && kill $pid
wait $pid; rc=$?
check "the guest powered off (exit 0)" [ "$rc" = 0 ]
[ "$fails" = 0 ] || { echo "--- guest log"; tail -40 "$log"; echo "--- vmwp"; tail -30 "$out/vmwp.err"; }
finish
