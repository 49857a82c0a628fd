#!/usr/bin/env bash
# vmms's virtual switches and network adapters, without a guest (as root: taps, veth pairs):
#  - New-/Get-/Remove-VMSwitch: one vmswitch process per switch (own session, sockets and log
#    under <root>/Virtual Switches/<GUID>/), Internal makes the host's tap, External needs an
#    existing interface, errors;
#  - Add-/Remove-/Connect-/Disconnect-/Get-VMNetworkAdapter, Set-VMNetworkAdapterVlan,
#    Set-VMNetworkAdapter in the inventory, with errors;
#  - Start-VM's vmwp command line (--nic switch=...,mac=...,vlan=...,name=...), seen through a
#    stand-in vmwp (VIRIDIAN_VMWP) that answers the worker's control socket and plugs its
#    adapters into the switches with the real hello;
#  - a running VM's adapters re-plugged (nic-connect / nic-disconnect), Remove-VMSwitch unplugging
#    them first;
#  - vmms restarts: re-attach to the same switch process; a killed switch restarted by vmms; a
#    switch that died while vmms was down started again.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/skip.bash
B=$(cd "${VIRIDIAN_BUILD:-build}" && pwd)
[ -x "$B/vmms" ] && [ -x "$B/hv" ] && [ -x "$B/vmswitch" ] || { echo "build $B/vmms, $B/hv and $B/vmswitch first (make)"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "skip: needs root (taps and veth interfaces)"; exit 77; }
t=$(mktemp -d /tmp/vmms-sw.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock VIRIDIAN_BOOT_ID=boot-1 VIRIDIAN_VMWP=$t/bin/vmwp
n=$(( $$ % 100000 ))
up=vx$n-a peer=vx$n-b  # the External switch's interface: a veth pair made here
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  # Switches and workers run in their own sessions and outlive vmms by design.
  pkill -f -- "--control $t/" 2>/dev/null
  pkill -f -- "--control $t/root/Virtual Switches/" 2>/dev/null
  ip link del "$up" 2>/dev/null
  sleep 0.2; rm -rf "$t"
}
trap cleanup EXIT
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
refused() { ! "$@" >"$t/out" 2>"$t/err" && [ "$(wc -l <"$t/err")" = 1 ]; } # nonzero, one line
says() { grep -q -- "$1" "$t/err"; }                                      # the refusal's text
hv() { "$B/hv" "$@"; }
jctl() { printf '%s\n' "$2" | socat -t 5 - "UNIX-CONNECT:$1" 2>/dev/null; }
start_vmms() {
  "$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & pid=$!
  for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
}
stop_vmms() { kill "$pid"; wait "$pid" 2>/dev/null; pid=""; }
until_true() { for _ in $(seq 50); do "$@" && return 0; sleep 0.1; done; return 1; } # up to 5 s
sw_json() { hv Get-VMSwitch "$1" -Json; }
sw_pid() { sw_json "$1" | sed -n 's/.*"ProcessId": \([0-9]*\).*/\1/p'; }
sw_id() { sw_json "$1" | sed -n 's/.*"Id": "\([0-9a-f-]*\)".*/\1/p'; }
sw_state() { sw_json "$1" | sed -n 's/.*"State": "\([A-Za-z ]*\)".*/\1/p'; }
sw_dir() { echo "$t/root/Virtual Switches/$(sw_id "$1")"; }
nic_mac() { hv Get-VMNetworkAdapter "$1" -Name "$2" -Json | sed -n 's/.*"MacAddress": "\([0-9A-F]*\)".*/\1/p'; }

# A stand-in for vmwp: prints its argv, answers the control socket as a worker does (status with
# "nics", nic-connect, nic-disconnect, turn-off) and plugs each adapter that should be on a
# switch into it with the real hello (include/vswitch/port.h), retrying every half second.
mkdir -p "$t/bin"
ln -s "$B/vmswitch" "$t/bin/vmswitch"  # vmms runs the vmswitch that sits beside its vmwp
cat >"$t/bin/vmwp" <<'EOF'
#!/usr/bin/env python3
import json, os, select, socket, sys, time
args = sys.argv[1:]
print("ARGV " + json.dumps(args), flush=True)
ctl = args[args.index("--control") + 1]
nics = []
for i, a in enumerate(args):
    if a == "--nic":
        kv, flags = {}, set()
        for tok in args[i + 1].split(","):
            k, eq, v = tok.partition("=")
            (kv.__setitem__(k, v) if eq else flags.add(k))
        nics.append(dict(switch=kv.get("switch", ""), mac=kv["mac"], vlan=int(kv.get("vlan", "0")),
                         name=kv.get("name", ""), spoofing="spoofing" in flags, sock=None, error=""))
def unplug(n):
    if n["sock"]:
        n["sock"].close()
    n["sock"] = None
def plug(n):
    unplug(n)
    if not n["switch"]:
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.settimeout(2)
        s.connect(n["switch"])
        s.send(json.dumps(dict(op="connect", name=n["name"], mac=n["mac"], vlan=n["vlan"], mac_spoofing=n["spoofing"])).encode())
        r = json.loads(s.recv(512) or b"{}")
        if r.get("ok"):
            s.setblocking(False)
            n["sock"], n["error"] = s, ""
            return
        n["error"] = "switch refused: " + r.get("error", "closed")
    except (OSError, ValueError) as e:
        n["error"] = str(e)
    s.close()
for n in nics:
    plug(n)
lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try: os.unlink(ctl)
except OSError: pass
lsock.bind(ctl); lsock.listen(8)
start, last_try = time.time(), time.time()
def answer(req):
    op = req.get("op")
    if op == "status":
        return dict(ok=True, state="Running", uptime_ms=int((time.time() - start) * 1000), heartbeat="NoContact",
                    nics=[dict(tap="", switch=n["switch"], vlan=n["vlan"], connected=n["sock"] is not None, error=n["error"],
                               mac=n["mac"], link_up=n["sock"] is not None, tx_packets=0, tx_bytes=0, rx_packets=0,
                               rx_bytes=0, tx_drops=0, rx_drops=0, bad_packets=0) for n in nics])
    if op in ("nic-connect", "nic-disconnect"):
        print("OP " + json.dumps(req, sort_keys=True), flush=True)
        i = req.get("nic", -1)
        if not 0 <= i < len(nics):
            return dict(ok=False, error="no such network adapter")
        n = nics[i]
        n["switch"] = req.get("switch", "") if op == "nic-connect" else ""
        if "vlan" in req:
            n["vlan"] = req["vlan"]
        n["error"] = ""
        plug(n) if n["switch"] else unplug(n)
        return dict(ok=True)
    if op in ("turn-off", "shutdown"):
        return dict(ok=True, exit=True)
    return dict(ok=False, error="unknown op " + str(op))
while True:
    socks = [n["sock"] for n in nics if n["sock"]]
    r, _, _ = select.select([lsock] + socks, [], [], 0.5)
    for s in r:
        if s is lsock:
            c, _ = lsock.accept()
            c.settimeout(2)
            line = b""
            while not line.endswith(b"\n"):
                chunk = c.recv(4096)
                if not chunk:
                    break
                line += chunk
            rep = answer(json.loads(line or b"{}"))
            c.sendall((json.dumps(rep) + "\n").encode()); c.close()
            if rep.get("exit"):
                sys.exit(0)
        else:
            for n in nics:
                if n["sock"] is s:
                    try:
                        if not s.recv(65536):  # the switch closed the port: the cable is out
                            unplug(n); n["error"] = "the switch closed the connection"
                    except BlockingIOError:
                        pass
    if time.time() - last_try > 0.5:
        last_try = time.time()
        for n in nics:
            if n["switch"] and not n["sock"]:
                plug(n)
EOF
chmod +x "$t/bin/vmwp"
start_vmms

# ---- switches ----
check "New-VMSwitch Private" hv New-VMSwitch -Name "Private Net" -SwitchType Private
p=$(sw_pid "private net"); d=$(sw_dir "Private Net")
check "...its vmswitch runs (the one beside vmwp), in its own session" bash -c "[ -n '$p' ] && kill -0 $p && [ \"\$(readlink /proc/$p/exe)\" = '$(readlink -f "$B/vmswitch")' ] && [ \"\$(ps -o sid= -p $p | tr -d ' ')\" = $p ]"
check "...sockets and log under <root>/Virtual Switches/<GUID>/" test -S "$d/port.sock" -a -S "$d/control.sock" -a -f "$d/vmswitch.log"
check "...its control socket answers status" bash -c "printf '%s\n' '{\"op\":\"status\"}' | socat -t 5 - 'UNIX-CONNECT:$d/control.sock' | grep -q '\"name\":\"Private Net\",\"type\":\"Private\"'"
check "...Get-VMSwitch: Running, Hyper-V's columns" bash -c "'$B/hv' Get-VMSwitch | head -1 | grep -q 'Name.*SwitchType.*NetAdapterInterfaceDescription' && '$B/hv' Get-VMSwitch 'Private*' | grep -q '^Private Net  *Private .*Running\$'"
check "duplicate switch name refused (other case)" refused hv New-VMSwitch -Name "PRIVATE NET" -SwitchType Internal
check "...saying so" says "already exists"
check "no type refused" refused hv New-VMSwitch -Name x
check "bad type refused" refused hv New-VMSwitch -Name x -SwitchType Bridge
check "-SwitchType External without -NetAdapterName refused" refused hv New-VMSwitch -Name x -SwitchType External
check "-NetAdapterName with -SwitchType Private refused" refused hv New-VMSwitch -Name x -SwitchType Private -NetAdapterName eth0
check "External on a missing interface refused" refused hv New-VMSwitch -Name x -NetAdapterName nosuch$n
check "...saying which" says "no network adapter named 'nosuch$n'"
check "Get-VMSwitch of an unknown name refused" refused hv Get-VMSwitch nobody
check "...Hyper-V's words" says "unable to find a virtual switch with name 'nobody'"
check "nothing half-created" [ "$(ls "$t/root/Virtual Switches" | wc -l)" = 1 ]

# Internal: the host's adapter is a tap, vs-NAME; a second switch whose name starts alike gets vs-...-2.
i1=vt${n}xxxxxxx-one i2=vt${n}xxxxxxx-two
h1=$(printf 'vs-%s' "$i1" | cut -c1-15)
check "New-VMSwitch Internal" hv New-VMSwitch -Name "$i1" -SwitchType Internal
check "...the host's tap $h1 exists and is up" bash -c "ip link show '$h1' | grep -q 'UP'"
check "...Get-VMSwitch names it" bash -c "'$B/hv' Get-VMSwitch '$i1' -Json | grep -q '\"HostAdapterName\": \"$h1\"'"
check "a second Internal switch: its own tap (a -2 name)" bash -c "'$B/hv' New-VMSwitch -Name '$i2' -SwitchType Internal >/dev/null && h=\$('$B/hv' Get-VMSwitch '$i2' -Json | sed -n 's/.*\"HostAdapterName\": \"\\(.*\\)\".*/\\1/p') && [ \"\$h\" != '$h1' ] && [ \"\${h%-2}\" != \"\$h\" ] && ip link show \"\$h\" >/dev/null"
p2=$(sw_pid "$i2"); d2=$(sw_dir "$i2"); h2=$(sw_json "$i2" | sed -n 's/.*"HostAdapterName": "\(.*\)".*/\1/p')
check "Remove-VMSwitch Internal: process, tap and folder gone" bash -c "'$B/hv' Remove-VMSwitch '$i2' -Force && ! kill -0 $p2 2>/dev/null && ! ip link show '$h2' >/dev/null 2>&1 && ! test -e '$d2'"
check "...and it is gone from Get-VMSwitch" refused hv Get-VMSwitch "$i2"

# External: bound to an existing interface (a veth pair here; dummy interfaces may be missing).
# Up before the switch binds to it: vmswitch drops an uplink that reports ENETDOWN.
ip link add "$up" type veth peer name "$peer" && ip link set "$peer" up && ip link set "$up" up || echo "note: cannot make a veth pair"
check "New-VMSwitch -NetAdapterName (External) on an existing interface" hv New-VMSwitch -Name ext -NetAdapterName "$up"
check "...External, Running, the interface in NetAdapterInterfaceDescription" bash -c "'$B/hv' Get-VMSwitch ext | grep -q '^ext  *External  *$up.*Running\$'"
check "...the uplink is a port of the switch" bash -c "printf '%s\n' '{\"op\":\"status\"}' | socat -t 5 - 'UNIX-CONNECT:$(sw_dir ext)/control.sock' | grep -q '\"name\":\"$up\",\"kind\":\"uplink\"'"
check "a second switch on the same interface refused (32788)" bash -c "'$B/hv' New-VMSwitch -Name ext2 -NetAdapterName '$up' 2>&1 | grep -q 32788"
check "Get-VMSwitch -SwitchType External lists one" [ "$(hv Get-VMSwitch -SwitchType External -Json | grep -c '"Name"')" = 1 ]

# ---- adapters in the inventory ----
hv New-VM -Name web >/dev/null
hv New-VM -Name db >/dev/null
check "Add-VMNetworkAdapter: a dynamic MAC from 00155D" bash -c "'$B/hv' Add-VMNetworkAdapter web | grep -q '^Network Adapter  *web  *00155D[0-9A-F]\{6\} *0 '"
check "...Get-VMNetworkAdapter: DynamicMacAddressEnabled" bash -c "'$B/hv' Get-VMNetworkAdapter web -Json | grep -q '\"DynamicMacAddressEnabled\": true'"
check "Add-VMNetworkAdapter -SwitchName -StaticMacAddress" hv Add-VMNetworkAdapter -VMName web -Name lan -SwitchName "private net" -StaticMacAddress 00-15-5D-AA-BB-01
check "...stored in Hyper-V's MAC form, on the switch" bash -c "'$B/hv' Get-VMNetworkAdapter web -Name lan | grep -q '^lan  *web  *Private Net  *00155DAABB01 '"
check "bad MAC refused" refused hv Add-VMNetworkAdapter web -StaticMacAddress 00155DAABB0G
check "...saying so" says "not a valid MAC address"
check "multicast MAC refused" refused hv Add-VMNetworkAdapter web -StaticMacAddress 01:15:5d:aa:bb:01
check "a MAC in use refused" refused hv Add-VMNetworkAdapter db -StaticMacAddress 00155daabb01
check "...saying by whom" says "already used by the network adapter 'lan' of 'web'"
check "unknown switch refused" refused hv Add-VMNetworkAdapter web -SwitchName nowhere
check "...Hyper-V's words" says "unable to find a virtual switch with name 'nowhere'"
check "unknown VM refused" refused hv Add-VMNetworkAdapter nobody
for k in 3 4 5 6 7 8; do hv Add-VMNetworkAdapter db -Name "n$k" >/dev/null; done
hv Add-VMNetworkAdapter db -Name n1 >/dev/null; hv Add-VMNetworkAdapter db -Name n2 >/dev/null
check "a ninth adapter refused" refused hv Add-VMNetworkAdapter db -Name n9
check "...saying the limit" says "already has 8 network adapters"
check "Remove-VMNetworkAdapter without -Name on a VM with several refused" refused hv Remove-VMNetworkAdapter db
check "Remove-VMNetworkAdapter of an unknown name refused" refused hv Remove-VMNetworkAdapter db -Name nope
check "...saying so" says "has no network adapter named 'nope'"
check "Remove-VMNetworkAdapter -Name (wildcards)" bash -c "'$B/hv' Remove-VMNetworkAdapter db -Name 'n[3-8]' && [ \"\$('$B/hv' Get-VMNetworkAdapter db -Json | grep -c '\"Name\"')\" = 2 ]"
check "Connect-VMNetworkAdapter (VM Off): the inventory" bash -c "'$B/hv' Connect-VMNetworkAdapter db -Name n1 -SwitchName ext && '$B/hv' Get-VMNetworkAdapter db -Name n1 | grep -q ' ext '"
check "Disconnect-VMNetworkAdapter (VM Off)" bash -c "'$B/hv' Disconnect-VMNetworkAdapter db -Name n1 && [ -z \"\$('$B/hv' Get-VMNetworkAdapter db -Name n1 -Json | sed -n 's/.*\"SwitchName\": \"\\(.*\\)\".*/\\1/p')\" ]"
check "Connect-VMNetworkAdapter to an unknown switch refused" refused hv Connect-VMNetworkAdapter db -SwitchName nowhere
check "Set-VMNetworkAdapterVlan -Access -VlanId 5" bash -c "'$B/hv' Set-VMNetworkAdapterVlan web -VMNetworkAdapterName lan -Access -VlanId 5 && '$B/hv' Get-VMNetworkAdapterVlan web | grep -q '^web  *lan  *Access  *5\$'"
check "VLAN 0 with -Access refused" refused hv Set-VMNetworkAdapterVlan web -Access -VlanId 0
check "VLAN 4095 refused" refused hv Set-VMNetworkAdapterVlan web -Access -VlanId 4095
check "...saying the range" says "1 to 4094"
check "-Untagged" bash -c "'$B/hv' Set-VMNetworkAdapterVlan db -VMNetworkAdapterName n2 -Access -VlanId 12 && '$B/hv' Set-VMNetworkAdapterVlan db -VMNetworkAdapterName n2 -Untagged && '$B/hv' Get-VMNetworkAdapterVlan db -VMNetworkAdapterName n2 | grep -q 'Untagged  *0\$'"
check "Set-VMNetworkAdapter -MacAddressSpoofing On" bash -c "'$B/hv' Set-VMNetworkAdapter web -Name lan -MacAddressSpoofing On && '$B/hv' Get-VMNetworkAdapter web -Name lan -Json | grep -q '\"MacAddressSpoofing\": \"On\"'"
check "-MacAddressSpoofing Maybe refused" refused hv Set-VMNetworkAdapter web -MacAddressSpoofing Maybe
check "the changes are in the VM's event log" bash -c "'$B/hv' Get-VMEvent web | grep -q \"network adapter 'lan': access VLAN 5\""

# ---- a running VM (the stand-in vmwp) ----
touch "$t/vmlinuz"
hv Set-VMFirmware web -KernelPath "$t/vmlinuz" >/dev/null
check "Start-VM with adapters" hv Start-VM web
vmdir=$(hv Get-VM web -Json | sed -n 's/.*"path": "\(.*\)".*/\1/p')
pd="$(sw_dir "Private Net")"
argv=$(sed -n 's/^ARGV //p' "$vmdir/worker.log" | tail -1)
check "vmwp got --nic switch=<root>/Virtual Switches/<GUID>/port.sock,mac,vlan,name,spoofing" \
  grep -qF "\"--nic\", \"mac=$(nic_mac web "Network Adapter" | sed 's/../&:/g; s/:$//' | tr A-F a-f),vlan=0,name=web/0\", \"--nic\", \"switch=$pd/port.sock,mac=00:15:5d:aa:bb:01,vlan=5,name=web/1,spoofing\"" <<<"$argv"
check "...the switch has the adapter's port (VLAN 5)" until_true bash -c "printf '%s\n' '{\"op\":\"status\"}' | socat -t 5 - 'UNIX-CONNECT:$pd/control.sock' | grep -q '\"name\":\"web/1\",\"kind\":\"adapter\",\"mac\":\"00:15:5d:aa:bb:01\",\"vlan\":5,\"mac_spoofing\":true'"
check "Get-VMNetworkAdapter of the running VM: Connected, Status Ok, counters" bash -c "'$B/hv' Get-VMNetworkAdapter web -Name lan | grep -q '  Ok  *True  *0  *0  *0\$' && '$B/hv' Get-VMNetworkAdapter web -Name lan -Json | grep -q '\"PacketsReceived\": 0'"
check "Get-VMSwitch counts the connected adapter" bash -c "'$B/hv' Get-VMSwitch 'Private Net' -Json | grep -q '\"ConnectedAdapters\": 1'"
check "Add-VMNetworkAdapter to a running VM refused (32788)" bash -c "'$B/hv' Add-VMNetworkAdapter web 2>&1 | grep -q 32788"
check "Remove-VMNetworkAdapter from a running VM refused (32788)" bash -c "'$B/hv' Remove-VMNetworkAdapter web -Name lan 2>&1 | grep -q 32788"
check "Connect-VMNetworkAdapter on the running VM: nic-connect to the worker" bash -c "'$B/hv' Connect-VMNetworkAdapter web -Name 'Network Adapter' -SwitchName 'Private Net' && grep -qF '\"nic\": 0, \"op\": \"nic-connect\", \"switch\": \"$pd/port.sock\", \"vlan\": 0' '$vmdir/worker.log'"
check "...plugged into the switch, and in the inventory" bash -c "'$B/hv' Get-VMSwitch 'Private Net' -Json | grep -q '\"ConnectedAdapters\": 2' && '$B/hv' Get-VMNetworkAdapter web -Name 'Network Adapter' | grep -q 'Private Net.* Ok  *True'"
check "Set-VMNetworkAdapterVlan on the running VM: re-plugged with the new VLAN" bash -c "'$B/hv' Set-VMNetworkAdapterVlan web -VMNetworkAdapterName lan -Access -VlanId 9 && grep -qF '\"nic\": 1, \"op\": \"nic-connect\", \"switch\": \"$pd/port.sock\", \"vlan\": 9' '$vmdir/worker.log' && printf '%s\n' '{\"op\":\"status\"}' | socat -t 5 - 'UNIX-CONNECT:$pd/control.sock' | grep -q '\"name\":\"web/1\",\"kind\":\"adapter\",\"mac\":\"00:15:5d:aa:bb:01\",\"vlan\":9'"
check "Set-VMNetworkAdapter on the running VM: at the next start" bash -c "'$B/hv' Set-VMNetworkAdapter web -Name lan -MacAddressSpoofing Off && '$B/hv' Get-VMEvent web | tail -1 | grep -q 'takes effect at the next start'"
check "Disconnect-VMNetworkAdapter on the running VM: nic-disconnect" bash -c "'$B/hv' Disconnect-VMNetworkAdapter web -Name 'Network Adapter' && grep -qF '\"nic\": 0, \"op\": \"nic-disconnect\"' '$vmdir/worker.log' && '$B/hv' Get-VMSwitch 'Private Net' -Json | grep -q '\"ConnectedAdapters\": 1' && '$B/hv' Get-VMNetworkAdapter web -Name 'Network Adapter' | grep -q 'Disconnected  *False'"

# ---- vmms restarts, switches that die ----
p=$(sw_pid "Private Net"); pe=$(sw_pid ext)
stop_vmms
check "switches outlive vmms" kill -0 "$p"
start_vmms
check "re-attached after a vmms restart: the same process" [ "$(sw_pid "Private Net")" = "$p" ]
check "...Running" [ "$(sw_state "Private Net")" = Running ]
check "...the VM's adapter still connected" bash -c "'$B/hv' Get-VMNetworkAdapter web -Name lan | grep -q ' Ok  *True'"
kill -9 "$p"
check "a killed switch is restarted by vmms" until_true bash -c "q=\$('$B/hv' Get-VMSwitch 'Private Net' -Json | sed -n 's/.*\"ProcessId\": \\([0-9]*\\).*/\\1/p'); [ -n \"\$q\" ] && [ \"\$q\" != 0 ] && [ \"\$q\" != $p ] && '$B/hv' Get-VMSwitch 'Private Net' | grep -q Running"
check "...the reason kept (LastError)" bash -c "'$B/hv' Get-VMSwitch 'Private Net' -Json | grep -q '\"LastError\": \"vmswitch (pid $p) exited'"
check "...the worker plugs back in" until_true bash -c "'$B/hv' Get-VMSwitch 'Private Net' -Json | grep -q '\"ConnectedAdapters\": 1'"
p=$(sw_pid "Private Net")
stop_vmms
kill -9 "$pe"
sleep 0.2
start_vmms
check "a switch that died while vmms was down is started again" bash -c "q=\$('$B/hv' Get-VMSwitch ext -Json | sed -n 's/.*\"ProcessId\": \\([0-9]*\\).*/\\1/p'); [ -n \"\$q\" ] && [ \"\$q\" != $pe ] && kill -0 \$q"
check "...Running" until_true bash -c "[ \"\$('$B/hv' Get-VMSwitch ext -Json | sed -n 's/.*\"State\": \"\\(.*\\)\".*/\\1/p')\" = Running ]"
check "...the others re-attached" [ "$(sw_pid "Private Net")" = "$p" ]
# A host restart: no process survives it; vmms starts every switch (the VM too: StartIfRunning).
old="$(sw_pid "Private Net") $(sw_pid ext) $(sw_pid "$i1") $(hv Get-VM web -Json | sed -n 's/.*"worker_pid": \([0-9]*\).*/\1/p')"
stop_vmms
kill -9 $old
sleep 0.2
export VIRIDIAN_BOOT_ID=boot-2
start_vmms
check "after a host restart every switch runs again" until_true bash -c "for s in 'Private Net' ext '$i1'; do '$B/hv' Get-VMSwitch \"\$s\" | grep -q 'Running\$' || exit 1; done"
check "...and the VM's adapter is plugged in again" until_true bash -c "'$B/hv' Get-VMNetworkAdapter web -Name lan | grep -q ' Ok  *True'"

# Remove-VMSwitch with a running VM on it: the worker unplugs first, the adapter stays, not connected.
p=$(sw_pid "Private Net"); d=$(sw_dir "Private Net")
check "Remove-VMSwitch with a running VM's adapter on it" hv Remove-VMSwitch "Private Net"
check "...the worker got nic-disconnect" bash -c "[ \"\$(grep -c '\"nic\": 1, \"op\": \"nic-disconnect\"' '$vmdir/worker.log')\" = 1 ]"
check "...the adapter is not connected" bash -c "'$B/hv' Get-VMNetworkAdapter web -Name lan -Json | grep -q '\"SwitchName\": \"\"' && '$B/hv' Get-VMEvent web | tail -1 | grep -q \"virtual switch 'Private Net' removed\""
check "...the process and its folder are gone" bash -c "! kill -0 $p 2>/dev/null && ! test -e '$d'"
check "Stop-VM -TurnOff" hv Stop-VM web -TurnOff
check "Remove-VM takes its adapters" bash -c "'$B/hv' Remove-VM db && ! '$B/hv' Get-VMNetworkAdapter -All -Json | grep -q '\"VMName\": \"db\"'"
pe=$(sw_pid ext)
check "Remove-VMSwitch External" bash -c "'$B/hv' Remove-VMSwitch ext && ! kill -0 $pe 2>/dev/null"
check "Remove-VMSwitch of an unknown switch refused" refused hv Remove-VMSwitch ext
hv Remove-VMSwitch "$i1" >/dev/null
# The real vmwp (a tiny kernel that halts; needs /dev/kvm): its --nic parser takes what vmms
# builds, its adapter plugs into the switch, and it follows nic-connect / nic-disconnect.
if kvm_usable; then
  stop_vmms
  VIRIDIAN_VMWP=$B/vmwp start_vmms
  python3 bench/boot/tiny-bzimage.py --halt "$t/halt.bz"
  hv New-VM -Name real -MemoryStartupBytes 64MB >/dev/null
  hv Set-VMFirmware real -KernelPath "$t/halt.bz" >/dev/null
  hv New-VMSwitch -Name vmsw -SwitchType Private >/dev/null
  hv Add-VMNetworkAdapter real -SwitchName vmsw -StaticMacAddress 00155DAABB77 >/dev/null
  hv Add-VMNetworkAdapter real -Name spare >/dev/null
  hv Set-VMNetworkAdapterVlan real -VMNetworkAdapterName "Network Adapter" -Access -VlanId 3 >/dev/null
  rd=$(sw_dir vmsw)
  port_of() { grep -q "\"name\":\"real/$1\",\"kind\":\"adapter\",\"mac\":\"$2\",\"vlan\":$3," <<<"$(printf '%s\n' '{"op":"status"}' | socat -t 5 - "UNIX-CONNECT:$rd/control.sock")"; }
  check "real vmwp: Start-VM with a switch adapter and one without" hv Start-VM real
  check "...its adapter is on the switch (VLAN 3)" until_true port_of 0 00:15:5d:aa:bb:77 3
  check "...Get-VMNetworkAdapter: Connected, from the worker's status" until_true bash -c "'$B/hv' Get-VMNetworkAdapter real -Name 'Network Adapter' | grep -q ' Ok  *True'"
  check "...Set-VMNetworkAdapterVlan moves it to VLAN 4" bash -c "'$B/hv' Set-VMNetworkAdapterVlan real -VMNetworkAdapterName 'Network Adapter' -Access -VlanId 4 2>&1 && printf '%s\n' '{\"op\":\"status\"}' | socat -t 5 - 'UNIX-CONNECT:$rd/control.sock' | grep -q '\"name\":\"real/0\",\"kind\":\"adapter\",\"mac\":\"00:15:5d:aa:bb:77\",\"vlan\":4,'"
  spare=$(nic_mac real spare | sed 's/../&:/g; s/:$//' | tr A-F a-f)
  check "...Connect-VMNetworkAdapter plugs the spare one in" bash -c "'$B/hv' Connect-VMNetworkAdapter real -Name spare -SwitchName vmsw && '$B/hv' Get-VMNetworkAdapter real -Name spare | grep -q ' Ok  *True'"
  check "...as port real/1" until_true port_of 1 "$spare" 0
  check "...Disconnect-VMNetworkAdapter unplugs it" bash -c "'$B/hv' Disconnect-VMNetworkAdapter real -Name spare && '$B/hv' Get-VMSwitch vmsw -Json | grep -q '\"ConnectedAdapters\": 1'"
  check "...Remove-VMSwitch unplugs the other" bash -c "'$B/hv' Remove-VMSwitch vmsw && '$B/hv' Get-VMNetworkAdapter real -Json | grep -q '\"Connected\": false' && ! '$B/hv' Get-VMNetworkAdapter real -Json | grep -q '\"Connected\": true'"
  check "...the VM runs on" bash -c "'$B/hv' Get-VM real | grep -q ' Running '"
  hv Stop-VM real -TurnOff >/dev/null
else
  skip_part "the real vmwp (no usable /dev/kvm here)"
fi
no_switches() { ! pgrep -f -- "^[^ ]*vmswitch --name .* --control $t/" >/dev/null; }
check "no switch processes left" no_switches
[ "$fails" = 0 ] || { echo "--- vmms log"; cat "$t/vmms.log"; }
exit $((fails > 0))
