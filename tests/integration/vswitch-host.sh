#!/usr/bin/env bash
# Virtual switch, internal and external, in the test host, one stock guest with three adapters:
#  - eth on internal switch "int" (host adapter vs-int, 192.168.50.1, udhcpd + httpd there): the
#    guest takes an address by DHCP, pings the host, downloads a file intact (sha256); the host
#    pings the guest at its leased address; the guest uploads 2.6 MB (its large sends are cut
#    to MSS-sized frames by the switch for the host's tap);
#  - eth on the same switch in access VLAN 7: reaches the host's 802.1Q interface vs-int.7
#    (Linux's own VLAN code decodes our tags), and VLAN 0's DHCP/HTTP host is not on it;
#  - eth on external switch "ext" bridged to veth ext0, whose peer sits in netns "lan"
#    (10.9.0.1 + httpd): ping and a download through the packet socket.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 600 "$0" "$@"

run=/tmp/vswitch-host-$$
mkdir -p "$run/www" "$run/lanwww"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; ip netns del lan 2>/dev/null; }
trap cleanup EXIT
modprobe tun 2>/dev/null; modprobe 8021q 2>/dev/null; modprobe veth 2>/dev/null
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
jctl() { printf '%s\n' "$2" | socat -t 5 - "UNIX-CONNECT:$1" 2>/dev/null; }
wait_sock() { for _ in $(seq 50); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }

# Internal switch: vmswitch makes the host adapter (default name vs-int); the host addresses it.
"$B/vmswitch" --name int --type Internal --socket "$run/int.sock" --control "$run/int.ctl" </dev/null >"$out/switch-int.log" 2>&1 &
pids+=($!)
wait_sock "$run/int.ctl"
check "internal switch made the host adapter vs-int, up" bash -c "ip link show vs-int | grep -q 'UP'"
ip addr add 192.168.50.1/24 dev vs-int
ip link add link vs-int name vs-int.7 type vlan id 7 && ip addr add 192.168.57.1/24 dev vs-int.7 && ip link set vs-int.7 up
head -c 2000000 /dev/urandom >"$run/www/blob"
want=$(sha256sum "$run/www/blob" | cut -d' ' -f1)
mkdir -p "$run/www/cgi-bin"  # answers with the sha256 of what was posted
printf '#!/bin/sh\necho "Content-Type: text/plain"\necho\nhead -c "$CONTENT_LENGTH" | sha256sum | cut -d" " -f1\n' >"$run/www/cgi-bin/sha"
chmod +x "$run/www/cgi-bin/sha"
busybox httpd -f -p 192.168.50.1:8080 -h "$run/www" & pids+=($!)
printf 'interface vs-int\nstart 192.168.50.100\nend 192.168.50.110\noption subnet 255.255.255.0\nlease_file %s/leases\npidfile %s/udhcpd.pid\n' \
  "$run" "$run" >"$run/udhcpd.conf"
touch "$run/leases"
busybox udhcpd -f "$run/udhcpd.conf" >"$out/udhcpd.log" 2>&1 & pids+=($!)

# External switch: a veth pair; the far end is "the LAN" in its own namespace. The near end's
# peer must not hand the packet socket TSO super-frames (a real wire never carries them).
ip link add ext0 type veth peer name ext1
ip netns add lan
ip link set ext1 netns lan
ip netns exec lan ip addr add 10.9.0.1/24 dev ext1
ip netns exec lan ip link set ext1 up
ip netns exec lan ip link set lo up
ip netns exec lan ethtool -K ext1 tso off gso off >/dev/null 2>&1
head -c 300000 /dev/urandom >"$run/lanwww/file"
lanwant=$(sha256sum "$run/lanwww/file" | cut -d' ' -f1)
ip netns exec lan busybox httpd -f -p 10.9.0.1:8080 -h "$run/lanwww" & pids+=($!)
"$B/vmswitch" --name ext --type External --uplink ext0 --socket "$run/ext.sock" --control "$run/ext.ctl" </dev/null >"$out/switch-ext.log" 2>&1 &
pids+=($!)
wait_sock "$run/ext.ctl"
check "external switch took ext0 as its uplink" bash -c "printf '%s\n' '{\"op\":\"status\"}' | socat -t 5 - UNIX-CONNECT:$run/ext.ctl | grep -q '\"name\":\"ext0\",\"kind\":\"uplink\"'"

guest='ifof() { for d in /sys/class/net/*; do [ "$(cat $d/address)" = "$1" ] && echo ${d##*/}; done; }
for i in $(seq 150); do [ -n "$(ifof 00:15:5d:50:00:03)" ] && break; sleep 0.1; done
n1=$(ifof 00:15:5d:50:00:01); n2=$(ifof 00:15:5d:50:00:02); n3=$(ifof 00:15:5d:50:00:03)
echo "IFS $n1 $n2 $n3"
for n in $n1 $n2 $n3; do ip link set $n up; done
printf "#!/bin/sh\ncase \"\$1\" in bound|renew) ip addr add \$ip/\$mask dev \$interface ;; esac\n" >/tmp/dhcp.sh; chmod +x /tmp/dhcp.sh
udhcpc -i $n1 -n -q -t 10 -T 2 -s /tmp/dhcp.sh >/tmp/udhcpc.log 2>&1
echo "DHCP-ADDR $(ip -4 -o addr show dev $n1 | sed -n "s/.*inet \([0-9.]*\).*/\1/p")"
ping -c 3 -W 5 192.168.50.1 >/dev/null && echo INT-PING-OK
echo "INT-SHA $(wget -q -O - http://192.168.50.1:8080/blob | sha256sum | cut -d" " -f1)"
head -c 2000000 /dev/urandom | base64 >/tmp/up  # text: busybox wget posts a file as a C string
[ "$(wget -q -O - --post-file=/tmp/up http://192.168.50.1:8080/cgi-bin/sha)" = "$(sha256sum /tmp/up | cut -d" " -f1)" ] && echo INT-UPLOAD-OK
ip addr add 192.168.57.2/24 dev $n2
ping -c 3 -W 5 192.168.57.1 >/dev/null && echo VLAN-PING-OK
udhcpc -i $n2 -n -q -t 3 -T 1 -s /tmp/dhcp.sh >/dev/null 2>&1 && echo VLAN-LEAK || echo VLAN-SEPARATE
ip addr add 10.9.0.2/24 dev $n3
ping -c 3 -W 5 10.9.0.1 >/dev/null && echo EXT-PING-OK
echo "EXT-SHA $(wget -q -O - http://10.9.0.1:8080/file | sha256sum | cut -d" " -f1)"
echo GUEST-DONE
sleep 120'
"$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 384M --control "$run/g.ctl" \
  --nic "switch=$run/int.sock,mac=00:15:5d:50:00:01,name=g/0" \
  --nic "switch=$run/int.sock,mac=00:15:5d:50:00:02,vlan=7,name=g/1" \
  --nic "switch=$run/ext.sock,mac=00:15:5d:50:00:03,name=g/2" \
  --cmdline "console=ttyS0 quiet viridian.mods=hv_vmbus,hv_utils,hv_netvsc $(viridian_cmdline_arg "$guest")" \
  </dev/null >"$out/guest.log" 2>&1 &
gpid=$!
pids+=($gpid)
log=$out/guest.log
wait_log() { # SECONDS PATTERN
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do grep -qs -- "$2" "$log" && return 0; kill -0 $gpid 2>/dev/null || return 1; sleep 0.5; done
  return 1
}
check "guest has its three adapters" wait_log 180 "IFS eth[0-9] eth[0-9] eth[0-9]"
check "guest got an address from the host's DHCP server on the internal switch" wait_log 60 "DHCP-ADDR 192.168.50.1[01][0-9]*"
addr=$(sed -n 's/.*DHCP-ADDR \([0-9.]*\).*/\1/p' "$log" | head -1)
check "guest pings the host over the internal switch" wait_log 30 INT-PING-OK
check "host pings the guest at its leased address ${addr:-?}" busybox ping -c 2 -W 5 "${addr:-192.0.2.1}"
check "guest downloads 2 MB from the host intact (sha256)" wait_log 120 "INT-SHA $want"
check "guest uploads 2.6 MB to the host intact (its large sends cut to MSS by the switch)" wait_log 120 INT-UPLOAD-OK
check "VLAN 7 adapter reaches the host's 802.1Q interface" wait_log 30 VLAN-PING-OK
check "VLAN 7 adapter does not reach VLAN 0 (no DHCP answer there)" wait_log 30 VLAN-SEPARATE
check "guest pings the LAN through the external switch" wait_log 30 EXT-PING-OK
check "guest downloads from the LAN intact (sha256)" wait_log 60 "EXT-SHA $lanwant"
wait_log 30 GUEST-DONE
jctl "$run/int.ctl" '{"op":"status"}' >"$out/int-status.json"
jctl "$run/int.ctl" '{"op":"mac-table"}' >"$out/int-macs.json"
jctl "$run/g.ctl" '{"op":"status"}' >"$out/guest-status.json"
check "internal switch: host uplink and two adapters (one in VLAN 7), traffic, nothing malformed" \
  bash -c "grep -q '\"name\":\"vs-int\",\"kind\":\"uplink\"' $out/int-status.json &&
           grep -q '\"name\":\"g/1\",\"kind\":\"adapter\",\"mac\":\"00:15:5d:50:00:02\",\"vlan\":7' $out/int-status.json &&
           ! grep -q '\"in_malformed\":[1-9]' $out/int-status.json"
check "internal switch learned the host adapter's MAC" grep -q '"pinned":false' "$out/int-macs.json"
check "three adapters connected, no malformed NVSP/RNDIS" \
  bash -c "[ \$(grep -o '\"connected\":true' $out/guest-status.json | wc -l) = 3 ] && [ \$(grep -o '\"bad_packets\":0' $out/guest-status.json | wc -l) = 3 ]"
jctl "$run/g.ctl" '{"op":"turn-off"}' >/dev/null
wait $gpid
jctl "$run/int.ctl" '{"op":"stop"}' >/dev/null
for _ in $(seq 30); do ip link show vs-int >/dev/null 2>&1 || break; sleep 0.1; done
check "stopping the internal switch removes its host adapter" bash -c "! ip link show vs-int >/dev/null 2>&1"
[ "$fails" = 0 ] || { for f in "$out"/*.log "$out"/*.json; do echo "--- $f"; tail -40 "$f"; done; }
finish
