#!/usr/bin/env bash
# Saved-state benchmark, one test-host run, same guest (kernel + initramfs), same memory size:
#   viridian   vmwp control request "save" (VM paused), then vmwp --restore
#   qemu-mig   QEMU stop + migrate "exec:cat > FILE", then -incoming "exec:cat FILE"
#   qemu-snap  QEMU savevm / loadvm on a qcow2 disk
# for each memory size, after the guest filled FILL MiB of its RAM with random bytes (a full
# page cache at its least compressible). Times are wall clock as the caller sees them; the
# worker's own figures (save_ms, restore ms) are printed beside them.
# Usage: bench/savestate/run.sh [MEM:FILL ...]   (default "512:300 2048:1200"; figures: README.md)
set -uo pipefail
cd "$(dirname "$0")/../.."
. guest/lib.sh
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)

if [ "${1:-}" != --inner ]; then
  sizes=${*:-512:300 2048:1200}
  guest/build-image -q || exit 1
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
  tools/vmhost -m 6144 -t 3000 -o "$out" -- bash "$0" --inner "$out" "$sizes"
  rc=$?
  cat "$out/results.txt" 2>/dev/null
  exit $rc
fi

out=$2 sizes=$3
G=$(viridian_guest_dir)
work=/tmp/savebench
mkdir -p $work
ms() { date +%s%3N; }
ctl() { printf '%s\n' "$2" | socat -t 600 - "UNIX-CONNECT:$1" 2>/dev/null; }
hmp() { printf '%s\n' "$2" | socat -t 600 - "UNIX-CONNECT:$1" 2>/dev/null | tr -d '\r'; }
wait_log() { local i; for i in $(seq $(( $2 * 2 ))); do grep -qa "$3" "$1" && return 0; sleep 0.5; done; return 1; }
res() { echo "$*" | tee -a "$out/results.txt"; }
res "test host: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB; $(qemu-system-x86_64 --version | head -1)"
res "| guest RAM | filled | VMM | save | restore | file | notes |"
res "|---|---|---|---|---|---|---|"

for size in $sizes; do
  mem=${size%%:*} fill=${size##*:}
  script="head -c ${fill}M /dev/urandom >/fill && echo BENCH-FILLED; sleep 100000"
  append="console=ttyS0 quiet $(viridian_cmdline_arg "$script")"

  # Viridian
  sock=$work/vm.sock log=$work/vm.log state=$work/vm.vmrs
  rm -f $sock $log $state
  "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory ${mem}M --cpus 2 --control $sock \
    --serial file:$log --cmdline "$append" </dev/null 2>$work/vmwp1.err &
  pid=$!
  if wait_log $log 900 BENCH-FILLED; then
    sleep 2
    t0=$(ms); reply=$(ctl $sock "{\"op\":\"save\",\"path\":\"$state\"}"); t1=$(ms)
    ctl $sock '{"op":"turn-off"}' >/dev/null; wait $pid
    save_ms=$(sed -n 's/.*"save_ms":\([0-9]*\).*/\1/p' <<<"$reply")
    t2=$(ms)
    "$B/vmwp" --restore $state --memory ${mem}M --cpus 2 --control $sock --serial file:$log </dev/null 2>$work/vmwp2.err &
    pid=$!
    until ctl $sock '{"op":"status"}' | grep -q '"ok":true'; do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
    t3=$(ms)
    inner=$(sed -n 's/.*restored from .* in \([0-9]*\) ms/\1/p' $work/vmwp2.err)
    ctl $sock '{"op":"turn-off"}' >/dev/null; wait $pid
    res "| $mem MiB | $fill MiB | Viridian | $((t1 - t0)) ms | $((t3 - t2)) ms | $(( $(stat -c %s $state) >> 20 )) MiB | worker: save ${save_ms} ms, restore ${inner} ms (exec to control socket) |"
  else
    res "| $mem MiB | $fill MiB | Viridian | failed: the guest did not fill its RAM | | | |"; kill $pid; wait $pid
  fi
  rm -f $state

  # QEMU, stopped and migrated to a file
  mon=$work/qemu.mon mig=$work/qemu.mig
  rm -f $mon $mig $log
  qemu=(qemu-system-x86_64 -enable-kvm -cpu host -m $mem -smp 2 -nodefaults -no-user-config -display none
        -serial file:$log -kernel "$G/vmlinuz" -initrd "$G/initramfs.cpio.gz" -monitor unix:$mon,server,nowait)
  "${qemu[@]}" -append "$append" </dev/null >$work/qemu1.err 2>&1 &
  pid=$!
  if wait_log $log 900 BENCH-FILLED; then
    sleep 2
    t0=$(ms); hmp $mon stop >/dev/null; hmp $mon "migrate \"exec:cat > $mig\"" >/dev/null
    until hmp $mon "info migrate" | grep -q 'Migration status: completed'; do
      hmp $mon "info migrate" | grep -q 'Migration status: failed' && break; sleep 0.05; done
    t1=$(ms)
    hmp $mon quit >/dev/null; wait $pid
    t2=$(ms)
    "${qemu[@]}" -append "$append" -incoming "exec:cat $mig" </dev/null >$work/qemu2.err 2>&1 &
    pid=$!
    until hmp $mon "info status" | grep -qE 'VM status: (paused|running)$|VM status: paused \((postmigrate|prelaunch)\)'; do
      kill -0 $pid 2>/dev/null || break; sleep 0.05; done
    t3=$(ms)
    hmp $mon quit >/dev/null; wait $pid
    res "| $mem MiB | $fill MiB | QEMU migrate to file | $((t1 - t0)) ms | $((t3 - t2)) ms | $(( $(stat -c %s $mig) >> 20 )) MiB | stop; migrate exec:cat; -incoming exec:cat |"
  else
    res "| $mem MiB | $fill MiB | QEMU migrate to file | failed: the guest did not fill its RAM | | | |"; kill $pid; wait $pid
  fi
  rm -f $mig

  # QEMU savevm / loadvm into a qcow2 image
  disk=$work/snap.qcow2
  rm -f $disk $log
  qemu-img create -q -f qcow2 $disk 64M
  "${qemu[@]}" -append "$append" -drive file=$disk,if=virtio,format=qcow2 </dev/null >$work/qemu3.err 2>&1 &
  pid=$!
  if wait_log $log 900 BENCH-FILLED; then
    sleep 2
    t0=$(ms); hmp $mon "savevm bench" >/dev/null; t1=$(ms)
    t2=$(ms); hmp $mon "loadvm bench" >/dev/null; t3=$(ms)
    hmp $mon quit >/dev/null; wait $pid
    res "| $mem MiB | $fill MiB | QEMU savevm/loadvm qcow2 | $((t1 - t0)) ms | $((t3 - t2)) ms | $(( $(stat -c %s $disk) >> 20 )) MiB | loadvm into the running QEMU (no process start) |"
  else
    res "| $mem MiB | $fill MiB | QEMU savevm/loadvm qcow2 | failed: the guest did not fill its RAM | | | |"; kill $pid; wait $pid
  fi
  rm -f $disk
done
