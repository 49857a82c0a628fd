#!/usr/bin/env bash
# vmswitch as a process, without guests: fake adapters (Python, SOCK_SEQPACKET) plug in with the
# hello of include/vswitch/port.h and trade frames. Hostile and odd clients: bad hellos, a
# duplicate MAC, silent connections (they time out and free their slots), oversize and spoofed
# frames; control ops status, mac-table, port-vlan, port-disconnect, stop; bad options.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/guest.bash
t=$(mktemp -d /tmp/vswitch-daemon.XXXXXX)
trap 'kill $sw 2>/dev/null; rm -rf "$t"' EXIT

check "no type: usage error" bash -c "! '$B/vmswitch' --name x --socket $t/x.sock 2>/dev/null"
check "External without --uplink refused" bash -c "'$B/vmswitch' --name x --type External --socket $t/x.sock 2>&1 | grep -q 'needs --uplink'"
check "unknown type refused" bash -c "'$B/vmswitch' --name x --type Bridge --socket $t/x.sock 2>&1 | grep -q 'Private, Internal or External'"
check "--host-nic on a Private switch refused" bash -c "! '$B/vmswitch' --name x --type Private --host-nic t0 --socket $t/x.sock 2>/dev/null"

"$B/vmswitch" --name lab --type Private --socket "$t/p.sock" --control "$t/c.sock" </dev/null >"$t/log" 2>&1 &
sw=$!
for _ in $(seq 50); do [ -S "$t/c.sock" ] && break; sleep 0.1; done

python3 - "$t" <<'EOF'
import json, os, socket, sys, time
t = sys.argv[1]
fails = 0
def check(what, ok):
    global fails
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok: fails += 1
def ctl(req):
    s = socket.socket(socket.AF_UNIX); s.connect(t + "/c.sock")
    s.sendall((json.dumps(req) + "\n").encode()); data = b""
    while not data.endswith(b"\n"):
        b = s.recv(65536)
        if not b: break
        data += b
    return json.loads(data)
def hello(raw):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(t + "/p.sock")
    s.settimeout(3)
    try:
        s.send(raw if isinstance(raw, bytes) else json.dumps(raw).encode())
        r = s.recv(512)
    except (socket.timeout, OSError): r = b""  # turned away: closed without an answer
    return s, (json.loads(r) if r else None)
def port(mac, vlan=0, name="t", spoof=False):
    s, r = hello({"op": "connect", "name": name, "mac": mac, "vlan": vlan, "mac_spoofing": spoof})
    assert r and r["ok"], r
    s.settimeout(0.5)
    return s
def m(s): return bytes.fromhex(s.replace(":", ""))
def frame(dst, src, n=50): return m(dst) + m(src) + b"\x08\x00" + bytes(range(256))[:n] * 1
def got(s):
    try: return s.recv(65536)
    except socket.timeout: return None

for bad, why in [(b"not json", "not JSON"), ({"op": "hello", "mac": "00:15:5d:00:00:01"}, "wrong op"),
                 ({"op": "connect", "mac": "01:00:5e:00:00:01"}, "multicast MAC"),
                 ({"op": "connect", "mac": "00:15:5d:00:00:01", "vlan": 4095}, "VLAN 4095"),
                 (b"{" * 600, "oversized hello")]:
    s, r = hello(bad)
    check("hello refused: " + why, r is not None and r["ok"] is False and r.get("error"))
    s.close()
a = port("00:15:5d:00:00:01", name="vm1/0")
b = port("00:15:5d:00:00:02", name="vm2/0")
s, r = hello({"op": "connect", "mac": "00:15:5d:00:00:01"})
check("a second adapter with a connected MAC is refused", r is not None and not r["ok"])
c5 = port("00:15:5d:00:00:01", vlan=5, name="vm3/0")
check("the same MAC in another VLAN is fine", c5 is not None)

a.send(frame("ff:ff:ff:ff:ff:ff", "00:15:5d:00:00:01"))
check("broadcast reaches the VLAN's other port", got(b) is not None)
check("... and not another VLAN", got(c5) is None)
f = frame("00:15:5d:00:00:01", "00:15:5d:00:00:02", 200)
b.send(f)
check("unicast arrives intact", got(a) == f)
a.send(frame("ff:ff:ff:ff:ff:ff", "00:15:5d:00:00:99"))
check("spoofed source dropped", got(b) is None)
a.send(m("ff:ff:ff:ff:ff:ff") + m("00:15:5d:00:00:01") + b"\x08\x00" + bytes(9300))
check("oversize frame dropped", got(b) is None)
a.send(b"\x01\x02")
check("runt dropped", got(b) is None)
st = ctl({"op": "status"})
p0 = [p for p in st["ports"] if p["name"] == "vm1/0"][0]
check("status counts: spoofed 1, malformed 2", p0["in_spoofed"] == 1 and p0["in_malformed"] == 2)
check("status: three adapter ports, type Private", len(st["ports"]) == 3 and st["type"] == "Private")
mt = ctl({"op": "mac-table"})["entries"]
check("mac-table: the three adapters' MACs pinned", sorted((e["mac"], e["vlan"]) for e in mt if e["pinned"]) ==
      [("00:15:5d:00:00:01", 0), ("00:15:5d:00:00:01", 5), ("00:15:5d:00:00:02", 0)])

r = ctl({"op": "port-vlan", "name": "vm2/0", "vlan": 5})
check("port-vlan moves vm2/0 to VLAN 5", r["ok"])
a.send(frame("ff:ff:ff:ff:ff:ff", "00:15:5d:00:00:01"))
check("now vm1/0's broadcast misses vm2/0", got(b) is None)
b.send(frame("ff:ff:ff:ff:ff:ff", "00:15:5d:00:00:02"))
check("and vm3/0 (VLAN 5) hears vm2/0", got(c5) is not None)
check("port-vlan 4095 refused", not ctl({"op": "port-vlan", "name": "vm2/0", "vlan": 4095})["ok"])
check("unknown op refused", not ctl({"op": "frobnicate"})["ok"])
r = ctl({"op": "port-disconnect", "name": "vm3/0"})
c5.settimeout(2)
try: eof = c5.recv(100) == b""
except (socket.timeout, ConnectionResetError): eof = False
check("port-disconnect closes the adapter's connection", r["ok"] and eof)

# Large TCP segments behind a virtio_net_hdr ("gso" ports): whole to a port that asked for
# them, cut to MSS-sized frames with correct checksums for one that did not.
def gso_port(mac, name):
    s, r = hello({"op": "connect", "name": name, "mac": mac, "gso": True})
    assert r and r["ok"] and r.get("gso") is True, r
    s.settimeout(0.5)
    return s
def csum(b, start=0):
    if len(b) % 2: b += b"\0"
    s = start + sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return s
g1, g2 = gso_port("00:15:5d:00:00:21", "gso1"), gso_port("00:15:5d:00:00:22", "gso2")
plain = port("00:15:5d:00:00:23", name="plain")
payload = bytes((i * 7) & 255 for i in range(5000))
tot = 20 + 20 + len(payload)
ip = bytearray([0x45, 0, tot >> 8, tot & 255, 0x12, 0x34, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
tcp = bytearray([0x9c, 0x40, 0, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0])
big = m("ff:ff:ff:ff:ff:ff") + m("00:15:5d:00:00:21") + b"\x08\x00" + bytes(ip) + bytes(tcp) + payload
import struct
vh = struct.pack("<BBHHHH", 1, 1, 54, 1448, 34, 16)
g1.send(vh + big)
whole = got(g2)
check("a gso port gets the large segment whole, with its header", whole is not None and whole[:10] == vh and whole[10:] == big)
segs = []
while True:
    f = got(plain)
    if f is None: break
    segs.append(f)
ok = len(segs) == 4 and all(len(f) <= 1514 for f in segs) and b"".join(f[54:] for f in segs) == payload
for f in segs:
    l4 = f[34:]
    pseudo = csum(f[26:34], 6 + len(l4))
    ok = ok and csum(bytes(l4), pseudo) == 0xffff and csum(f[14:34]) == 0xffff
check("a plain port gets it as 4 MSS-sized frames, checksums right", ok)

# Silent connections: more than the switch keeps waiting; they expire and adapters plug in again.
silent = []
for i in range(40):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.connect(t + "/p.sock"); silent.append(s)
time.sleep(0.5)
s, r = hello({"op": "connect", "mac": "00:15:5d:00:00:07"})
check("with 40 silent connections a new adapter is turned away", r is None)
time.sleep(6.5)
s, r = hello({"op": "connect", "mac": "00:15:5d:00:00:07"})
check("silent connections time out; then an adapter plugs in", r is not None and r["ok"])
a.close()
time.sleep(0.3)
check("a closed adapter leaves its port", all(p["name"] != "vm1/0" for p in ctl({"op": "status"})["ports"]))
check("stop", ctl({"op": "stop"})["ok"])
sys.exit(1 if fails else 0)
EOF
r=$?
[ $r = 0 ] || fails=$((fails + 1))
for _ in $(seq 30); do kill -0 $sw 2>/dev/null || break; sleep 0.1; done
check "vmswitch exited after stop and removed its sockets" bash -c "! kill -0 $sw 2>/dev/null && [ ! -e $t/p.sock ] && [ ! -e $t/c.sock ]"
[ "$fails" = 0 ] || cat "$t/log"
finish
