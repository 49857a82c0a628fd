#!/usr/bin/env bash
# A guest that triple-faults leaves where it was: a stock guest booted with reboot=t (its
# emergency restart loads an empty IDT and traps) under tools/crashtrace; vmwp --no-reboot exits
# 3 naming the triple fault, and the recorded KVM events end in the "shutdown" exit at a rip that
# the guest kernel's own symbols (tools/crashtrace symbols) name native_machine_emergency_restart.
set -uo pipefail
cd "$(dirname "$0")/../.."
export VIRIDIAN_CRASHTRACE=0 # it runs its own recorder
. tests/integration/lib/guest.bash
in_vmhost 400 "$0" "$@"

tools/crashtrace symbols /tmp/kallsyms
check "the guest kernel's symbols came back" grep -qE " [Tt] native_machine_emergency_restart$" /tmp/kallsyms
log=$out/crash.log
timeout 150 tools/crashtrace run crash -- "$B/vmwp" --kernel "$G/vmlinuz" --initrd "$G/initramfs.cpio.gz" \
  --memory 384M --no-reboot --cmdline "console=ttyS0 quiet nokaslr reboot=t $(viridian_cmdline_arg \
  'echo 1 >/proc/sys/kernel/sysrq; echo b >/proc/sysrq-trigger')" </dev/null >"$log" 2>&1
rc=$?
check "vmwp exits 3 (guest reset with --no-reboot)" [ "$rc" = 3 ]
check "...and names the triple fault" grep -q "guest reset (triple fault on vCPU 0" "$log"
check "...after stopping the recorder" grep -q "flight recorder .* stopped at the triple fault" "$log"
tools/crashtrace dump crash /tmp/kallsyms >/tmp/trace.txt
tools/crashtrace remove crash
grep "reason shutdown" /tmp/trace.txt | tail -n 1 | tee "$out/shutdown.txt"
check "the recorder kept the shutdown exit, named from the guest's symbols" \
  grep -q "reason shutdown rip 0xffffffff[0-9a-f]* (native_machine_emergency_restart+0x" "$out/shutdown.txt"
check "...after the guest's own last exits" bash -c "[ \$(grep -c 'kvm_exit: vcpu 0' /tmp/trace.txt) -gt 100 ]"
finish
