#!/usr/bin/env bash
# The default test guest builds from Debian packages and boots under a reference
# VMM (QEMU-KVM) where guest kernels can run (tools/vmhost: here, or in the test
# host): /init runs, reports its markers, runs the command from the kernel
# command line and powers off. Exit 0 = pass.
set -euo pipefail
cd "$(dirname "$0")/../.."
. guest/lib.sh
fail() { echo "guest-image: FAIL: $*" >&2; exit 1; }

t0=$(date +%s.%N)
guest/build-image -q || fail "guest/build-image failed"
img=$(viridian_guest_dir)
for f in vmlinuz initramfs.cpio.gz manifest; do [ -s "$img/$f" ] || fail "no $img/$f"; done
t1=$(date +%s.%N)

out=$(mktemp -d "${TMPDIR:-/tmp}/guest-image.XXXXXX")
trap 'rm -rf "$out"' EXIT
arg=$(guest/mkcmdline '
echo "hello-from-guest $(uname -r)"
/usr/sbin/hv_kvp_daemon --help >/dev/null 2>&1; echo "kvp-help-rc=$?"
exit 0')
echo "guest-image: $(tools/vmhost --detect)"
set +e
VIRIDIAN_TESTHOST_TIMES=1 tools/vmhost -t 150 -o "$out" -- \
  qemu-system-x86_64 -enable-kvm -m 512 -smp 2 -nodefaults -no-user-config \
    -display none -serial stdio -no-reboot \
    -kernel "$img/vmlinuz" -initrd "$img/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 viridian.daemons $arg" \
  </dev/null >"$out/console.log" 2>"$out/stderr.log"
rc=$?
set -e
t2=$(date +%s.%N)
log=$out/console.log
sed 's/^/  | /' "$log"
sed 's/^/  ! /' "$out/stderr.log" >&2
# The boot takes some 20 s in the test host: one that has not ended in 150 s hung there (seen in a
# clean-clone run with an empty console), and 125 is the test host failing. Both go to tests/run
# to run again, as the other guest tests' do.
case $rc in
  0) ;;
  124) echo "--- a guest hung in the test host: console.log: the reference guest did not power off in 150 s (its last line: $(tail -n 1 "$log" | tr -d '\r' | cut -c1-120))"
       exit 126 ;;
  125) echo "guest-image: the test host failed"; exit 125 ;;
  *) fail "the VMM run exited with $rc" ;;
esac
# With -no-reboot, a guest that triple-faults or panics (panic=-1) ends the VMM with status 0 as
# a poweroff does; only the missing poweroff marker tells them apart. That is a guest dying in the
# emulator (docs/testhost.md; CI saw it mid-line): exit 126, which tests/run runs again.
if ! viridian_mark "$log" poweroff >/dev/null; then
  echo "--- a guest died in the test host: console.log: the reference guest reset before /init powered it off (its last line: $(tail -n 1 "$log" | tr -d '\r' | cut -c1-120))"
  exit 126
fi

init_up=$(viridian_mark_uptime "$log" init-start) || fail "no init-start marker: /init did not run"
viridian_mark "$log" "modprobe hv_vmbus" >/dev/null || fail "no modprobe marker for hv_vmbus"
n=$(viridian_marks "$log" | grep -c '^modprobe ') || true
[ "$n" -ge 8 ] || fail "only $n modprobe markers"
viridian_mark "$log" modules-done >/dev/null || fail "module loading did not finish"
viridian_mark "$log" clocksource >/dev/null || fail "no clocksource marker"
viridian_mark "$log" vmbus-devices >/dev/null || fail "no vmbus-devices marker"
for d in hv_kvp_daemon hv_vss_daemon; do
  drc=$(viridian_mark "$log" "daemon $d") || fail "no marker for $d"
  # Under QEMU there is no VMBus, so the daemons exit (rc != 0); 126/127 would mean they cannot run at all.
  case "$drc" in rc=126|rc=127) fail "$d cannot execute ($drc): libraries missing?" ;; esac
done
grep -q 'hello-from-guest' "$log" || fail "the command's output is missing"
grep -q 'kvp-help-rc=\(0\|1\)' "$log" || fail "hv_kvp_daemon does not run (see kvp-help-rc)"
[ "$(viridian_mark "$log" cmd-exit)" = 0 ] || fail "cmd-exit is not 0"

times=$(grep -o 'testhost: times: .*' "$out/stderr.log" || true)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v u="$init_up" -v th="$times" 'BEGIN {
  printf "guest-image: PASS: build/check %.1fs, boot round trip %.1fs, guest reached init at uptime %ss\n", b - a, c - b, u
  if (th != "") print "guest-image: " th }'
