#!/usr/bin/env bash
# vmms's checkpoints on real VHDX files: Checkpoint-VM of an Off VM (disks only, no worker) and of
# a running one (Standard: save + disk-switch; Production: VSS freeze, the fallback to Standard,
# ProductionOnly failing with nothing changed), Get-/Rename-VMCheckpoint, Restore-VMCheckpoint
# (an older one, a branch from it, a running VM turned off first), Remove-VMCheckpoint with
# offline folds, a live merge and a merge left pending until the VM is Off; Get-VMJob. After each
# step every image in the chains passes Test-VHD and the VM's disk reads the same bytes as a
# plain reference file that got the same writes without checkpoints (qemu-img compare where
# installed). Then vmms is killed (VIRIDIAN_VMMS_CRASH_AT) at each step of checkpoint, apply
# and merge; after a restart the chains are clean, the VM starts and its data is all there.
# A stand-in vmwp (VIRIDIAN_VMWP) plays the worker: save as in vmms-savedstate.sh, plus
# disk-switch, disk-merge (through hv Merge-VHD) and the VSS requests of docs/worker.md, with
# knobs in the VM's folder (vss-fail, merge-hold: a merge waits while it exists, fail-merge); it refuses to start on a disk
# that fails Test-VHD. "Guest writes" go into the VM's current disk through vhd-pattern.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
PAT=$B/tests/vhd-pattern
[ -x "$B/vmms" ] && [ -x "$B/hv" ] && [ -x "$PAT" ] || { echo "build $B/vmms, $B/hv and $PAT first (make)"; exit 1; }
t=$(mktemp -d /tmp/vmms-cp.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock VIRIDIAN_BOOT_ID=boot-1 VIRIDIAN_VMWP=$t/bin/vmwp HVBIN=$B/hv
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; pkill -f -- "--control $t/" 2>/dev/null; wait 2>/dev/null; rm -rf "$t"' EXIT
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
hv() { "$B/hv" "$@"; }
start_vmms() {
  "$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.05; done
}
stop_vmms() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""; }
until_true() { for _ in $(seq 600); do "$@" && return 0; sleep 0.1; done; return 1; } # up to 60 s: merges are slow on a loaded machine
# py EXPR: evaluates EXPR over d, the JSON on stdin
py() { python3 -c 'import json,sys; d=json.load(sys.stdin); r=eval(sys.argv[1]); print("\n".join(map(str,r)) if isinstance(r,list) else r)' "$1"; }
state() { hv Get-VM "$1" -Json | py 'd[0]["state"]'; }
status() { hv Get-VM "$1" -Json | py 'd[0]["status"]'; }
disk() { hv Get-VM "$1" -Json | py 'd[0]["disks"][0]["path"]'; }
cps() { hv Get-VMCheckpoint "$1" -Json | py '[c["name"] for c in d]' | sort | tr '\n' ' ' | sed 's/ *$//'; }
cp_field() { hv Get-VMCheckpoint "$1" -Json | py "[c.get('$3') for c in d if c['name'] == '$2'][0]"; }
cp_disk() { hv Get-VMCheckpoint "$1" -Json | py "[c['disks'][0]['path'] for c in d if c['name'] == '$2'][0]"; }
events() { hv Get-VMEvent "$1"; }
# w VM SEED OFF LEN: a guest write, into the VM's disk and the reference alike
w() { "$PAT" "$(disk "$1")" "$3" "$4" "$2" && "$PAT" "$t/$1.raw" "$3" "$4" "$2"; }
same() { # same VM [REF]: the VM's disk (or image $3) reads as the reference
  rm -f "$t/flat.raw"
  hv Convert-VHD -Path "${3:-$(disk "$1")}" -DestinationPath "$t/flat.raw" >/dev/null && cmp -s "$t/flat.raw" "${2:-$t/$1.raw}"
}
chains_ok() { # every image the VM and its checkpoints use, and their parents, pass Test-VHD
  local p ok=0
  for p in $(hv Get-VM "$1" -Json | py '[x["path"] for x in d[0]["disks"]]') \
           $(hv Get-VMCheckpoint "$1" -Json | py '[x["path"] for c in d for x in c["disks"]]'); do
    hv Test-VHD "$p" >/dev/null 2>&1 || { echo "  Test-VHD $p failed"; ok=1; }
  done
  return $ok
}
clean() { chains_ok "$1" && same "$1"; }
is_state() { [ "$(state "$1")" = "$2" ]; }
avhdx() { find "$t" -name '*.avhdx' | wc -l; }
jobs_done() { ! grep -q Running <<<"$(hv Get-VMJob -Json | py '[j["state"] for j in d]')"; }
# new_vm NAME: an Off VM on a fresh 16 MB VHDX (1 MB blocks) with its reference raw file
new_vm() {
  hv New-VHD -Path "$t/$1.vhdx" -SizeBytes 16MB -BlockSizeBytes 1MB >/dev/null
  hv New-VHD -Path "$t/$1.raw" -SizeBytes 16MB >/dev/null
  hv New-VM -Name "$1" -MemoryStartupBytes 64MB -VHDPath "$t/$1.vhdx" >/dev/null
  hv Set-VMFirmware "$1" -KernelPath "$t/vmlinuz"
}
MiB=1048576

mkdir -p "$t/bin"
cat >"$t/bin/vmwp" <<'EOF'
#!/usr/bin/env python3
import json, os, socket, subprocess, sys, threading, time
args = sys.argv[1:]
print("ARGV " + json.dumps(args), flush=True)
ctl = args[args.index("--control") + 1]
folder = os.path.dirname(ctl)
hv = os.environ["HVBIN"]
def knob(name):
    p = os.path.join(folder, name)
    return open(p).read().strip() or "1" if os.path.exists(p) else None
disks = [dict(lun=i, path=args[k + 1], read_only=False, merge=None) for i, k in enumerate(k for k, a in enumerate(args) if a == "--disk")]
for d in disks:  # a real worker cannot open a broken chain either
    r = subprocess.run([hv, "Test-VHD", d["path"]], capture_output=True, text=True)
    if r.returncode:
        sys.exit(print("vmwp: --disk %s: %s" % (d["path"], (r.stderr or r.stdout).strip()), file=sys.stderr) or 1)
state, vss = "Running", "idle"
lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try: os.unlink(ctl)
except OSError: pass
lsock.bind(ctl); lsock.listen(8)
def merge(d):
    for _ in range(600):  # merge-hold: the test looks at the merge in progress, then lets it go
        if not knob("merge-hold"):
            break
        time.sleep(0.1)
    if knob("fail-merge"):
        d["merge"] = dict(state="failed", percent=0, error="no space left on device (test)"); return
    parent = json.loads(subprocess.run([hv, "Get-VHD", d["path"], "-Json"], capture_output=True, text=True).stdout)["ParentPath"]
    r = subprocess.run([hv, "Merge-VHD", d["path"]], capture_output=True, text=True)
    if r.returncode:
        d["merge"] = dict(state="failed", percent=0, error=r.stderr.strip()); return
    d["path"], d["merge"] = parent, dict(state="done", percent=100, error="")
def answer(req):
    global state, vss
    op = req.get("op")
    if op == "status":
        return dict(ok=True, state=state, uptime_ms=1, heartbeat="OK", disks=disks)
    if op in ("pause", "resume"):
        state = "Paused" if op == "pause" else "Running"
        return dict(ok=True)
    if op == "save":
        path = req["path"]
        state = "Paused"
        with open(path + ".partial", "wb") as f:
            f.write(b"FAKEVMRS1\n" + json.dumps([x["path"] for x in disks]).encode()); f.flush(); os.fsync(f.fileno())
        os.rename(path + ".partial", path)
        return dict(ok=True, bytes=100, save_ms=1)
    if op == "disk-switch":
        lun, path = req.get("lun"), req.get("path")
        if not isinstance(lun, int) or not 0 <= lun < len(disks) or not os.path.exists(str(path)):
            return dict(ok=False, error="disk-switch: bad lun or path")
        disks[lun]["path"] = path
        return dict(ok=True, pause_ms=1)
    if op == "disk-merge":
        lun = req.get("lun")
        if not isinstance(lun, int) or not 0 <= lun < len(disks):
            return dict(ok=False, error="disk-merge: bad lun")
        disks[lun]["merge"] = dict(state="running", percent=10, error="")
        threading.Thread(target=merge, args=(disks[lun],), daemon=True).start()
        return dict(ok=True)
    if op == "vss-freeze":
        vss = "failed" if knob("vss-fail") else "frozen"
        return dict(ok=True, state=vss)
    if op == "vss-status":
        return dict(ok=True, state=vss, error="the guest's VSS writer failed (test)" if vss == "failed" else "")
    if op == "vss-thaw":
        vss = "idle"
        return dict(ok=True, state=vss)
    if op == "turn-off":
        return dict(ok=True)
    return dict(ok=False, error="unknown op " + str(op))
while True:
    c, _ = lsock.accept()
    line = c.makefile().readline()
    try: req = json.loads(line)
    except ValueError: req = {}
    r = answer(req)
    try: c.sendall((json.dumps(r) + "\n").encode())
    except OSError: pass
    c.close()
    if req.get("op") == "turn-off":
        sys.exit(0)
EOF
chmod +x "$t/bin/vmwp"
touch "$t/vmlinuz"
start_vmms

# ---- an Off VM: no worker ----
new_vm cp
w cp 1 0 $((3 * MiB))
check "the cmdlets are listed" bash -c "'$B/hv' Get-Help | grep -q '^  Checkpoint-VM ' && '$B/hv' Get-Help | grep -q '^  Restore-VMSnapshot ' && '$B/hv' Get-Help | grep -q '^  Get-VMJob '"
check "Get-VM shows CheckpointType Production by default" [ "$(hv Get-VM cp -Json | py 'd[0]["checkpoint_type"]')" = Production ]
check "Set-VM -CheckpointType Standard" bash -c "'$B/hv' Set-VM cp -CheckpointType standard >/dev/null && [ \"\$('$B/hv' Get-VM cp -Json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"checkpoint_type\"])')\" = Standard ]"
check "...a bad type refused" bash -c "! '$B/hv' Set-VM cp -CheckpointType Sometimes 2>/dev/null"
hv Set-VM cp -CheckpointType Disabled >/dev/null
check "Checkpoint-VM with checkpoints Disabled refused" bash -c "'$B/hv' Checkpoint-VM cp 2>&1 | grep -q 'checkpoints are disabled'"
hv Set-VM cp -CheckpointType Production >/dev/null
base=$(disk cp)
check "Checkpoint-VM of an Off VM" hv Checkpoint-VM -Name cp -SnapshotName c1
cp "$t/cp.raw" "$t/c1.raw"
check "...the VM's disk is a new <base>_<GUID>.avhdx beside it" bash -c "[[ '$(disk cp)' =~ ^$t/cp_[0-9a-f-]{36}\\.avhdx\$ ]]"
check "...its parent is the frozen disk" [ "$(hv Get-VHD "$(disk cp)" -Json | py 'd["ParentPath"]')" = "$base" ]
check "...the checkpoint holds the old image, type Production, no saved state" bash -c "[ '$(cp_disk cp c1)' = '$base' ] && [ '$(cp_field cp c1 type)' = Production ] && [ '$(cp_field cp c1 state_file)' = None ]"
check "...the chains are clean" chains_ok cp
w cp 2 $((2 * MiB + 512)) $((2 * MiB))
check "guest data written into the child reads back" same cp
hv Checkpoint-VM cp -SnapshotName c2 >/dev/null && cp "$t/cp.raw" "$t/c2.raw"
w cp 3 $((5 * MiB)) $((3 * MiB + 4096))
check "Get-VMCheckpoint: c2's parent is c1" [ "$(cp_field cp c2 parent_name)" = c1 ]
check "Get-VMSnapshot's table has Hyper-V's columns" bash -c "'$B/hv' Get-VMSnapshot -VMName cp | head -1 | grep -q 'VMName.*Name.*SnapshotType.*CreationTime.*ParentCheckpointName'"
hv Checkpoint-VM cp >/dev/null
check "the default name is 'cp - (M/D/YYYY - h:mm:ss AM)'" bash -c "'$B/hv' Get-VMCheckpoint cp | grep -Eq 'cp - \\([0-9]+/[0-9]+/[0-9]{4} - [0-9]+:[0-9]{2}:[0-9]{2} [AP]M\\)'"
dflt=$(hv Get-VMCheckpoint cp -Json | py '[c["name"] for c in d if c["name"].startswith("cp - ")][0]')
check "Rename-VMCheckpoint" bash -c "'$B/hv' Rename-VMCheckpoint -VMName cp -Name '$dflt' -NewName c2b && [ \"\$('$B/hv' Get-VMCheckpoint cp -Json | python3 -c 'import json,sys; print(sorted(c[\"name\"] for c in json.load(sys.stdin)))')\" = \"['c1', 'c2', 'c2b']\" ]"
cp "$t/cp.raw" "$t/c2b.raw"
check "...an unknown checkpoint refused in one line" bash -c "! '$B/hv' Rename-VMCheckpoint -VMName cp -Name nope -NewName x 2>'$t/err' && [ \$(wc -l <'$t/err') = 1 ]"

# Apply an older checkpoint, write, checkpoint again: a branch.
check "Restore-VMCheckpoint c1 (Off VM)" hv Restore-VMCheckpoint -VMName cp -Name c1
cp "$t/c1.raw" "$t/cp.raw"
check "...the VM reads as it did at c1" same cp
check "...its disk is a new child of c1's frozen disk" [ "$(hv Get-VHD "$(disk cp)" -Json | py 'd["ParentPath"]')" = "$base" ]
check "...Off (c1 has no saved state)" [ "$(state cp)" = Off ]
check "...the chains are clean" chains_ok cp
w cp 4 $((1 * MiB)) $((4 * MiB))
hv Checkpoint-VM cp -SnapshotName c3 >/dev/null && cp "$t/cp.raw" "$t/c3.raw"
check "a branch: c3's parent is c1, as c2's is" bash -c "[ '$(cp_field cp c3 parent_name)' = c1 ] && [ '$(cp_field cp c2 parent_name)' = c1 ]"
w cp 5 $((9 * MiB)) $((MiB))
for c in c2 c2b c3; do
  check "checkpoint $c's frozen disk still reads as it did" same cp "$t/$c.raw" "$(cp_disk cp $c)"
done
check "the VM's disk reads as the branch's reference" same cp

# Remove: c1's frozen disk (the base) has two branches under it: it stays.
check "Remove-VMCheckpoint c1" hv Remove-VMCheckpoint -VMName cp -Name c1
check "...c2 and c3 are roots now" bash -c "[ -z '$(cp_field cp c2 parent_name)' ] && [ -z '$(cp_field cp c3 parent_name)' ]"
check "...the base stays: other branches use it (event)" bash -c "test -f '$base' && '$B/hv' Get-VMEvent cp | grep -q 'other checkpoints. disks still depend on them'"
check "...the chains are clean, the data unchanged" clean cp
check "Remove-VMCheckpoint c2 -IncludeAllChildCheckpoints (c2b under it)" hv Remove-VMCheckpoint -VMName cp -Name c2 -IncludeAllChildCheckpoints
check "...c3 is left" [ "$(cps cp)" = c3 ]
check "Remove-VMCheckpoint c3: everything folds into the base" hv Remove-VMCheckpoint -VMName cp -Name c3
check "...the VM's disk is the base again" [ "$(disk cp)" = "$base" ]
check "...no .avhdx is left" [ "$(avhdx)" = 0 ]
check "...the event log says what merged" bash -c "'$B/hv' Get-VMEvent cp | grep -q 'merged into $base'"
check "...the base passes Test-VHD and reads as the reference" clean cp
if command -v qemu-img >/dev/null; then
  check "...qemu-img compare: the base equals the reference" qemu-img compare -q -f vhdx -F raw "$base" "$t/cp.raw"
fi
check "Get-VMJob lists the merge jobs, Completed" bash -c "'$B/hv' Get-VMJob | grep -q 'merge.*Completed'"

# ---- a running VM (the stand-in worker) ----
hv Set-VM cp -CheckpointType Standard >/dev/null
hv Start-VM cp
D=$(hv Get-VM cp -Json | py 'd[0]["path"]')
w cp 6 $((3 * MiB)) $((MiB))
check "Checkpoint-VM (Standard) of a running VM" hv Checkpoint-VM cp -SnapshotName s1
cp "$t/cp.raw" "$t/s1.raw"
check "...Running again" is_state cp Running
check "...the worker uses the VM's disk" [ "$(echo '{"op":"status"}' | python3 -c "import socket,sys,json; s=socket.socket(socket.AF_UNIX); s.connect('$D/worker.sock'); s.sendall(b'{\"op\":\"status\"}\n'); print(json.loads(s.makefile().readline())['disks'][0]['path'])")" = "$(disk cp)" ]
check "...its saved state is <VM folder>/Snapshots/<id>.vmrs" bash -c "[ '$(cp_field cp s1 state_file)' = '$D/Snapshots/$(cp_field cp s1 id).vmrs' ] && test -s '$D/Snapshots/$(cp_field cp s1 id).vmrs'"
check "...the event log has the pause time" bash -c "'$B/hv' Get-VMEvent cp | grep -q 'paused [0-9]* ms for the checkpoint'"
w cp 7 $((4 * MiB)) $((MiB))
hv Set-VM cp -CheckpointType Production >/dev/null
check "Checkpoint-VM (Production) of a running VM: the guest frozen" bash -c "'$B/hv' Checkpoint-VM cp -SnapshotName p1 && [ '$(state cp)' = Running ]"
cp "$t/cp.raw" "$t/p1.raw"
check "...type Production, no saved state" bash -c "[ \"\$('$B/hv' Get-VMCheckpoint cp -Json | python3 -c 'import json,sys; print([(c[\"type\"], c.get(\"state_file\")) for c in json.load(sys.stdin) if c[\"name\"] == \"p1\"][0])')\" = \"('Production', None)\" ]"
w cp 8 $((6 * MiB)) $((MiB))
touch "$D/vss-fail"
check "Production, the guest cannot freeze: a Standard checkpoint instead" bash -c "'$B/hv' Checkpoint-VM cp -SnapshotName p2 && [ \"\$('$B/hv' Get-VMCheckpoint cp -Json | python3 -c 'import json,sys; print([c[\"type\"] for c in json.load(sys.stdin) if c[\"name\"] == \"p2\"][0])')\" = Standard ]"
check "...and says so in the event log" bash -c "'$B/hv' Get-VMEvent cp | grep -q 'could not freeze its file systems.*a standard checkpoint instead'"
cp "$t/cp.raw" "$t/p2.raw"
hv Set-VM cp -CheckpointType ProductionOnly >/dev/null
before="$(cps cp)|$(disk cp)|$(avhdx)"
check "ProductionOnly, the guest cannot freeze: fails in one line" bash -c "! '$B/hv' Checkpoint-VM cp -SnapshotName po 2>'$t/err' && [ \$(wc -l <'$t/err') = 1 ] && grep -q 'VSS writer failed' '$t/err'"
check "...nothing changed, still Running" [ "$before|Running" = "$(cps cp)|$(disk cp)|$(avhdx)|$(state cp)" ]
rm "$D/vss-fail"
hv Set-VM cp -CheckpointType Standard >/dev/null
w cp 9 $((7 * MiB)) $((MiB))
check "a running VM: the chains are clean, the data is the reference's" clean cp

# Remove the newest (p2: its frozen disk is the parent of the running disk): a live merge.
touch "$D/merge-hold"
hv Remove-VMCheckpoint -VMName cp -Name p2 -AsJob >"$t/job"
check "Remove-VMCheckpoint -AsJob prints the merge job" grep -Eq '^[0-9a-f-]{36}$' "$t/job"
check "...Get-VM shows Merging Disk meanwhile" [ "$(status cp)" = "Merging Disk" ]
check "...Stop-VM refused meanwhile (32788)" bash -c "'$B/hv' Stop-VM cp 2>&1 | grep -q 'Merging Disk (error 32788'"
check "...Checkpoint-VM refused meanwhile (32788)" bash -c "'$B/hv' Checkpoint-VM cp 2>&1 | grep -q 32788"
check "...Get-VMJob shows it Running" bash -c "'$B/hv' Get-VMJob -Id $(cat "$t/job") | grep -q 'merge.*Running'"
rm "$D/merge-hold"
check "...then done: the VM's disk is p2's frozen disk" until_true bash -c "[ \"\$('$B/hv' Get-VMJob -Id $(cat "$t/job") -Json | grep -c Completed)\" = 1 ]"
check "...the VM runs on its parent, Operating normally" bash -c "[ '$(status cp)' = 'Operating normally' ] && [ '$(state cp)' = Running ]"
check "...data unchanged, chains clean" clean cp

# Restore s1 on the running VM: turned off first, Saved with s1's state.
check "Restore-VMSnapshot s1 of a running VM" hv Restore-VMSnapshot -VMName cp -Name s1 -Confirm:\$false
cp "$t/s1.raw" "$t/cp.raw"
check "...Saved with a copy of s1's state" bash -c "[ '$(state cp)' = Saved ] && cmp -s '$D/Snapshots/$(cp_field cp s1 id).vmrs' '$D/$(basename "$D").vmrs'"
check "...reads as at s1" same cp
check "Start-VM restores it" bash -c "'$B/hv' Start-VM cp && [ \"\$('$B/hv' Get-VM cp -Json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0][\"state\"])')\" = Running ]"
w cp 10 $((10 * MiB)) $((2 * MiB))
# Remove s1 while it runs: its frozen disk has p1's chain and the running disk under it: pending.
hv Remove-VMCheckpoint -VMName cp -Name s1
check "Remove-VMCheckpoint of a running VM's older checkpoint: merge pending (event)" bash -c "'$B/hv' Get-VMEvent cp | grep -q 'merge pending: merged automatically when the virtual machine is next Off'"
hv Remove-VMCheckpoint -VMName cp -Name p1
check "...data unchanged" same cp
hv Stop-VM cp -TurnOff
until_true jobs_done
check "...merged once Off: no checkpoint, the base is the VM's disk again" [ "$(disk cp)" = "$base" ]
check "...no .avhdx left, the data is the reference's" bash -c "[ \$(find '$t' -name '*.avhdx' | wc -l) = 0 ]"
check "...chains clean, data unchanged" clean cp
if command -v qemu-img >/dev/null; then
  check "...qemu-img compare" qemu-img compare -q -f vhdx -F raw "$base" "$t/cp.raw"
fi

# ---- kill -9 of vmms at each step (VIRIDIAN_VMMS_CRASH_AT), then a restart ----
crash() { # crash STEP CMD...: vmms dies at STEP while CMD runs; restarted, it must recover
  stop_vmms
  VIRIDIAN_VMMS_CRASH_AT=$1 "$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.05; done
  "${@:2}" >/dev/null 2>&1
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then echo "  (vmms did not reach $1)"; stop_vmms; start_vmms; return 1; fi
  wait "$pid" 2>/dev/null; pid=""
  rm -f "$VIRIDIAN_SOCKET"
  start_vmms
  until_true jobs_done
}
recovered() { # the chains are clean, the data all there (REF), the VM starts (the worker opens its disks)
  local vm=$1 ref=$2 st
  until_true jobs_done || { echo "  jobs still running"; return 1; }
  chains_ok "$vm" || return 1
  same "$vm" "$ref" || { echo "  $vm's data differs from $ref"; return 1; }
  st=$(state "$vm")
  [ "$st" = Off ] || [ "$st" = Saved ] || [ "$st" = Running ] || { echo "  $vm is $st"; return 1; }
  [ "$(status "$vm")" = "Operating normally" ] || { echo "  $vm is $(status "$vm")"; return 1; }
  if [ "$st" != Running ]; then
    "$B/hv" Start-VM "$vm" >/dev/null || { echo "  $vm does not start"; return 1; }
  fi
  "$B/hv" Stop-VM "$vm" -TurnOff >/dev/null
  until_true jobs_done
}
new_vm k
hv Set-VM k -CheckpointType Standard >/dev/null
w k 11 0 $((3 * MiB))
for step in checkpoint-intent checkpoint-children checkpoint-committed; do
  check "vmms killed at $step" crash $step hv Checkpoint-VM k -SnapshotName "x-$step"
  check "crash at $step (Off VM): recovered" recovered k "$t/k.raw"
done
hv Checkpoint-VM k -SnapshotName a1 && cp "$t/k.raw" "$t/a1.raw"
w k 12 $((2 * MiB)) $((3 * MiB))
for step in apply-intent apply-children apply-committed apply-renamed; do
  check "vmms killed at $step" crash $step hv Restore-VMCheckpoint -VMName k -Name a1
  if [ "$(hv Get-VM k -Json | py 'd[0]["parent_checkpoint"]')" = "$(cp_field k a1 id)" ] && ! same k; then
    cp "$t/a1.raw" "$t/k.raw"   # the apply went through: the VM reads as a1
  fi
  check "crash at $step: recovered" recovered k "$t/k.raw"
  w k $((20 + ${#step})) $((4 * MiB)) $((2 * MiB))
done
hv Remove-VMCheckpoint -VMName k -Name '*' >/dev/null
until_true jobs_done
folded() { [ -z "$(cps k)" ] && [ "$(disk k)" = "$t/k.vhdx" ] || { echo "  checkpoints: $(cps k); disk $(disk k)"; return 1; }; }
for step in remove-committed fold-intent fold-redo fold-apply fold-committed; do
  hv Checkpoint-VM k -SnapshotName m1 >/dev/null
  w k $((30 + ${#step})) $((5 * MiB)) $((3 * MiB + 512))
  check "vmms killed at $step" crash $step hv Remove-VMCheckpoint -VMName k -Name m1
  check "crash at $step: recovered" recovered k "$t/k.raw"
  check "...no checkpoint left, folded into the base" folded
done
# applying m1 leaves the VM's disk to nobody: deleted (merge-delete)
hv Checkpoint-VM k -SnapshotName m1 >/dev/null && cp "$t/k.raw" "$t/m1.raw"
w k 36 $((5 * MiB)) $((3 * MiB))
check "vmms killed at merge-delete" crash merge-delete hv Restore-VMCheckpoint -VMName k -Name m1
cp "$t/m1.raw" "$t/k.raw"
check "crash at merge-delete: recovered" recovered k "$t/k.raw"
hv Remove-VMCheckpoint -VMName k -Name m1 >/dev/null
check "...no checkpoint left, folded into the base" folded
check "...no .avhdx left" [ "$(avhdx)" = 0 ]
hv Start-VM k
for step in checkpoint-saved checkpoint-switch checkpoint-switched checkpoint-committed; do
  w k $((40 + ${#step})) $((6 * MiB)) $MiB
  check "vmms killed at $step" crash $step hv Checkpoint-VM k -SnapshotName "r-$step"
  check "crash at $step (running VM): recovered, Running" is_state k Running
  check "...chains clean, data all there" clean k
done
for step in live-merge-intent live-merge-committed; do
  hv Checkpoint-VM k -SnapshotName "l-$step" >/dev/null
  w k $((50 + ${#step})) $((8 * MiB)) $MiB
  check "vmms killed at $step" crash $step hv Remove-VMCheckpoint -VMName k -Name "l-$step"
  until_true jobs_done
  check "crash at $step: recovered, Running" is_state k Running
  check "...chains clean, data all there" clean k
done
hv Stop-VM k -TurnOff >/dev/null
hv Remove-VMCheckpoint -VMName k -Name '*' >/dev/null
until_true jobs_done
check "after all that: every checkpoint removed, the base alone reads as the reference" bash -c "[ '$(disk k)' = '$t/k.vhdx' ] && [ -z '$(cps k)' ]"
check "...chains clean, data all there" clean k
[ "$fails" = 0 ] || { echo "--- vmms log"; tail -40 "$t/vmms.log"; }
exit $((fails > 0))
