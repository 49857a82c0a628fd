#!/usr/bin/env bash
# The worker sandbox (docs/security.md), on a running vmwp (a tiny kernel that halts: no guest
# kernel speed needed, so it runs right here): seccomp filter mode, NO_NEW_PRIVS, a per-VM
# non-root uid with only CAP_DAC_OVERRIDE, namespaces of its own, only the descriptors it opened
# (not one the caller leaked to it); the VM's folder still takes a save, a folder outside it
# does not (Landlock, where the kernel has it); a forbidden system call made inside the worker
# (injected with gdb) kills it with SIGSYS while a second worker runs on. VIRIDIAN_SANDBOX=0
# turns it all off.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/skip.bash
B=${VIRIDIAN_BUILD:-build}
kvm_usable || { echo "skip: no usable KVM device here for the tiny kernel"; exit 77; }
command -v socat >/dev/null || { echo "skip: socat is not installed (tools/deps)"; exit 77; }
t=$(mktemp -d /tmp/viridian-sandbox.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$t"; }
trap cleanup EXIT
ulimit -c 0 # the worker killed on purpose below leaves no core file
fails=0
check() { local what=$1; shift; if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; fails=$((fails + 1)); fi; }
python3 bench/boot/tiny-bzimage.py --halt "$t/halt.bz"
mkdir -p "$t/disks" "$t/elsewhere"
echo secret >"$t/leaked"
truncate -s 16M "$t/disks/disk.raw"

# start NAME [env...]: a worker with a disk, an adapter on a (missing) switch, a control socket
# and a console log in $t/NAME, and fd 7 ($t/leaked) left open by its caller.
start() {
  local name=$1; shift
  mkdir -p "$t/$name"
  env VIRIDIAN_SANDBOX=1 "$@" "$B/vmwp" --kernel "$t/halt.bz" --memory 64M --cpus 2 --disk "$t/disks/disk.raw,ro" \
    --nic "switch=$t/no-switch.sock" --control "$t/$name/ctl.sock" --serial "file:$t/$name/console.log" \
    7<"$t/leaked" </dev/null >"$t/$name/worker.log" 2>&1 &
  pids+=($!)
  pid=$!
  for _ in $(seq 100); do [ -S "$t/$name/ctl.sock" ] && break; sleep 0.1; done
  sleep 0.5 # the sandbox follows the control socket at once
}
ctl() { printf '%s\n' "$2" | socat -t 20 - "UNIX-CONNECT:$t/$1/ctl.sock" 2>/dev/null; }
field() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$2/status"; }

start vm
w=$pid
check "the worker runs" kill -0 "$w"
check "seccomp filter mode (Seccomp: 2)" [ "$(field Seccomp "$w")" = 2 ]
check "NoNewPrivs: 1" [ "$(field NoNewPrivs "$w")" = 1 ]
uid=$(field Uid "$w")
check "a per-VM uid from the reserved range, not root (uid $uid)" \
  [ "$uid" -ge $((0x7ffe0000)) ] && [ "$uid" -lt $((0x7ffe0000 + 0x10000)) ]
check "uid, gid and supplementary groups all that identity" \
  bash -c "awk '/^Uid:/ {exit !(\$2==$uid && \$3==$uid && \$4==$uid && \$5==$uid)}' /proc/$w/status && \
           awk '/^Gid:/ {exit !(\$2==$uid)}' /proc/$w/status && [ -z \"\$(awk '/^Groups:/ {print \$2}' /proc/$w/status)\" ]"
check "only CAP_DAC_OVERRIDE left (CapEff, CapBnd 0x2; CapAmb 0x2 for a reset's re-exec)" \
  bash -c "[ \"\$(awk '/^CapEff:/ {print \$2}' /proc/$w/status)\" = 0000000000000002 ] && \
           [ \"\$(awk '/^CapBnd:/ {print \$2}' /proc/$w/status)\" = 0000000000000002 ] && \
           [ \"\$(awk '/^CapAmb:/ {print \$2}' /proc/$w/status)\" = 0000000000000002 ]"
for ns in mnt ipc uts net; do
  check "its own $ns namespace" [ "$(readlink /proc/$w/ns/$ns)" != "$(readlink /proc/$$/ns/$ns)" ]
done
check "the caller's leaked fd 7 is not in the worker" bash -c "! ls -l /proc/$w/fd | grep -q '$t/leaked'"
# Every descriptor is one the worker opened for the VM.
bad=""
for fd in /proc/$w/fd/*; do
  target=$(readlink "$fd")
  case "$target" in
    /dev/null|/dev/kvm|"$t/disks/disk.raw"|"$t/vm/console.log"|"$t/vm/worker.log"|"$t/halt.bz"|"$(readlink -f "$B/vmwp")") ;;
    anon_inode:kvm-vm|anon_inode:kvm-vcpu:*|anon_inode:\[eventfd\]|socket:\[*\]|pipe:\[*\]|/memfd:*) ;;
    *) bad+=" ${fd##*/}->$target" ;;
  esac
done
check "only the expected descriptors (KVM, its disk, eventfds, sockets, console log, itself)${bad:+; not:$bad}" [ -z "$bad" ]
check "fd $(printf %s 1000) is its own program (what a reset re-executes)" \
  [ "$(readlink /proc/$w/fd/1000)" = "$(readlink -f "$B/vmwp")" ]

# File access: the VM's folder takes a save; another folder cannot be written, and the worker
# lives on either way.
check "save into the VM's folder works" bash -c "ctl() { printf '%s\n' \"\$1\" | socat -t 20 - UNIX-CONNECT:$t/vm/ctl.sock; }; \
  ctl '{\"op\":\"save\",\"path\":\"$t/vm/saved.vmrs\"}' | grep -q '\"ok\": *true' && test -s $t/vm/saved.vmrs"
landlock=$(grep -c landlock /sys/kernel/security/lsm 2>/dev/null || true)
reply=$(ctl vm "{\"op\":\"save\",\"path\":\"$t/elsewhere/stolen.vmrs\"}")
if [ -e "$t/elsewhere/stolen.vmrs" ] && [ "${landlock:-0}" = 0 ] && ! grep -q "Landlock" "$t/vm/worker.log"; then
  skip_part "Landlock (this kernel has none): a save outside the VM's folder is not refused"
else
  check "save outside the VM's folders is refused (Landlock): $reply" \
    bash -c "[ ! -e '$t/elsewhere/stolen.vmrs' ] && grep -q '\"ok\": *false' <<<'$reply'"
fi
check "...and the worker still runs" kill -0 "$w"
check "...and answers" bash -c "printf '%s\n' '{\"op\":\"resume\"}' | socat -t 20 - UNIX-CONNECT:$t/vm/ctl.sock | grep -q '\"ok\": *true'"

# A forbidden system call inside the worker (socket(AF_INET), injected with gdb) kills it with
# SIGSYS; another worker is unaffected.
start other
o=$pid
if ! command -v gdb >/dev/null; then
  skip_part "a forbidden call inside the worker (no gdb to inject it)"
else
  timeout 60 gdb -p "$w" -batch -ex 'call (long)syscall(41, 2, 1, 0)' >"$t/gdb.log" 2>&1
  wait "$w" 2>/dev/null
  rc=$?
  check "a worker making a forbidden call (socket(AF_INET)) dies of SIGSYS (exit $rc)" [ "$rc" = $((128 + 31)) ]
  check "...the other worker runs on" kill -0 "$o"
fi

# The escape hatch: VIRIDIAN_SANDBOX=0 leaves the worker as it was.
start off VIRIDIAN_SANDBOX=0
check "VIRIDIAN_SANDBOX=0: no filter, root, the host's namespaces" \
  bash -c "[ \"\$(awk '/^Seccomp:/ {print \$2}' /proc/$pid/status)\" = 0 ] && [ \"\$(awk '/^Uid:/ {print \$2}' /proc/$pid/status)\" = 0 ] && \
           [ \"\$(readlink /proc/$pid/ns/mnt)\" = \"\$(readlink /proc/$$/ns/mnt)\" ]"
[ "$fails" = 0 ] || for n in vm other off; do echo "--- $n"; cat "$t/$n/worker.log"; done
exit $((fails > 0))
