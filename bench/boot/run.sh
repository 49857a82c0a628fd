#!/usr/bin/env bash
# Boot benchmark: the same kernel + initrd + RAM + vCPUs booted by vmwp and by
# qemu-system-x86_64 -enable-kvm in one test-host run, ROUNDS times each, interleaved.
# Reports guest uptime at /init (the guest's own clock) and wall time from exec to exit
# (the guest powers off at once from /init). Then, directly on this machine, vmwp's time
# from exec to the first guest exit and its RSS beyond guest RAM, with QEMU's RSS for the
# same RAM size. Usage: bench/boot/run.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
. guest/lib.sh
rounds=${1:-5}
B=${VIRIDIAN_BUILD:-build}  # the build to measure

if [ "${INNER:-}" = 1 ]; then
  G=$(viridian_guest_dir)
  args="console=ttyS0 quiet viridian.nomods $(viridian_cmdline_arg 'poweroff -f')"
  for r in $(seq "$rounds"); do
    for vmm in viridian qemu-pc qemu-microvm; do
      log=$OUT/$vmm-$r.log
      start=$(date +%s.%N)
      case $vmm in
        viridian) "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M --cpus 1 \
                    --cmdline "$args" </dev/null >"$log" 2>&1 ;;
        qemu-pc) qemu-system-x86_64 -enable-kvm -cpu host -M pc -m 512 -smp 1 -nographic -nodefaults \
                    -serial stdio -no-reboot -kernel "$G/vmlinuz" -initrd "$G/initramfs.cpio.gz" \
                    -append "$args" </dev/null >"$log" 2>&1 ;;
        qemu-microvm) qemu-system-x86_64 -enable-kvm -cpu host -M microvm -m 512 -smp 1 -nographic -nodefaults \
                    -serial stdio -no-reboot -kernel "$G/vmlinuz" -initrd "$G/initramfs.cpio.gz" \
                    -append "$args" </dev/null >"$log" 2>&1 ;;
      esac
      end=$(date +%s.%N)
      echo "$vmm $r init=$(viridian_mark_uptime "$log" init-start) wall=$(echo "$end - $start" | bc)" | tee -a "$OUT/results"
    done
  done
  exit 0
fi

[ -x "$B/vmwp" ] || make -s
guest/build-image -q
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
INNER=1 OUT=$out tools/vmhost -t 1800 -o "$out" -- env INNER=1 OUT="$out" VIRIDIAN_BUILD="$B" bash "$0" "$rounds"
echo
echo "== boot to init (median of $rounds, one test-host run; absolute times are inflated by emulation)"
for vmm in viridian qemu-pc qemu-microvm; do
  init=$(awk -v v=$vmm '$1==v {sub("init=","",$3); print $3}' "$out/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  wall=$(awk -v v=$vmm '$1==v {sub("wall=","",$4); print $4}' "$out/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-13s guest uptime at /init %6.2f s   exec -> exit %6.2f s\n' "$vmm" "$init" "$wall"
  eval "init_$(echo $vmm | tr - _)=$init wall_$(echo $vmm | tr - _)=$wall"
done
printf 'ratio viridian/qemu-pc: init %.2f, wall %.2f\n' "$(echo "$init_viridian / $init_qemu_pc" | bc -l)" "$(echo "$wall_viridian / $wall_qemu_pc" | bc -l)"
printf 'ratio viridian/qemu-microvm: init %.2f, wall %.2f\n' "$(echo "$init_viridian / $init_qemu_microvm" | bc -l)" "$(echo "$wall_viridian / $wall_qemu_microvm" | bc -l)"

echo
echo "== directly on this machine ($(tools/vmhost --detect | cut -d' ' -f1) host): start-up and footprint"
python3 bench/boot/tiny-bzimage.py "$out/tiny.bz"
python3 bench/boot/tiny-bzimage.py --halt "$out/halt.bz"
for i in $(seq 10); do "$B/bench/execstamp" "$B/vmwp" --kernel "$out/tiny.bz" --memory 512M 2>&1 | sed -n 's/.*first guest exit \([0-9.]*\) ms.*/\1/p'; done | sort -n > "$out/first"
echo "exec -> first guest exit: median $(sed -n 5p "$out/first") ms, min $(head -1 "$out/first") ms (10 runs)"
"$B/vmwp" --kernel "$out/halt.bz" --memory 512M </dev/null >/dev/null 2>&1 & pid=$!
sleep 1; rss_v=$(awk '/VmRSS/ {print $2}' /proc/$pid/status); kill $pid; wait $pid 2>/dev/null || true
qemu-system-x86_64 -enable-kvm -M pc -m 512 -nographic -nodefaults -S </dev/null >/dev/null 2>&1 & pid=$!
sleep 2; rss_q=$(awk '/VmRSS/ {print $2}' /proc/$pid/status); kill $pid; wait $pid 2>/dev/null || true
echo "RSS with a halted guest (guest touches <1 page): vmwp $((rss_v / 1024)) MiB, qemu -M pc (paused, not booted) $((rss_q / 1024)) MiB"
