#!/usr/bin/env bash
# vmms's saved states: Save-VM (Running/Paused -> Saving -> Saved, the file <VM folder>/<id>.vmrs),
# Start-VM of a Saved VM (Restoring -> Running, the file consumed), Remove-VMSavedState,
# Stop-VM -TurnOff and Remove-VM of a Saved VM; refusals (32788) and bad saved states in one line;
# a failed save leaving the VM as it was; vmms restarts during Saving and Restoring; a host
# restart restoring Saved VMs.
# The worker's save/restore (docs/vmms.md) is played by a stand-in vmwp (VIRIDIAN_VMWP) that keeps
# the contract: {"op":"save","path":P} writes P whole (temporary file, fsync, rename) and leaves
# the VM paused; --restore P refuses a foreign, corrupt or mismatched file with exit 1 and one
# line. Files in the VM's folder steer it: fail-save, save-delay, restore-delay (seconds); it
# leaves $t/marks/<VM folder name>.listening once it answers requests and .answered-save after
# each save answer, so the test waits for those, not for a time a loaded machine can overrun.
# The real vmwp's save/restore runs at the end where it has --restore and KVM is usable.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/skip.bash
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
[ -x "$B/vmms" ] && [ -x "$B/hv" ] || { echo "build $B/vmms and $B/hv first (make)"; exit 1; }
t=$(mktemp -d /tmp/vmms-ss.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock VIRIDIAN_BOOT_ID=boot-1 VIRIDIAN_VMWP=$t/bin/vmwp STANDIN_MARKS=$t/marks
mkdir -p "$t/marks"
pid=""
# Workers run in their own sessions and outlive vmms by design: end them too.
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; pkill -f -- "--control $t/" 2>/dev/null; wait 2>/dev/null; rm -rf "$t"' EXIT
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
refused() { ! "$@" >"$t/out" 2>"$t/err" && [ "$(wc -l <"$t/err")" = 1 ]; } # nonzero, one line
says() { grep -q -- "$1" "$t/err"; }                                      # the refusal's text
hv() { "$B/hv" "$@"; }
start_vmms() {
  "$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
}
stop_vmms() { kill "$pid"; wait "$pid" 2>/dev/null; pid=""; }
until_true() { for _ in $(seq 100); do "$@" && return 0; sleep 0.1; done; return 1; } # up to 10 s
state() { hv Get-VM "$1" -Json | sed -n 's/.*"state": "\([A-Za-z]*\)".*/\1/p'; }
is() { [ "$(state "$1")" = "$2" ]; }
vmdir() { hv Get-VM "$1" -Json | sed -n 's/.*"path": "\(.*\)".*/\1/p'; }
vmrs() { local d; d=$(vmdir "$1"); echo "$d/$(basename "$d").vmrs"; }
wpid() { hv Get-VM "$1" -Json | sed -n 's/.*"worker_pid": \([0-9]*\).*/\1/p'; }
last_event() { hv Get-VMEvent "$1" -Json | sed -n 's/.*"message": "\(.*\)".*/\1/p' | tail -1; }
gone() { ! kill -0 "$1" 2>/dev/null || grep -q '^State:.Z' "/proc/$1/status" 2>/dev/null; }
# Save-VM through the API without waiting (the cmdlet waits for Saved).
save_async() { python3 -c '
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(os.environ["VIRIDIAN_SOCKET"])
s.sendall((json.dumps({"op": "save", "vm": sys.argv[1]}) + "\n").encode())
r = json.loads(s.makefile().readline()); sys.exit(0 if r.get("ok") and r.get("state") == "Saving" else 1)' "$1"; }

mkdir -p "$t/bin"
cat >"$t/bin/vmwp" <<'EOF'
#!/usr/bin/env python3
import json, os, socket, sys, time
args = sys.argv[1:]
print("ARGV " + json.dumps(args), flush=True)
ctl = args[args.index("--control") + 1]
folder = os.path.dirname(ctl)
def knob(name):
    p = os.path.join(folder, name)
    return open(p).read().strip() or "1" if os.path.exists(p) else None
# The configuration a saved state must match: everything but the boot source and the files.
config, i = [], 0
while i < len(args):
    if args[i] in ("--restore", "--kernel", "--initrd", "--cmdline", "--control", "--serial"):
        i += 2
        continue
    config.append(args[i]); i += 1
state = "Running"
if "--restore" in args:
    path = args[args.index("--restore") + 1]
    try:
        data = open(path, "rb").read()
    except OSError as e:
        sys.exit(print("vmwp: --restore %s: %s" % (path, e.strerror), file=sys.stderr) or 1)
    head, _, _ = data.partition(b"\n\n")
    if not data.startswith(b"FAKEVMRS1\n"):
        sys.exit(print("vmwp: --restore %s: not a saved state" % path, file=sys.stderr) or 1)
    try:
        saved = json.loads(head[10:])
    except ValueError:
        sys.exit(print("vmwp: --restore %s: the saved state is corrupt" % path, file=sys.stderr) or 1)
    if saved != config:
        sys.exit(print("vmwp: --restore %s: saved with another configuration" % path, file=sys.stderr) or 1)
    time.sleep(float(knob("restore-delay") or 0))
lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try: os.unlink(ctl)
except OSError: pass
lsock.bind(ctl); lsock.listen(8)
def mark(what):
    open(os.path.join(os.environ["STANDIN_MARKS"], os.path.basename(folder) + "." + what), "w").close()
mark("listening")
start = time.time()
def answer(req):
    global state
    op = req.get("op")
    if op == "status":
        return dict(ok=True, state=state, uptime_ms=int((time.time() - start) * 1000), heartbeat="NoContact")
    if op in ("pause", "resume"):
        state = "Paused" if op == "pause" else "Running"
        return dict(ok=True)
    if op == "save":
        path = req.get("path", "")
        if not isinstance(path, str) or not path.startswith("/"):
            return dict(ok=False, error="save needs an absolute path")
        time.sleep(float(knob("save-delay") or 0))
        if knob("fail-save"):
            return dict(ok=False, error="no space left on device (test)")
        t0, was = time.time(), state
        state = "Paused"
        body = b"FAKEVMRS1\n" + json.dumps(config).encode() + b"\n\n" + b"\0" * 65536
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(body); f.flush(); os.fsync(f.fileno())
        os.rename(tmp, path)
        return dict(ok=True, bytes=len(body), save_ms=int((time.time() - t0) * 1000))
    if op == "turn-off":
        return dict(ok=True)
    return dict(ok=False, error="unknown op " + str(op))
while True:
    c, _ = lsock.accept()
    line = c.makefile().readline()
    try:
        req = json.loads(line)
    except ValueError:
        req = {}
    r = answer(req)
    try: c.sendall((json.dumps(r) + "\n").encode())
    except OSError: pass
    c.close()
    if req.get("op") == "save":
        mark("answered-save")
    if req.get("op") == "turn-off":
        sys.exit(0)
EOF
chmod +x "$t/bin/vmwp"
touch "$t/vmlinuz"
start_vmms
hv New-VM -Name web -MemoryStartupBytes 64MB >/dev/null
hv Set-VMFirmware web -KernelPath "$t/vmlinuz"
hv New-VHD -Path "$t/data.vhdx" -SizeBytes 1GB >/dev/null
F=$(vmrs web); D=$(vmdir web)

# Guarded transitions: no saved state to save from, restore or discard.
check "Save-VM of an Off VM refused with 32788 in one line" refused hv Save-VM web
check "...in the seed's wording" says "'web' cannot be saved: the virtual machine is Off (error 32788"
check "Remove-VMSavedState of an Off VM refused with 32788" bash -c "! '$B/hv' Remove-VMSavedState web 2>&1 | grep -c . | grep -qv '^1$' && '$B/hv' Remove-VMSavedState web 2>&1 | grep -q \"cannot discard a saved state: the virtual machine is Off (error 32788\""
check "Save-VM of an unknown VM refused in one line" refused hv Save-VM nobody
check "the cmdlets are listed" bash -c "'$B/hv' Get-Help | grep -q '^  Save-VM ' && '$B/hv' Get-Help | grep -q '^  Remove-VMSavedState '"

# Save-VM of a running VM: Saving while the worker writes, then Saved with the file.
check "Start-VM" hv Start-VM web
p=$(wpid web)
echo 1.5 >"$D/save-delay"
check "save request answered with Saving" save_async web
check "Get-VM shows Saving meanwhile" is web Saving
check "Remove-VMSavedState of a Saving VM refused (32788)" bash -c "'$B/hv' Remove-VMSavedState web 2>&1 | grep -q 'is Saving (error 32788'"
check "Stop-VM -TurnOff of a Saving VM refused (32788)" bash -c "'$B/hv' Stop-VM web -TurnOff 2>&1 | grep -q 32788"
check "...then Saved" until_true is web Saved
rm "$D/save-delay"
check "...the saved state is <VM folder>/<id>.vmrs" test -s "$F"
check "...the worker is gone" until_true gone "$p"
check "Get-VM's table shows Saved" bash -c "'$B/hv' Get-VM web | grep -q '^web  *Saved '"
check "the event log has the size and the time" bash -c "'$B/hv' Get-VMEvent web | grep -q 'saved state written: [0-9]* bytes in [0-9]* ms'"

# A Saved VM's configuration is what its saved state holds.
check "Set-VM of a Saved VM refused (32788)" bash -c "'$B/hv' Set-VM web -ProcessorCount 2 2>&1 | grep -q 'is Saved (error 32788'"
check "Set-VM -MemoryStartupBytes refused (32788)" bash -c "'$B/hv' Set-VM web -MemoryStartupBytes 128MB 2>&1 | grep -q 32788"
check "Add-VMHardDiskDrive refused (32788)" bash -c "'$B/hv' Add-VMHardDiskDrive web -Path '$t/data.vhdx' 2>&1 | grep -q 32788"
check "Add-VMNetworkAdapter refused (32788)" bash -c "'$B/hv' Add-VMNetworkAdapter web 2>&1 | grep -q 32788"
check "Disable-VMIntegrationService refused (32788)" bash -c "'$B/hv' Disable-VMIntegrationService web -Name Heartbeat 2>&1 | grep -q 32788"
check "Save-VM of a Saved VM refused (32788)" bash -c "'$B/hv' Save-VM web 2>&1 | grep -q 32788"
check "graceful Stop-VM of a Saved VM refused (32788)" bash -c "'$B/hv' Stop-VM web 2>&1 | grep -q 32788"
check "Suspend-VM of a Saved VM refused (32788)" bash -c "'$B/hv' Suspend-VM web 2>&1 | grep -q 32788"

# Start-VM restores: the worker gets --restore and the kernel (what a reset of the restored guest boots); the file is consumed.
: >"$D/worker.log"
check "Start-VM of a Saved VM -> Running" hv Start-VM web
check "...the worker ran with --restore <file> and --kernel" bash -c "grep '^ARGV' '$D/worker.log' | tail -1 | grep -q -- '\"--restore\", \"$F\"' && grep '^ARGV' '$D/worker.log' | tail -1 | grep -q -- --kernel"
check "...the saved state is deleted" test ! -e "$F"
check "...the event says restored" bash -c "'$B/hv' Get-VMEvent web | grep -q 'restored from the saved state'"

# A save that fails leaves the VM as it was, with the reason in one line and in the event log.
touch "$D/fail-save"
check "a failing save: one line with the worker's reason" bash -c "! '$B/hv' Save-VM web 2>'$t/err' && [ \$(wc -l <'$t/err') = 1 ] && grep -q 'no space left on device (test)' '$t/err'"
check "...the VM still Running" is web Running
check "...no file" test ! -e "$F"
check "...the event log has it" bash -c "'$B/hv' Get-VMEvent web | grep Error | grep -q 'not saved: no space left'"
hv Suspend-VM web
check "a failing save of a Paused VM: still Paused" bash -c "! '$B/hv' Save-VM web 2>/dev/null && [ \"\$('$B/hv' Get-VM web -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Paused ]"
rm "$D/fail-save"
check "Save-VM of a Paused VM -> Saved" bash -c "'$B/hv' Save-VM web && test -s '$F'"

# Bad saved states: the VM stays Saved, the error in one line, the file kept.
printf 'garbage' >"$F"
check "Start-VM of a Saved VM with a corrupt file fails in one line" refused hv Start-VM web
check "...with the worker's error" says "not a saved state"
check "...the VM is Saved again" is web Saved
check "...the file is kept" test -s "$F"
check "...the worker's error in the event log" bash -c "'$B/hv' Get-VMEvent web | grep Error | grep -q 'not restored (it is kept).*not a saved state'"
check "Remove-VMSavedState -> Off, the file deleted" bash -c "'$B/hv' Remove-VMSavedState -VMName web && [ ! -e '$F' ]"
check "...Off" is web Off
hv Start-VM web && hv Save-VM web
rm -f "$F"
check "Start-VM of a Saved VM whose file was deleted fails in one line" refused hv Start-VM web
check "...saying so" says "saved state .* is missing"
check "...and stays Saved" is web Saved
check "Stop-VM -TurnOff of a Saved VM discards the state: Off" bash -c "'$B/hv' Stop-VM web -TurnOff && [ \"\$('$B/hv' Get-VM web -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Off ]"
hv Start-VM web && hv Save-VM web
check "Stop-VM -TurnOff deletes the file" bash -c "'$B/hv' Stop-VM web -TurnOff && [ ! -e '$F' ]"
hv Start-VM web && hv Save-VM web
echo 2 >"$D/restore-delay"
hv Start-VM web -TimeoutSeconds 1 >/dev/null 2>&1
check "Stop-VM -TurnOff of a Restoring VM -> Off, the state discarded" bash -c "[ \"\$('$B/hv' Get-VM web -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Restoring ] && '$B/hv' Stop-VM web -TurnOff && [ ! -e '$F' ]"
rm "$D/restore-delay"

# Remove-VM of a Saved VM deletes the saved state with the VM's folder.
hv New-VM -Name gone -MemoryStartupBytes 64MB >/dev/null
hv Set-VMFirmware gone -KernelPath "$t/vmlinuz"
G=$(vmrs gone)
hv Start-VM gone && hv Save-VM gone
check "Remove-VM of a Saved VM" hv Remove-VM gone
check "...deletes its saved state and folder" test ! -e "$G" -a ! -e "$(dirname "$G")"

# vmms restarts while Saving: Saved when the file is complete, else as it was.
hv Start-VM web
p=$(wpid web)
echo 1 >"$D/save-delay"
save_async web
stop_vmms
until_true test -e "$F"
start_vmms
check "vmms restart during a save that completed: Saved" is web Saved
check "...the worker turned off" until_true gone "$p"
check "...the reason in the event log" bash -c "'$B/hv' Get-VMEvent web | grep -q 'cut off by a vmms restart after the state was written'"
hv Start-VM web
p=$(wpid web)
touch "$D/fail-save"
M=$t/marks/$(basename "$D")
rm -f "$M.answered-save"
save_async web
stop_vmms
until_true test -e "$M.answered-save"  # the worker has answered the lost request: no file
start_vmms
check "vmms restart during a save that failed: as the worker is (Running), re-attached" bash -c "[ \"\$('$B/hv' Get-VM web -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Running ] && [ \"\$('$B/hv' Get-VM web -Json | sed -n 's/.*\"worker_pid\": \\([0-9]*\\).*/\\1/p')\" = $p ] && [ ! -e '$F' ]"
rm "$D/fail-save" "$D/save-delay"

# vmms restarts while Restoring: Running if the worker answers (the file consumed), else Saved.
hv Save-VM web
echo 1.5 >"$D/restore-delay"
rm -f "$M.listening"
hv Start-VM web -TimeoutSeconds 1 >/dev/null 2>&1
check "Get-VM shows Restoring meanwhile" is web Restoring
stop_vmms
until_true test -e "$M.listening"  # the worker finished its restore
start_vmms
check "vmms restart during a restore the worker finished: Running" until_true is web Running
check "...the file consumed" test ! -e "$F"
hv Save-VM web
hv Start-VM web -TimeoutSeconds 1 >/dev/null 2>&1
p=$(wpid web)
stop_vmms
kill -9 "$p"
until_true gone "$p"
start_vmms
check "vmms restart after the restoring worker died: Saved, the file kept" bash -c "[ \"\$('$B/hv' Get-VM web -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Saved ] && test -s '$F'"
rm "$D/restore-delay"

# A host restart (new boot id): Saved VMs with StartIfRunning or Start are restored.
hv New-VM -Name idle -MemoryStartupBytes 64MB >/dev/null
hv Set-VMFirmware idle -KernelPath "$t/vmlinuz"
hv Set-VM idle -AutomaticStartAction Nothing >/dev/null
hv Start-VM idle >/dev/null && hv Save-VM idle
stop_vmms
export VIRIDIAN_BOOT_ID=boot-2
start_vmms
check "host restart: a Saved VM with StartIfRunning is restored" until_true is web Running
check "...its file consumed" test ! -e "$F"
check "host restart: a Saved VM with Nothing stays Saved" bash -c "[ \"\$('$B/hv' Get-VM idle -Json | sed -n 's/.*\"state\": \"\\([A-Za-z]*\\)\".*/\\1/p')\" = Saved ] && test -s '$(vmrs idle)'"
hv Stop-VM web -TurnOff >/dev/null; hv Stop-VM idle -TurnOff >/dev/null

# The real worker's save and restore: a tiny kernel that halts (bench/boot/tiny-bzimage.py).
stop_vmms
unset VIRIDIAN_VMWP
if ! grep -q -- --restore <<<"$("$B/vmwp" --help 2>&1)"; then
  skip_part "the real worker's save/restore (this vmwp has no --restore)"
elif ! kvm_usable; then
  skip_part "the real worker's save/restore (no usable /dev/kvm here)"
else
  start_vmms
  python3 bench/boot/tiny-bzimage.py --halt "$t/halt.bz"
  hv New-VM -Name tiny -MemoryStartupBytes 64MB >/dev/null
  hv Set-VMFirmware tiny -KernelPath "$t/halt.bz"
  T=$(vmrs tiny)
  check "real worker: Start-VM" hv Start-VM tiny
  check "real worker: Save-VM -> Saved with the file" bash -c "'$B/hv' Save-VM tiny && test -s '$T'"
  check "real worker: Start-VM restores -> Running, the file consumed" bash -c "'$B/hv' Start-VM tiny && [ ! -e '$T' ]"
  check "real worker: Save-VM of a Paused VM" bash -c "'$B/hv' Suspend-VM tiny && '$B/hv' Save-VM tiny"
  head -c 100 "$T" >"$t/short" && cp "$t/short" "$T"
  check "real worker: a truncated saved state: Start-VM fails in one line, Saved" bash -c "! '$B/hv' Start-VM tiny 2>'$t/err' && [ \$(wc -l <'$t/err') = 1 ] && '$B/hv' Get-VM tiny | grep -q '^tiny  *Saved '"
  hv Remove-VMSavedState tiny
fi
[ "$fails" = 0 ] || { echo "--- vmms log"; cat "$t/vmms.log"; }
exit $((fails > 0))
