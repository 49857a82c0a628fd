#!/usr/bin/env bash
# Network benchmark, one test-host run, same guest kernel + initramfs, 2 vCPUs and 512 MiB per VM:
#   guest <-> host over a tap in the test host (the host runs `iperf3 -s`):
#     vmwp-tap            build/vmwp --nic tap=... (netvsp; hv_netvsc in the guest)
#     qemu-tap            qemu -netdev tap,vhost=off -device virtio-net-pci (virtio_net; offloads
#                         negotiated as QEMU and the tap allow: checksum, TSO, GSO)
#     qemu-tap-nooffload  the same with every virtio-net offload off (like-for-like with netvsp)
#     qemu-tap-vhost      vhost=on, when the test host has /dev/vhost-net (an extra row)
#   VM <-> VM (the first guest runs `iperf3 -s`, the second is the client):
#     vmwp-switch         two vmwp on one private build/vmswitch
#     qemu-bridge[-nooffload]  two QEMU (vhost=off) on taps in a Linux bridge
# Per configuration, in the (client) guest: ping -c 20 -i 0.2 (busybox), iperf3 -t SECS -O 1
# guest -> peer, then -R (peer -> guest). The guest has no iperf3: Debian's iperf3 + libiperf0 +
# their libraries are fetched (apt-get download, dpkg-deb -x; cached in
# ~/.cache/viridian/bench-net) and added as a second initramfs cpio layer together with the
# virtio modules; the test host runs the same extracted iperf3 (this machine's root is its root).
# Usage: bench/net/run.sh [SECONDS (default 5)] [KEEP_DIR (copy the logs there)]  figures: README.md
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. guest/lib.sh
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)

if [ "${1:-}" != --inner ]; then
  secs=${1:-5} keep=${2:-}
  [ -x "$B/vmwp" ] && [ -x "$B/vmswitch" ] || make -s || exit 1
  guest/build-image -q || exit 1
  G=$(viridian_guest_dir)
  kver=$(sed -n 's/^kernel=//p' "$G/manifest")
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT

  # iperf3 and the libraries it needs, extracted once per set of package versions.
  cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/viridian/bench-net
  pkgs="iperf3 libiperf0 libsctp1 libssl3"
  vers=$(apt-cache show --no-all-versions $pkgs 2>/dev/null | awk '/^Package: /{p=$2} /^Version: /{print p "=" $2}')
  [ "$(echo "$vers" | grep -c =)" = 4 ] || { echo "bench/net: apt knows not all of $pkgs (apt-get update?)" >&2; exit 1; }
  ipx=$cache/$(echo "$vers" | sha256sum | cut -c1-16)
  if [ ! -x "$ipx/usr/bin/iperf3" ]; then
    mkdir -p "$cache"
    rm -rf "$cache"/[0-9a-f]*[0-9a-f] "$cache"/dl.*  # older versions
    dl=$(mktemp -d "$cache/dl.XXXXXX")
    (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root $vers >/dev/null) ||
      { echo "bench/net: apt-get download $vers failed" >&2; rm -rf "$dl"; exit 1; }
    for f in "$dl"/*.deb; do dpkg-deb -x "$f" "$dl/root" || exit 1; done
    echo "$vers" > "$dl/root/versions"
    mv "$dl/root" "$ipx"; rm -rf "$dl"
  fi
  echo "iperf3: $(echo $vers)"

  # Second initramfs layer: iperf3 + the libraries the guest lacks (it has libc.so.6 and the
  # loader; libm comes from the guest's own libc6 package) + the virtio modules QEMU's guest needs.
  x=$out/extra
  mkdir -p "$x/bench" "$x/usr/bin" "$x/lib/x86_64-linux-gnu" "$out/deb"
  dpkg-deb -x "$(ls "$G"/debs/linux-image-*.deb | head -1)" "$out/deb"
  dpkg-deb -x "$(ls "$G"/debs/libc6_*.deb | head -1)" "$out/deb"
  for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
    f=$(find "$out/deb/lib/modules/$kver" -name "$m.ko*" | head -1)
    [ -n "$f" ] || { echo "bench/net: no $m in $kver" >&2; exit 1; }
    case "$f" in
      *.xz) xz -dc "$f" > "$x/bench/$m.ko" ;;
      *.zst) zstd -qdc "$f" > "$x/bench/$m.ko" ;;
      *) cp "$f" "$x/bench/$m.ko" ;;
    esac
  done
  cp "$ipx/usr/bin/iperf3" "$x/usr/bin/"
  queue=("$x/usr/bin/iperf3")
  declare -A seen=([libc.so.6]=1 [ld-linux-x86-64.so.2]=1)
  while [ ${#queue[@]} -gt 0 ]; do
    elf=${queue[0]}; queue=("${queue[@]:1}")
    for so in $(readelf -dW "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      [ -z "${seen[$so]:-}" ] || continue
      seen[$so]=1
      f=""
      for d in "$ipx/usr/lib/x86_64-linux-gnu" "$ipx/lib/x86_64-linux-gnu" "$out/deb/lib/x86_64-linux-gnu" "$out/deb/usr/lib/x86_64-linux-gnu"; do
        [ -e "$d/$so" ] && { f=$d/$so; break; }
      done
      [ -n "$f" ] || { echo "bench/net: no $so for the guest's iperf3" >&2; exit 1; }
      cp -L "$f" "$x/lib/x86_64-linux-gnu/$so"
      queue+=("$x/lib/x86_64-linux-gnu/$so")
    done
  done
  (cd "$x" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) > "$out/extra.cpio.gz"
  cat "$G/initramfs.cpio.gz" "$out/extra.cpio.gz" > "$out/initrd"
  rm -rf "$out/deb" "$x"

  # Contention: this machine's load and how many other test hosts (TCG QEMU) ran meanwhile.
  while :; do echo "$(cut -d' ' -f1 /proc/loadavg) $(( $(pgrep -fc -- '^[^ ]*qemu-system-x86_64 .*-accel tcg') - 1 ))"; sleep 10; done > "$out/load.txt" &
  sampler=$!
  start=$SECONDS
  tools/vmhost -m 3072 -t 1200 -o "$out" -- bash "$0" --inner "$out" "$secs" "$ipx"
  rc=$?
  kill $sampler
  echo "test-host run: $((SECONDS - start)) s wall, exit $rc"
  [ -z "$keep" ] || { mkdir -p "$keep" && cp "$out"/*.log "$out"/*.txt "$out"/*.json "$keep"/ 2>/dev/null; echo "logs: $keep"; }

  # ---- report ----
  # field NAME PREFIX ROLE: bitrate (Mbit/s) of iperf3's ROLE (sender|receiver) summary line
  field() { tr -d '\r' < "$out/$1.log" | awk -v p="$2" -v r="$3" '$1 == p && $NF == r { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) }' | tail -1; }
  retr() { tr -d '\r' < "$out/$1.log" | awk -v p="$2" '$1 == p && $NF == "sender" { for (i = 2; i <= NF; i++) if ($i == "Mbits/sec") print $(i + 1) }' | tail -1; }
  ping_f() { sed -n 's/\r$//; s/^PING round-trip min\/avg\/max = \([0-9.]*\)\/\([0-9.]*\)\/\([0-9.]*\) ms.*/\1 \2 \3/p' "$out/$1.log" | tail -1; }
  loss() { sed -n 's/\r$//; s/^PING .*received, \([0-9.]*%\) packet loss.*/\1/p' "$out/$1.log" | tail -1; }
  declare -A tx rx pmin pavg
  echo
  echo "== results (Mbit/s at the iperf3 receiver; Retr = sender's TCP retransmits; ping RTT in ms)"
  printf '%-20s %10s %6s %10s %6s %9s %9s %6s\n' config "g->peer" Retr "peer->g" Retr "ping min" "ping avg" loss
  for c in vmwp-tap qemu-tap qemu-tap-nooffload qemu-tap-vhost vmwp-switch qemu-bridge qemu-bridge-nooffload; do
    [ -f "$out/$c.log" ] || continue
    tx[$c]=$(field $c TX receiver) rx[$c]=$(field $c RX receiver)
    read -r "pmin[$c]" "pavg[$c]" _ <<< "$(ping_f $c)"
    printf '%-20s %10s %6s %10s %6s %9s %9s %6s\n' $c "${tx[$c]:--}" "$(retr $c TX)" "${rx[$c]:--}" "$(retr $c RX)" \
      "${pmin[$c]:--}" "${pavg[$c]:--}" "$(loss $c)"
  done
  ratio() { # ratio A B KEY: A/B for throughput; for latency (KEY=lat) B/A, so > 1 = A better
    awk -v a="$1" -v b="$2" -v k="$3" 'BEGIN { if (a == "" || b == "" || a + 0 == 0 || b + 0 == 0) print "-"; else printf "%.2f\n", (k == "lat" ? b / a : a / b) }'
  }
  echo
  echo "== vmwp / QEMU (throughput: vmwp/QEMU; ping: QEMU RTT / vmwp RTT; > 1 = vmwp better)"
  printf '%-32s %8s %8s %9s %9s\n' against "g->host" "host->g" "ping min" "ping avg"
  for q in qemu-tap qemu-tap-nooffload qemu-tap-vhost; do
    [ -n "${tx[$q]:-}${rx[$q]:-}" ] || continue
    printf '%-32s %8s %8s %9s %9s\n' "vmwp-tap / $q" "$(ratio "${tx[vmwp-tap]:-}" "${tx[$q]}" t)" "$(ratio "${rx[vmwp-tap]:-}" "${rx[$q]}" t)" \
      "$(ratio "${pmin[vmwp-tap]:-}" "${pmin[$q]:-}" lat)" "$(ratio "${pavg[vmwp-tap]:-}" "${pavg[$q]:-}" lat)"
  done
  for q in qemu-bridge qemu-bridge-nooffload; do
    [ -n "${tx[$q]:-}${rx[$q]:-}" ] || continue
    printf '%-32s %8s %8s %9s %9s\n' "vmwp-switch / $q" "$(ratio "${tx[vmwp-switch]:-}" "${tx[$q]}" t)" "$(ratio "${rx[vmwp-switch]:-}" "${rx[$q]}" t)" \
      "$(ratio "${pmin[vmwp-switch]:-}" "${pmin[$q]:-}" lat)" "$(ratio "${pavg[vmwp-switch]:-}" "${pavg[$q]:-}" lat)"
  done
  echo
  echo "== notes"
  for c in vmwp-tap qemu-tap qemu-tap-nooffload qemu-tap-vhost vmwp-switch qemu-bridge qemu-bridge-nooffload; do
    [ -f "$out/$c.log" ] && ! grep -q BENCH-DONE "$out/$c.log" &&
      echo "$c: the guest ended before BENCH-DONE (died or reset mid-test; the log's tail: $(tr -d '\r' < "$out/$c.log" | grep -v '^ *$' | tail -2 | tr '\n' '|'))"
    grep -h "attempt [0-9] failed" "$out/$c.log" 2>/dev/null | tr -d '\r' | sed "s/^/$c: /"
  done
  awk '{ n++; if ($1 > l) l = $1; if ($2 > o) o = $2; if ($2 > 0) b++ }
       END { printf "this machine during the run: load average max %s; other test hosts running in %d of %d samples (at most %d at once)\n", l, b, n, o }' "$out/load.txt"
  cat "$out/notes.txt" 2>/dev/null
  grep -h '^DRIVER\|^OFFLOAD' "$out"/*.txt 2>/dev/null
  for c in vmwp-tap vmwp-switch-client vmwp-switch-server; do
    [ -f "$out/$c.log" ] && sed -n "s/\r$//; s/.*\(netvsp 0: tx .*\)/$c: \1/p" "$out/$c.log"
  done
  [ -f "$out/switch-status.json" ] && echo "vmswitch: $(grep -o '"ports":.*' "$out/switch-status.json" | head -c 900)"
  exit $rc
fi

# ======== inside the test host ========
out=$2 secs=$3 ipx=$4
G=$(viridian_guest_dir)
initrd=$out/initrd
notes=$out/notes.txt
: > "$notes"
run=/tmp/bench-net
mkdir -p $run
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

modprobe tun 2>/dev/null
[ -e /dev/net/tun ] || { mkdir -p /dev/net; mknod /dev/net/tun c 10 200; }
modprobe bridge 2>/dev/null
vhost=no
modprobe vhost_net 2>/dev/null && [ -c /dev/vhost-net ] && vhost=yes
echo "test host: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB; vhost-net available: $vhost; $(qemu-system-x86_64 --version | head -1)" | tee -a "$notes"

# ---- guest scripts ----
# net_up IP: the one non-lo interface, addressed and up (sets $n)
net_up() {
  cat <<EOF
n=""; for i in \$(seq 150); do n=\$(ls /sys/class/net | grep -v '^lo\$' | head -1); [ -n "\$n" ] && break; sleep 0.1; done
ip addr add $1/24 dev \$n; ip link set \$n up
for i in \$(seq 100); do [ "\$(cat /sys/class/net/\$n/operstate)" = up ] && break; sleep 0.1; done
echo "BENCH-IF \$n driver=\$(basename \$(readlink -f /sys/class/net/\$n/device/driver)) mtu=\$(cat /sys/class/net/\$n/mtu) operstate=\$(cat /sys/class/net/\$n/operstate)"
EOF
}
# client PEER: ping, then iperf3 both ways (retried if the server was not there yet)
client() {
  cat <<EOF
ok=0; for i in \$(seq 60); do ping -c 1 -W 1 $1 >/dev/null 2>&1 && { ok=1; break; }; sleep 0.5; done
echo "BENCH-REACH \$ok"
ping -q -c 20 -i 0.2 $1 2>&1 | sed 's/^/PING /'
perf() { # PREFIX ARGS...
  p=\$1; shift
  for try in 1 2 3; do
    timeout $((secs * 4 + 30)) iperf3 -4 -c $1 -t $secs -O 1 -f m "\$@" >/tmp/iperf.out 2>&1
    sed "s/^/\$p /" /tmp/iperf.out
    grep -q receiver /tmp/iperf.out && break
    echo "\$p attempt \$try failed"
    sleep 2
  done
}
perf TX
perf RX -R
grep "\$n:" /proc/net/dev | sed 's/^ */DEV /'
echo BENCH-DONE
sleep 2
EOF
}
virtio_load='for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do insmod /bench/$m.ko 2>/dev/null; done'
hv_mods=viridian.mods=hv_vmbus,hv_utils,hv_netvsc
nooffload=csum=off,guest_csum=off,gso=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off

# vmwp_cmd NIC SCRIPT [extra vmwp args] / qemu_cmd NETDEV DEVICE SCRIPT: the VM's command line
# in cmd[] (run as one simple command, so that $! is its process)
vmwp_cmd() {
  local nic=$1 script=$2
  shift 2
  cmd=(timeout 300 "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$initrd" --memory 512M --cpus 2 --nic "$nic" "$@"
       --cmdline "console=ttyS0 quiet $hv_mods $(viridian_cmdline_arg "$script")")
}
qemu_cmd() {
  cmd=(timeout 300 qemu-system-x86_64 -enable-kvm -cpu host -m 512 -smp 2 -nodefaults -no-user-config -display none
       -serial stdio -no-reboot -kernel "$G/vmlinuz" -initrd "$initrd" -netdev "$1" -device "$2"
       -append "console=ttyS0 quiet panic=-1 viridian.nomods $(viridian_cmdline_arg "$virtio_load
$3")")
}
# wait_log SECONDS LOG PATTERN
wait_log() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do grep -qs -- "$3" "$2" && return 0; sleep 0.5; done
  return 1
}
# After the guest's interface is up: which driver, and what the host side of the tap offers.
snap() { # NAME TAP
  wait_log 120 "$out/$1.log" BENCH-IF || return
  echo "DRIVER $1: $(sed -n 's/\r$//; s/.*BENCH-IF //p' "$out/$1.log" | head -1)" >> "$out/$1.txt"
  echo "OFFLOAD $1: host $2: $(ethtool -k "$2" 2>/dev/null | grep -E '^(tx-checksumming|tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):' | tr -s ' \n' ' ')" >> "$out/$1.txt"
}

# ---- guest <-> host over a tap ----
host_ip=192.168.77.1 guest_ip=192.168.77.2
tap_run() { # NAME vmwp|qemu [NETDEV-OPTS DEVICE-OPTS]
  local name=$1 t0=$SECONDS
  ip tuntap add dev bnt0 mode tap || return
  ip addr add $host_ip/24 dev bnt0
  ip link set bnt0 up
  # A fresh server per configuration: iperf3 3.12's server stays "busy" after a client whose VM
  # died mid-test, which would spoil the next configurations.
  LD_LIBRARY_PATH=$ipx/usr/lib/x86_64-linux-gnu "$ipx/usr/bin/iperf3" -4 -s >"$out/iperf3-server-$name.log" 2>&1 &
  local ips=$!
  pids+=("$ips")
  local script
  script="$(net_up $guest_ip)
$(client $host_ip)"
  echo "== $name"
  snap "$name" bnt0 &
  local s=$!
  if [ "$2" = vmwp ]; then
    vmwp_cmd "tap=bnt0,mac=00:15:5d:77:00:02" "$script"
  else
    qemu_cmd "tap,id=n0,ifname=bnt0,script=no,downscript=no,$3" "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:02${4:+,$4}" "$script"
  fi
  "${cmd[@]}" </dev/null >"$out/$name.log" 2>&1
  echo "   exit $?, $((SECONDS - t0)) s"
  kill $s $ips 2>/dev/null; wait $s $ips 2>/dev/null
  ip -s link show bnt0 | sed "s/^/TAP $name: /" >> "$out/$name.txt"
  ip link del bnt0
}
tap_run vmwp-tap vmwp
tap_run qemu-tap qemu vhost=off
tap_run qemu-tap-nooffload qemu vhost=off $nooffload
if [ $vhost = yes ]; then tap_run qemu-tap-vhost qemu vhost=on; fi

# ---- VM <-> VM ----
srv_ip=10.8.0.1 cli_ip=10.8.0.2
server_script="iperf3 -4 -s >/dev/null 2>&1 &
sleep 1
$(net_up $srv_ip)
echo BENCH-SERVER-UP
sleep 900"
client_script="$(net_up $cli_ip)
$(client $srv_ip)"

echo "== vmwp-switch"
t0=$SECONDS
"$B/vmswitch" --name bench --type Private --socket $run/sw.sock --control $run/sw.ctl </dev/null >"$out/vmswitch.log" 2>&1 &
sw=$!; pids+=("$sw")
for _ in $(seq 50); do [ -S $run/sw.ctl ] && break; sleep 0.1; done
vmwp_cmd "switch=$run/sw.sock,mac=00:15:5d:78:00:01,name=server" "$server_script" --control $run/srv.ctl
"${cmd[@]}" </dev/null >"$out/vmwp-switch-server.log" 2>&1 &
srv=$!; pids+=("$srv")
vmwp_cmd "switch=$run/sw.sock,mac=00:15:5d:78:00:02,name=client" "$client_script"
"${cmd[@]}" </dev/null >"$out/vmwp-switch-client.log" 2>&1 &
cli=$!
wait_log 290 "$out/vmwp-switch-client.log" BENCH-DONE &&
  printf '%s\n' '{"op":"status"}' | socat -t 5 - UNIX-CONNECT:$run/sw.ctl > "$out/switch-status.json" 2>/dev/null
wait $cli
echo "   exit $?, $((SECONDS - t0)) s"
printf '%s\n' '{"op":"turn-off"}' | socat -t 5 - UNIX-CONNECT:$run/srv.ctl >/dev/null 2>&1
for _ in $(seq 20); do kill -0 $srv 2>/dev/null || break; sleep 0.5; done
kill $srv 2>/dev/null; wait $srv 2>/dev/null
kill $sw 2>/dev/null; wait $sw 2>/dev/null
cp "$out/vmwp-switch-client.log" "$out/vmwp-switch.log"

bridge_run() { # NAME [DEVICE-OPTS]
  local name=$1 t0=$SECONDS
  echo "== $name"
  ip link add br-bn type bridge && ip link set br-bn up || return
  for t in bnq1 bnq2; do ip tuntap add dev $t mode tap; ip link set $t master br-bn; ip link set $t up; done
  qemu_cmd "tap,id=n0,ifname=bnq1,script=no,downscript=no,vhost=off" "virtio-net-pci,netdev=n0,mac=52:54:00:78:00:01${2:+,$2}" "$server_script"
  "${cmd[@]}" </dev/null >"$out/$name-server.log" 2>&1 &
  local srv=$!
  pids+=("$srv")
  snap "$name" bnq2 &
  local s=$!
  qemu_cmd "tap,id=n0,ifname=bnq2,script=no,downscript=no,vhost=off" "virtio-net-pci,netdev=n0,mac=52:54:00:78:00:02${2:+,$2}" "$client_script"
  "${cmd[@]}" </dev/null >"$out/$name.log" 2>&1
  echo "   exit $?, $((SECONDS - t0)) s"
  kill $s 2>/dev/null; wait $s 2>/dev/null
  kill $srv 2>/dev/null; wait $srv 2>/dev/null
  for t in bnq1 bnq2; do ip link del $t; done
  ip link del br-bn
}
bridge_run qemu-bridge
bridge_run qemu-bridge-nooffload $nooffload
exit 0
