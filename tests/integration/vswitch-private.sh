#!/usr/bin/env bash
# Virtual switch, private: stock guests' hv_netvsc on vmswitch ports, in the test host.
# Switch A holds g1 (10.7.0.1) and g2 (10.7.0.2); switch B holds g3 (10.7.0.3), same subnet.
#  - g1 pings g2 and downloads 100 MiB from g2's HTTP server: sha256 equal on both ends;
#  - g3 reaches neither (another switch), and A never hands it a frame;
#  - VLANs: g2 moved to access VLAN 5 is cut off from g1; g1 moved there too reaches it again;
#  - the switch process dies: both guests see carrier off; restarted, the workers plug back in
#    by themselves, carrier comes back and g1 pings g2 again.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 900 "$0" "$@"

run=/tmp/vswitch-$$   # sockets cannot live on the 9p output folder
mkdir -p "$run"
pids=()
cleanup() { for p in "${pids[@]}" $swA $swB; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
jctl() { printf '%s\n' "$2" | socat -t 5 - "UNIX-CONNECT:$1" 2>/dev/null; }
start_switch() { # NAME: a private switch with its log in $out
  "$B/vmswitch" --name "$1" --type Private --socket "$run/$1.sock" --control "$run/$1.ctl" </dev/null >>"$out/switch-$1.log" 2>&1 &
  local p=$!
  for _ in $(seq 50); do [ -S "$run/$1.ctl" ] && break; sleep 0.1; done
  echo $p
}
swA=$(start_switch A)
swB=$(start_switch B)
check "two private switches answer" bash -c "jctl() { printf '%s\n' \"\$2\" | socat -t 5 - UNIX-CONNECT:\$1; }; jctl $run/A.ctl '{\"op\":\"status\"}' | grep -q '\"type\":\"Private\"' && jctl $run/B.ctl '{\"op\":\"status\"}' | grep -q '\"ports\":\[\]'"

# Guest side: the adapter with our MAC, its address, then the test's own steps.
prologue() { # MAC IP
  cat <<EOF
n=""; for i in \$(seq 150); do for d in /sys/class/net/*; do [ "\$(cat \$d/address)" = $1 ] && n=\${d##*/}; done; [ -n "\$n" ] && break; sleep 0.1; done
echo "NET-IF \$n"
ip addr add $2/24 dev \$n; ip link set \$n up
for i in \$(seq 100); do [ "\$(cat /sys/class/net/\$n/operstate)" = up ] && break; sleep 0.1; done
echo NET-UP
EOF
}
g1='ping -c 3 -W 5 10.7.0.2 >/dev/null && echo PEER-PING-OK
for i in $(seq 300); do wget -q -O /dev/null http://10.7.0.2:8080/ready 2>/dev/null && break; sleep 1; done
echo "GOT-SHA $(wget -q -O - http://10.7.0.2:8080/blob | sha256sum | cut -d" " -f1)"
ping -c 3 -W 2 10.7.0.3 >/dev/null && echo OTHER-SWITCH-REACHED || echo OTHER-SWITCH-UNREACHABLE
echo PHASE1-DONE
for i in $(seq 240); do ping -c 1 -W 1 10.7.0.2 >/dev/null || { echo VLAN-SPLIT; break; }; sleep 0.5; done
for i in $(seq 120); do ping -c 1 -W 1 10.7.0.2 >/dev/null && { echo VLAN-JOINED; break; }; done
for i in $(seq 600); do [ "$(cat /sys/class/net/$n/carrier 2>/dev/null)" = 0 ] && { echo CARRIER-DOWN; break; }; sleep 0.2; done
for i in $(seq 600); do [ "$(cat /sys/class/net/$n/carrier 2>/dev/null)" = 1 ] && { echo CARRIER-UP; break; }; sleep 0.2; done
for i in $(seq 30); do ping -c 1 -W 2 10.7.0.2 >/dev/null && { echo PING-AFTER-RESTART-OK; break; }; done
sleep 600'
g2='mkdir -p /tmp/www && head -c 104857600 /dev/urandom >/tmp/www/blob && echo "BLOB-SHA $(sha256sum /tmp/www/blob | cut -d" " -f1)"
echo ok >/tmp/www/ready
busybox httpd -p 8080 -h /tmp/www && echo HTTPD-UP
sleep 900'
g3='ping -c 5 -W 2 10.7.0.1 >/dev/null && echo REACHED-OTHER-SWITCH || echo ISOLATED
sleep 900'

boot() { # NAME MAC SWITCH IP SCRIPT
  "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 384M --control "$run/$1.ctl" \
    --nic "switch=$run/$3.sock,mac=$2,name=$1/0" \
    --cmdline "console=ttyS0 quiet viridian.mods=hv_vmbus,hv_utils,hv_netvsc $(viridian_cmdline_arg "$(prologue "$2" "$4")
$5")" </dev/null >"$out/$1.log" 2>&1 &
  pids+=($!)
}
boot g1 00:15:5d:07:00:01 A 10.7.0.1 "$g1"
boot g2 00:15:5d:07:00:02 A 10.7.0.2 "$g2"
boot g3 00:15:5d:07:00:03 B 10.7.0.3 "$g3"

wait_log() { # SECONDS LOG PATTERN
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do grep -qs -- "$3" "$2" && return 0; sleep 0.5; done
  return 1
}
check "g1 has its link up on switch A" wait_log 180 "$out/g1.log" NET-UP
check "g1 pings g2 through switch A" wait_log 120 "$out/g1.log" PEER-PING-OK
check "g2 made its 100 MiB file" wait_log 300 "$out/g2.log" BLOB-SHA
want=$(sed -n 's/.*BLOB-SHA \([0-9a-f]*\).*/\1/p' "$out/g2.log" | head -1)
check "g1 downloaded 100 MiB from g2 intact (sha256 ${want:0:16}...)" wait_log 400 "$out/g1.log" "GOT-SHA ${want:-none}"
check "g3 on switch B cannot reach g1" wait_log 60 "$out/g3.log" ISOLATED
check "g1 cannot reach g3 on switch B" wait_log 60 "$out/g1.log" OTHER-SWITCH-UNREACHABLE
jctl "$run/A.ctl" '{"op":"status"}' >"$out/A-status.json"
jctl "$run/g3.ctl" '{"op":"status"}' >"$out/g3-status.json"
check "switch A: two adapter ports, 100 MiB went from g2's port to g1's" \
  grep -qE '"name":"g1/0","kind":"adapter","mac":"00:15:5d:07:00:01","vlan":0,"mac_spoofing":false,"in_packets":[0-9]+,"in_bytes":[0-9]+,"out_packets":[0-9]+,"out_bytes":1[0-9]{8}' "$out/A-status.json"
check "switch B never saw switch A's traffic (g3 received nothing but its own kind)" \
  grep -qE '"rx_packets":0,' "$out/g3-status.json"

# VLANs: g2 to access VLAN 5 (it re-plugs with the new VLAN), then g1 too.
# g1 pings g2 twice a second for up to 2 min to see the split (by time, not by count: an
# answered ping returns at once, and a quiet machine used up 120 of them before the move).
wait_log 30 "$out/g1.log" PHASE1-DONE
check "nic-connect moves g2 to VLAN 5" bash -c "printf '%s\n' '{\"op\":\"nic-connect\",\"nic\":0,\"switch\":\"$run/A.sock\",\"vlan\":5}' | socat -t 5 - UNIX-CONNECT:$run/g2.ctl | grep -q '\"ok\":true'"
check "g1 (VLAN 0) is cut off from g2 (VLAN 5)" wait_log 150 "$out/g1.log" VLAN-SPLIT
jctl "$run/g1.ctl" "{\"op\":\"nic-connect\",\"nic\":0,\"switch\":\"$run/A.sock\",\"vlan\":5}" >/dev/null
check "g1 moved to VLAN 5 reaches g2 again" wait_log 150 "$out/g1.log" VLAN-JOINED
check "switch A shows both ports in VLAN 5" bash -c "printf '%s\n' '{\"op\":\"status\"}' | socat -t 5 - UNIX-CONNECT:$run/A.ctl | tee $out/A-vlan.json | grep -q '\"name\":\"g1/0\",\"kind\":\"adapter\",\"mac\":\"00:15:5d:07:00:01\",\"vlan\":5' && grep -q '\"name\":\"g2/0\",\"kind\":\"adapter\",\"mac\":\"00:15:5d:07:00:02\",\"vlan\":5' $out/A-vlan.json"

# The switch process goes away and comes back.
kill "$swA"; wait "$swA" 2>/dev/null
check "g1 sees carrier off when its switch dies" wait_log 150 "$out/g1.log" CARRIER-DOWN
check "the worker reports the adapter unplugged" bash -c "printf '%s\n' '{\"op\":\"status\"}' | socat -t 5 - UNIX-CONNECT:$run/g1.ctl | grep -q '\"connected\":false'"
swA=$(start_switch A)
check "g1 sees carrier back when the switch restarts" wait_log 150 "$out/g1.log" CARRIER-UP
check "g1 pings g2 after the restart (both re-plugged, VLAN kept)" wait_log 90 "$out/g1.log" PING-AFTER-RESTART-OK

for g in g1 g2 g3; do jctl "$run/$g.ctl" '{"op":"status"}' >"$out/$g-end.json"; done
check "no malformed NVSP/RNDIS from any guest" bash -c "! grep -L '\"bad_packets\":0' $out/g1-end.json $out/g2-end.json $out/g3-end.json | grep -q ."
for g in g1 g2 g3; do grep -o '"nics":.*' "$out/$g-end.json" | sed "s/^/$g: /"; done
for g in g1 g2 g3; do jctl "$run/$g.ctl" '{"op":"turn-off"}' >/dev/null; done
for p in "${pids[@]}"; do wait "$p"; done
[ "$fails" = 0 ] || { for f in "$out"/*.log; do echo "--- $f"; tail -40 "$f"; done; }
finish
