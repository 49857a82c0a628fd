#!/usr/bin/env bash
# Boots Debian's stock kernel in vmwp as a Hyper-V partition, with 1 and with 2 vCPUs:
# the guest must detect Hyper-V, pick the reference-TSC clocksource, bring up VMBus
# (INITIATE_CONTACT logged by the worker, version 5.x negotiated, integration-service
# channels offered), see all its CPUs, and `poweroff -f` must end the worker with 0.
# A guest reset with --no-reboot ends it with 3.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
in_vmhost 900 "$0" "$@"


script='dmesg | grep -E "Hypervisor detected|hv_vmbus: Vmbus version"
echo "cpus=$(nproc)"
for d in /sys/bus/vmbus/devices/*; do echo "vmbus-class=$(cat $d/class_id)"; done
poweroff -f'
for cpus in 1 2; do
  log=$out/boot-$cpus.log
  timeout 300 "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 512M \
    --cpus "$cpus" --cmdline "console=ttyS0 quiet $(viridian_cmdline_arg "$script")" </dev/null >"$log" 2>&1
  rc=$?
  echo "--- $cpus vCPU(s): exit $rc, init at $(viridian_mark_uptime "$log" init-start)s guest uptime"
  check "exit status 0 after poweroff -f ($cpus vCPU)" [ "$rc" = 0 ]
  check "worker saw the power-off" has "$log" "vmwp: guest powered off"
  check "guest detected Hyper-V" has "$log" "Hypervisor detected: Microsoft Hyper-V"
  check "clocksource is the reference TSC page" \
    [ "$(viridian_mark "$log" clocksource)" = hyperv_clocksource_tsc_page ]
  check "worker logged INITIATE_CONTACT" grep -qE "vmwp: vmbus: vp [0-9]+: INITIATE_CONTACT on connection 4, version 5\." "$log"
  # A rare reset during early boot was seen once (2 vCPUs, CI under load); the worker restarts
  # the guest as a PC would, so the boot still passes. Show it with the worker's reason.
  grep -h "vmwp: guest reset" "$log" | sed 's/^/WARN: unexpected /'
  check "guest negotiated VMBus 5.x" grep -qE "hv_vmbus: Vmbus version:5\.[0-3]" "$log"
  check "guest sees $cpus CPU(s)" has "$log" "cpus=$cpus"
  check "heartbeat channel offered" has "$log" "vmbus-class={57164f39-9115-4e78-ab55-382f3bd5422d}"
  check "shutdown channel offered" has "$log" "vmbus-class={0e0b6031-5213-4934-818b-38d90ced39db}"
  check "time sync channel offered" has "$log" "vmbus-class={9527e630-d0ae-497b-adce-e80ab0175caf}"
  check "no kernel oops or panic" bash -c "! grep -qE 'Oops|Kernel panic|BUG:' '$log'"
  [ "$fails" = 0 ] || cat "$log"
done

log=$out/reset.log
timeout 300 "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 256M --no-reboot \
  --cmdline "console=ttyS0 quiet viridian.nomods $(viridian_cmdline_arg 'reboot -f')" </dev/null >"$log" 2>&1
rc=$?
check "guest reset with --no-reboot exits 3" [ "$rc" = 3 ]
[ "$rc" = 3 ] || cat "$log"

# Without --no-reboot a guest reset restarts the VM: the guest boots again, with its disk and
# network adapter (on a switch that is not there: its thread retries; the worker stops the
# adapter and disk threads before it tears the old VM down).
log=$out/restart.log
truncate -s 16M /tmp/restart-disk.raw
"$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" --memory 256M --disk /tmp/restart-disk.raw \
  --nic switch=/tmp/no-switch.sock --cmdline "console=ttyS0 quiet $(viridian_cmdline_arg 'echo "devices $(ls /sys/block | grep -c sd) $(ls /sys/class/net | grep -vc lo)"; reboot -f')" \
  </dev/null >"$log" 2>&1 &
pid=$!
for _ in $(seq 180); do [ "$(grep -c 'devices 1 1' "$log")" -ge 2 ] && break; sleep 1; done
kill $pid; wait $pid 2>/dev/null
check "guest reset restarts the VM (second boot reached init)" [ "$(grep -c 'VIRIDIAN-MARK: init-start' "$log")" -ge 2 ]
check "...with its disk and network adapter both times" [ "$(grep -c 'devices 1 1' "$log")" -ge 2 ]
check "worker logged the restart" grep -q "vmwp: guest reset (.*): restarting" "$log"
check "...and no worker error" bash -c "! grep -q 'vmwp: error' '$log'"
finish
