#!/usr/bin/env bash
# Storage QoS with the stock guest (Hyper-V's Set-VMHardDiskDrive -MaximumIOPS and
# -MaximumBandwidth, at the worker: --disk PATH,iops=N,bw=N and the disk-limits request). The
# host sets a KVP key naming a phase; the guest's script runs dd with O_DIRECT for it and prints
# what it did and its uptime before and after. Phases: the guest's own rate with no limit (8 KiB
# reads), then a limit a third of that (at most 500 IOPS) for 8 KiB reads, 8 KiB writes and
# 64 KiB reads (8 normalized operations each), a byte rate for 1 MiB reads, and the limits
# lifted. Each limited rate must be within 5 % of its limit.
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
for _ in $(seq 120); do grep -q '"KeyValuePairExchange":"ready"' <<<"$(ctl '{"op":"status"}')" && break; sleep 1; done
check "status shows the command line's limits" grep -q '"max_iops":0,"max_bandwidth":1099511627776' <<<"$(ctl '{"op":"status"}')"
check "disk-limits refuses a bad request" grep -q '"ok":false' <<<"$(ctl '{"op":"disk-limits","lun":0,"max_iops":-1}')"
check "...and a LUN the VM lacks" grep -q '"ok":false.*no LUN 3' <<<"$(ctl '{"op":"disk-limits","lun":3,"max_iops":5}')"
check "...and more than 1e9 IOPS" grep -q '"ok":false.*at most' <<<"$(ctl '{"op":"disk-limits","lun":0,"max_iops":1000000001}')"
check "the limits are lifted" grep -q '"ok":true' <<<"$(limits 0 0)"

base=$(phase 1 read 1500 8k)
echo "FIGURES unlimited: $base IOPS (8 KiB reads, O_DIRECT, one at a time)"
if [ "${base:-0}" -lt 150 ]; then
  echo "the guest reads only $base IOPS here: too slow to measure a limit below it"
  fails=$((fails + 1)); finish
fi
lim=$(( base / 3 > 500 ? 500 : base / 3 / 10 * 10 ))
echo "limit: $lim IOPS"
check "-MaximumIOPS $lim: set live" grep -q '"ok":true' <<<"$(ctl "{\"op\":\"disk-limits\",\"lun\":0,\"max_iops\":$lim}")"
check "...status shows it" grep -q "\"max_iops\":$lim,\"max_bandwidth\":0" <<<"$(ctl '{"op":"status"}')"
r=$(phase 2 read $((lim * 8)) 8k)
echo "FIGURES 8 KiB reads at $lim IOPS: $r IOPS"
check "8 KiB reads: within 5 % of $lim IOPS ($r)" within 5 "$r" "$lim"
r=$(phase 3 write $((lim * 6)) 8k)
echo "FIGURES 8 KiB writes at $lim IOPS: $r IOPS"
check "8 KiB writes: within 5 % of $lim IOPS ($r)" within 5 "$r" "$lim"
r=$(phase 4 read "$lim" 64k)
echo "FIGURES 64 KiB reads at $lim normalized IOPS: $r requests/s ($((r * 8)) normalized)"
check "64 KiB reads count 8 each: within 5 % of $((lim / 8)) per second ($r)" within 5 "$r" "$((lim / 8))"

check "the IOPS limit is lifted" grep -q '"ok":true' <<<"$(limits 0 0)"
bw0=$(phase 5 read 24 1M bytes)
echo "FIGURES unlimited: $bw0 bytes/s (1 MiB reads)"
bw=$(( bw0 / 3 > 4194304 ? 4194304 : bw0 / 3 / 65536 * 65536 ))
check "-MaximumBandwidth $bw: set live" grep -q '"ok":true' <<<"$(limits 0 "$bw")"
r=$(phase 6 read $(( bw * 8 / 1048576 > 4 ? bw * 8 / 1048576 : 4 )) 1M bytes)
echo "FIGURES 1 MiB reads at $bw bytes/s: $r bytes/s"
check "1 MiB reads: within 5 % of $bw bytes/s ($r)" within 5 "$r" "$bw"

check "both limits lifted" grep -q '"ok":true' <<<"$(limits 0 0)"
r=$(phase 7 read $((lim * 4)) 8k)
echo "FIGURES 8 KiB reads, no limit again: $r IOPS"
check "...the guest reads at twice the old limit or more ($r)" [ "$r" -ge $((lim * 2)) ]
check "no dd failed in the guest" bash -c "! grep -a 'QOS-RESULT' '$log' | grep -qv ' rc=0 '"

check "graceful shutdown" grep -q '"ok":true' <<<"$(ctl '{"op":"shutdown"}')"
for _ in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 1; done
kill -0 $pid 2>/dev/null && kill $pid
wait $pid; rc=$?
check "the guest powered off (exit 0)" [ "$rc" = 0 ]
[ "$fails" = 0 ] || { echo "--- guest log"; tail -40 "$log"; echo "--- vmwp"; tail -30 "$out/vmwp.err"; }
finish
