#!/usr/bin/env bash
# netvsp with a tap backend, against the stock guest's hv_netvsc. Inside the test host (its own
# network namespace; nothing leaves it): a tap vtap0 with 192.168.222.1/24 and a busybox httpd;
# the guest sets eth0 192.168.222.2/24, checks its MAC is the configured one, pings the host,
# downloads a file and prints its sha256 (the host's large TCP segments reach it coalesced), and
# uploads 4 MB to a CGI that answers with its sha256 (its large sends go to the tap whole). Then the host takes the link down and up through the
# control socket ("nic-link") and the guest sees carrier go 0 and back to 1; the status reply's
# "nics" counters moved. The guest powers off (exit 0).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 600 "$0" "$@"
MAC=00:15:5d:12:34:56
sock=/tmp/viridian-net-$$.sock
ctl() { printf '%s\n' "$1" | socat -t 5 - "UNIX-CONNECT:$sock" 2>/dev/null; }
log=$out/netvsp.log
# wait_log SECONDS PATTERN: until the guest log has PATTERN (or the worker exited)
wait_log() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    grep -qs -- "$2" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { grep -qs -- "$2" "$log"; return; }
    sleep 0.5
  done
  return 1
}

# Host side of the link (the test host's own namespace only).
modprobe tun 2>/dev/null
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
ip tuntap add dev vtap0 mode tap || exit 1
ip addr add 192.168.222.1/24 dev vtap0
ip link set vtap0 up
www=$(mktemp -d)
head -c 300000 /dev/urandom >"$www/blob"
want=$(sha256sum "$www/blob" | cut -d' ' -f1)
# Uploads: a CGI that answers with the sha256 of what was posted (the guest's large sends).
mkdir -p "$www/cgi-bin"
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\nhead -c "$CONTENT_LENGTH" | sha256sum | cut -d" " -f1\n' >"$www/cgi-bin/sha"
chmod +x "$www/cgi-bin/sha"
/bin/busybox httpd -f -p 192.168.222.1:8080 -h "$www" &
httpd=$!

guest='n=""; for i in $(seq 100); do n=$(ls /sys/class/net | grep -v "^lo$" | head -1); [ -n "$n" ] && break; sleep 0.1; done
echo "NET-IF $n NET-MAC $(cat /sys/class/net/$n/address)"
ip addr add 192.168.222.2/24 dev $n; ip link set $n up
for i in $(seq 50); do [ "$(cat /sys/class/net/$n/operstate)" = up ] && break; sleep 0.1; done
ping -c 3 -W 3 192.168.222.1 && echo NET-PING-OK
wget -q -O /tmp/blob http://192.168.222.1:8080/blob && echo "NET-SHA $(sha256sum /tmp/blob | cut -d" " -f1)"
head -c 3000000 /dev/urandom | base64 >/tmp/up  # text: busybox wget posts a file as a C string
[ "$(wget -q -O - --post-file=/tmp/up http://192.168.222.1:8080/cgi-bin/sha)" = "$(sha256sum /tmp/up | cut -d" " -f1)" ] && echo NET-UPLOAD-OK
echo NET-READY
for i in $(seq 300); do [ "$(cat /sys/class/net/$n/carrier 2>/dev/null)" = 0 ] && { echo NET-CARRIER-DOWN; break; }; sleep 0.2; done
for i in $(seq 300); do [ "$(cat /sys/class/net/$n/carrier 2>/dev/null)" = 1 ] && { echo NET-CARRIER-UP; break; }; sleep 0.2; done
ping -c 2 -W 3 192.168.222.1 && echo NET-PING2-OK
echo NET-DONE
sleep 4
poweroff -f'
"$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --control "$sock" \
  --nic "tap=vtap0,mac=$MAC" \
  --cmdline "console=ttyS0 quiet viridian.daemons $(viridian_cmdline_arg "$guest")" </dev/null >"$log" 2>&1 &
pid=$!

check "guest has the configured MAC" wait_log 150 "NET-MAC $MAC"
check "guest pings the host" wait_log 60 NET-PING-OK
check "guest downloads the file intact (sha256)" wait_log 60 "NET-SHA $want"
check "guest uploads 4 MB intact (large sends handed to the host kernel whole)" wait_log 120 NET-UPLOAD-OK
wait_log 30 NET-READY
# KVP: hv_kvp_daemon reports the guest's addresses; the worker refreshes them every 10 s.
guest_ip_on_host() {
  local i
  for i in $(seq 40); do
    grep -q '"NetworkAddressIPv4":"[^"]*192\.168\.222\.2' <<<"$(printf '%s\n' '{"op":"guest-info"}' | socat -t 5 - "UNIX-CONNECT:$sock")" && return 0
    sleep 1
  done
  return 1
}
check "the guest's IP address shows on the host (KVP)" guest_ip_on_host
check "status lists the adapter with traffic" bash -c "ctl() { printf '%s\n' \"\$1\" | socat -t 5 - UNIX-CONNECT:$sock; }; ctl '{\"op\":\"status\"}' | tee $out/status.json | grep -qE '\"nics\":\[\{\"tap\":\"vtap0\".*\"rx_packets\":[1-9]'"
check "nic-link down accepted" bash -c "printf '%s\n' '{\"op\":\"nic-link\",\"up\":false}' | socat -t 5 - UNIX-CONNECT:$sock | grep -q '\"ok\":true'"
check "guest sees carrier off" wait_log 60 NET-CARRIER-DOWN
ctl '{"op":"nic-link","up":true}' >/dev/null
check "guest sees carrier back" wait_log 60 NET-CARRIER-UP
check "guest pings the host after link up" wait_log 30 NET-PING2-OK
wait_log 30 NET-DONE
ctl '{"op":"status"}' >"$out/status-end.json"
check "NVSP 6.1 negotiated, RNDIS up, no malformed packets, traffic both ways" \
  grep -qE '"nvsp_version":"6\.1","rndis_initialized":true,"tx_packets":[1-9][0-9]*,"tx_bytes":[0-9]+,"rx_packets":[1-9][0-9]*,"rx_bytes":[0-9]+,"tx_drops":[0-9]+,"rx_drops":[0-9]+,"bad_packets":0' "$out/status-end.json"
grep -o '"nics":.*' "$out/status-end.json" | sed 's/^/status: /'
for _ in $(seq 60); do kill -0 $pid 2>/dev/null || break; sleep 1; done
kill -0 $pid 2>/dev/null && kill $pid
wait $pid; rc=$?
check "guest powered off (exit 0)" [ "$rc" = 0 ]
kill $httpd 2>/dev/null
[ "$fails" = 0 ] || { echo "--- status"; cat "$out/status.json" "$out/status-end.json" 2>/dev/null; echo; echo "--- guest log"; cat "$log"; }
finish
