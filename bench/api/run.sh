#!/usr/bin/env bash
# API benchmark, directly on this machine (no guest needed), 100 VMs registered (Off):
#  1. Get-VM ({"op":"list"}) over vmms's Unix socket, one connection: requests/s, p50, p99;
#  2. the same over HTTPS through vmmsweb (GET /api/v1/vms, one keep-alive TLS connection,
#     token checked per request): requests/s, p50, p99;
#  3. the same over HTTPS from 4 client threads at once: requests/s;
#  4. `hv Get-VM -Json` end to end, local vs -ComputerName (process start, TLS handshake).
# Usage: bench/api/run.sh [REQUESTS]   (VIRIDIAN_BUILD: the build to measure, default build)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${VIRIDIAN_BUILD:-build}
n=${1:-1000}
t=$(mktemp -d /tmp/api-bench.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock
"$B/vmms" --foreground --root "$t/root" 2>"$t/vmms.log" & vmms=$!
web=""
trap 'kill $vmms $web 2>/dev/null; wait 2>/dev/null; rm -rf "$t"' EXIT
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
for i in $(seq -w 100); do "$B/hv" New-VM -Name "vm-$i" -MemoryStartupBytes 512MB >/dev/null; done
"$B/hv" New-VMManagementToken -Name bench -Role Reader -Json | sed -n 's/.*"token": "\(vrd_[0-9a-f]*\)".*/\1/p' >"$t/tok"
"$B/vmmsweb" --listen 127.0.0.1:0 --state "$t/web" 2>"$t/web.log" & web=$!
for _ in $(seq 50); do grep -q listening "$t/web.log" && break; sleep 0.1; done
port=$(sed -n 's/.*https:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$t/web.log")

python3 - "$VIRIDIAN_SOCKET" "$port" "$(cat "$t/tok")" "$n" <<'PY'
import http.client, json, socket, ssl, sys, threading, time
sock, port, tok, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def report(name, lat, wall):
    lat.sort()
    print("%s: %.0f req/s, p50 %.2f ms, p99 %.2f ms (%d requests)" % (name, len(lat) / wall, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, len(lat)))
s = socket.socket(socket.AF_UNIX); s.connect(sock); f = s.makefile("rb")
lat = []; t0 = time.perf_counter()
for _ in range(n):
    a = time.perf_counter(); s.sendall(b'{"op":"list"}\n'); r = json.loads(f.readline()); lat.append(time.perf_counter() - a)
    assert len(r["vms"]) == 100
report("Get-VM, 100 VMs, Unix socket", lat, time.perf_counter() - t0)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
hdr = {"Authorization": "Bearer " + tok}
def https(count, out):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
    for _ in range(count):
        a = time.perf_counter(); c.request("GET", "/api/v1/vms", headers=hdr); r = c.getresponse(); body = json.loads(r.read()); out.append(time.perf_counter() - a)
        assert r.status == 200 and len(body["vms"]) == 100
lat = []; t0 = time.perf_counter(); https(n, lat)
report("Get-VM, 100 VMs, HTTPS (vmmsweb, keep-alive)", lat, time.perf_counter() - t0)
lat = []; th = [threading.Thread(target=https, args=(n // 4, lat)) for _ in range(4)]
t0 = time.perf_counter(); [x.start() for x in th]; [x.join() for x in th]
report("Get-VM, 100 VMs, HTTPS, 4 clients", lat, time.perf_counter() - t0)
PY

stats() { sort -n | awk '{a[NR]=$1} END {printf "median %.2f ms, p90 %.2f ms (%d runs)\n", a[int((NR+1)/2)]/1000, a[int(NR*0.9)]/1000, NR}'; }
us() { echo $(( $(date +%s%N) / 1000 )); }
for _ in $(seq 30); do s=$(us); "$B/hv" Get-VM -Json >/dev/null; echo $(( $(us) - s )); done | stats | sed 's/^/hv Get-VM -Json, local socket: /'
HOME=$t "$B/hv" Get-VM -ComputerName "127.0.0.1:$port" -Credential "$t/tok" >/dev/null 2>&1 # pins the certificate
for _ in $(seq 30); do s=$(us); HOME=$t "$B/hv" Get-VM -Json -ComputerName "127.0.0.1:$port" -Credential "$t/tok" >/dev/null; echo $(( $(us) - s )); done | stats | sed 's/^/hv Get-VM -Json -ComputerName (HTTPS): /'
