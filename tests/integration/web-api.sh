#!/usr/bin/env bash
# vmmsweb over real HTTPS (curl), no guest: unauthenticated and bad or expired tokens get 401,
# each role is allowed and refused (403, JSON, nothing changed) on the right endpoints, bad
# JSON / a huge body / deep JSON / path traversal get 4xx with a JSON error and change nothing,
# failed authentication is rate-limited, streams and the console endpoint; then
# `hv -ComputerName` from an environment without the local socket prints what the local hv
# prints, and a changed server certificate is refused with the pinning error.
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/skip.bash
B=${VIRIDIAN_BUILD:-build}
for x in vmms vmmsweb hv; do [ -x "$B/$x" ] || { echo "build $B/$x first (make)"; exit 1; }; done
command -v curl >/dev/null || { echo "skip: curl is not installed"; exit 77; }
t=$(mktemp -d /tmp/web-api.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock
vpid="" wpid=""
trap '[ -n "$wpid" ] && kill $wpid 2>/dev/null; [ -n "$vpid" ] && kill $vpid 2>/dev/null; wait 2>/dev/null; rm -rf "$t"' EXIT
fails=0
check() { if "${@:2}"; then echo "ok: $1"; else echo "FAIL: $1"; fails=$((fails + 1)); fi; }
hv() { "$B/hv" "$@"; }

"$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & vpid=$!
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
hv New-VM -Name web -MemoryStartupBytes 512MB >/dev/null
hv New-VM -Name db -MemoryStartupBytes 512MB >/dev/null
mktoken() { hv New-VMManagementToken -Name "$1" -Role "$2" -Json | sed -n 's/.*"token": "\(vrd_[0-9a-f]*\)".*/\1/p' >"$t/$1.tok"; }
mktoken admin Administrator; mktoken oper Operator; mktoken reader Reader; mktoken old Reader
check "tokens are made, one secret each" [ "$(cat "$t"/*.tok | sort -u | grep -c '^vrd_[0-9a-f]\{64\}$')" = 4 ]
check "Get-VMManagementToken lists them without secrets" bash -c "'$B/hv' Get-VMManagementToken | grep -q 'oper *Operator' && ! '$B/hv' Get-VMManagementToken -Json | grep -q vrd_"
check "the token store keeps only hashes, mode 0600" bash -c "! grep -aq '$(cat "$t/admin.tok")' '$t/root/tokens.db' && [ \$(stat -c %a '$t/root/tokens.db') = 600 ]"
check "a bad role is refused" bash -c "! '$B/hv' New-VMManagementToken -Name x -Role Root 2>/dev/null"
check "a duplicate name is refused" bash -c "! '$B/hv' New-VMManagementToken -Name ADMIN -Role Reader 2>/dev/null"
sqlite3 "$t/root/tokens.db" "UPDATE tokens SET expires = 1 WHERE name = 'old'"

start_web() {
  : >"$t/web.log"
  "$B/vmmsweb" --listen 127.0.0.1:0 --state "$t/web" 2>"$t/web.log" & wpid=$!
  for _ in $(seq 50); do grep -q listening "$t/web.log" && break; sleep 0.1; done
  port=$(sed -n 's/.*https:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$t/web.log")
}
start_web
[ -n "$port" ] || { echo "FAIL: vmmsweb did not start"; cat "$t/web.log"; exit 1; }
U=https://127.0.0.1:$port/api/v1
# req TOKEN METHOD PATH [BODY] -> "$t/body", prints the HTTP status
req() {
  local tok=$1 m=$2 p=$3; shift 3
  local a=(); [ -n "$tok" ] && a=(-H "Authorization: Bearer $(cat "$t/$tok.tok" 2>/dev/null || echo "$tok")")
  [ $# -gt 0 ] && a+=(-H "Content-Type: application/json" --data-binary "$1")
  curl -sk -o "$t/body" -w '%{http_code}' -X "$m" "${a[@]}" "$U$p"
}
is() { # STATUS TOKEN METHOD PATH [BODY]: that status, and "ok" as it says
  [ "$(req "${@:2}")" = "$1" ] || return 1
  if [ "$1" = 200 ]; then grep -q '"ok":true' "$t/body"; else grep -q '"ok":false' "$t/body"; fi
}
json_err() { [ "$(req "${@:2}")" = "$1" ] && grep -q '"ok":false,"error":"' "$t/body"; }
state() { hv Get-VM "$1" -Json | sed -n 's/.*"state": "\([A-Za-z]*\)".*/\1/p'; }
nvms() { hv Get-VM -Json | grep -c '"name"'; }

check "the key is 0600, the certificate made on first start" bash -c "[ \$(stat -c %a '$t/web/key.pem') = 600 ] && grep -q 'BEGIN CERTIFICATE' '$t/web/cert.pem'"
check "listens on loopback only" bash -c "ss -ltn | grep -q '127.0.0.1:$port '"
check "no token: 401 with a JSON error" json_err 401 "" GET /vms
check "a malformed query argument: 400" json_err 400 admin GET "/vms?name=%zz"
check "...and a WWW-Authenticate header" bash -c "curl -sk -D- -o /dev/null '$U/vms' | grep -qi '^www-authenticate: bearer'"
check "an unknown token: 401" json_err 401 vrd_0000000000000000000000000000000000000000000000000000000000000000 GET /vms
check "an expired token: 401, says expired" bash -c "[ \$(curl -sk -o '$t/b2' -w '%{http_code}' -H 'Authorization: Bearer $(cat "$t/old.tok")' '$U/vms') = 401 ] && grep -q expired '$t/b2'"

# Reader: Get-* only.
check "Reader: GET /vms lists both" bash -c "[ \"\$(curl -sk -H 'Authorization: Bearer $(cat "$t/reader.tok")' '$U/vms' | grep -o '\"name\":' | wc -l)\" = 2 ]"
check "Reader: GET /vms/web" is 200 reader GET /vms/web
check "Reader: GET /host, /switches, /jobs, /vms/web/checkpoints" bash -c "for p in /host /switches /jobs /vms/web/checkpoints /vms/web/events /whoami; do [ \$(curl -sk -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer $(cat "$t/reader.tok")' '$U'\$p) = 200 ] || exit 1; done"
check "Reader: start refused 403 JSON" json_err 403 reader POST /vms/web/start
check "...the VM stays Off" [ "$(state web)" = Off ]
check "Reader: remove refused" json_err 403 reader DELETE /vms/web
check "Reader: the console refused" json_err 403 reader GET /vms/web/console
check "Reader: tokens refused" json_err 403 reader GET /tokens
check "Reader: the generic form authorizes by op too" json_err 403 reader POST /op/remove '{"vm":"web"}'
check "a body whose op differs from the URL's is refused" json_err 400 reader POST /op/list '{"op":"remove","vm":"web"}'
check "vmmsweb's own token check is not offered" json_err 404 admin POST /op/check-token '{"token":"x"}'
check "...nothing was removed" [ "$(nvms)" = 2 ]

# Operator: power, console, checkpoints; no creating, deleting, host, disks, switches.
check "Operator: pause of an Off VM reaches vmms (409 conflict)" json_err 409 oper POST /vms/web/pause
check "Operator: start reaches vmms (no kernel: 400 from vmms)" bash -c "[ \$(curl -sk -o '$t/b3' -w '%{http_code}' -X POST -H 'Authorization: Bearer $(cat "$t/oper.tok")' '$U/vms/web/start') = 400 ] && grep -q -i kernel '$t/b3'"
check "Operator: checkpoint" is 200 oper POST /vms/web/checkpoints '{"name":"before"}'
check "Operator: the checkpoint is there" bash -c "'$B/hv' Get-VMCheckpoint -VMName web | grep -q before"
check "Operator: delete a checkpoint refused" json_err 403 oper DELETE /vms/web/checkpoints/before
check "Operator: New-VM refused" json_err 403 oper POST /vms '{"name":"x"}'
check "Operator: Remove-VM refused" json_err 403 oper DELETE /vms/db
check "Operator: Set-VM refused" json_err 403 oper POST /vms/web/settings '{"cpus":2}'
check "Operator: Set-VMHost refused" json_err 403 oper POST /host '{"virtual_hard_disk_path":"/tmp"}'
check "Operator: add a disk refused" json_err 403 oper POST /vms/web/disks '{"path":"/tmp/x.vhdx"}'
check "Operator: New-VMSwitch refused" json_err 403 oper POST /switches '{"name":"s","type":"Private"}'
check "Operator: tokens refused" json_err 403 oper POST /tokens '{"name":"y","role":"Administrator"}'
check "...nothing changed" bash -c "[ \$('$B/hv' Get-VM -Json | grep -c '\"name\"') = 2 ] && '$B/hv' Get-VM web -Json | grep -q '\"cpus\": 1' && ! '$B/hv' Get-VMSwitch 2>/dev/null | grep -q '^s ' && ! '$B/hv' Get-VMManagementToken y >/dev/null 2>&1"

# Administrator: everything.
check "Administrator: New-VM" is 200 admin POST /vms '{"name":"made","memory":536870912}'
check "Administrator: Set-VM" is 200 admin POST /vms/made/settings '{"cpus":2}'
check "...it took" bash -c "'$B/hv' Get-VM made -Json | grep -q '\"cpus\": 2'"
check "Administrator: Remove-VM" is 200 admin DELETE /vms/made
check "Administrator: a token over the API" is 200 admin POST /tokens '{"name":"api","role":"Reader"}'
check "Administrator: remove it" is 200 admin DELETE /tokens/api
check "an unknown VM: 404 JSON" json_err 404 admin GET /vms/nobody
check "an unknown endpoint: 404 JSON" json_err 404 admin GET /frobs
check "a wrong method: 405 JSON" json_err 405 admin PUT /vms

# Hostile requests: 4xx with a JSON error, nothing changed.
n0=$(nvms)
check "bad JSON: 400" json_err 400 admin POST /vms '{"name": "x",'
check "a JSON array body: 400" json_err 400 admin POST /vms '["name"]'
check "duplicate keys: 400" json_err 400 admin POST /vms '{"name":"a","name":"b"}'
deep=$(printf '{"a":%.0s' $(seq 20))1$(printf '}%.0s' $(seq 20))
check "deep JSON: 400" json_err 400 admin POST /vms "$deep"
head -c 100000 /dev/zero | tr '\0' ' ' >"$t/huge"
check "a 100 KB body: 413" bash -c "[ \$(curl -sk -o '$t/b4' -w '%{http_code}' -X POST -H 'Authorization: Bearer $(cat "$t/admin.tok")' -H 'Content-Type: application/json' --data-binary @'$t/huge' '$U/vms') = 413 ] && grep -q '\"ok\":false' '$t/b4'"
check "a 100 KB chunked body: 413" bash -c "[ \$(curl -sk -o /dev/null -w '%{http_code}' -X POST -H 'Transfer-Encoding: chunked' -H 'Authorization: Bearer $(cat "$t/admin.tok")' --data-binary @'$t/huge' '$U/vms') = 413 ]"
big=$(head -c 40000 /dev/zero | tr '\0' a)
check "a 40 KB header: 431" [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "X-Big: $big" -H "Authorization: Bearer $(cat "$t/admin.tok")" "$U/vms")" = 431 ]
check "a disk path with ..: 400" json_err 400 admin POST /vms/web/disks '{"path":"/tmp/../etc/shadow"}'
check "a disk path outside the host's folders: 400" json_err 400 admin POST /vms/web/disks '{"path":"/etc/shadow"}'
check "a relative disk path: 400" json_err 400 admin POST /vms/web/disks '{"path":"x.vhdx"}'
check "a new disk's relative path with ..: 400" json_err 400 admin POST /vms '{"name":"t","new_vhd_path":"../../t.vhdx","new_vhd_size":1073741824}'
ln -s /etc "$t/root/Virtual Hard Disks/etc"
check "a symlink out of the disk folder: 400" json_err 400 admin POST /vms/web/disks "{\"path\":\"$t/root/Virtual Hard Disks/etc/passwd\"}"
check "Set-VMFirmware with a kernel outside: 400" json_err 400 admin POST /vms/web/firmware '{"kernel":"/boot/../etc/passwd"}'
check "a %2F in a name: 400" json_err 400 admin GET /vms/..%2F..%2Fetc
check "a NUL in a name: 400" json_err 400 admin GET /vms/a%00b
check "...nothing changed" bash -c "[ \$('$B/hv' Get-VM -Json | grep -c '\"name\"') = $n0 ] && '$B/hv' Get-VM web -Json | grep -q '\"disks\": \[\]' && [ ! -e '$t/t.vhdx' ]"

# Streams and the console.
check "the state stream sends each VM's state" bash -c "curl -skN --max-time 2 -H 'Authorization: Bearer $(cat "$t/reader.tok")' '$U/events' | grep -q '^event: state' && curl -skN --max-time 2 -H 'Authorization: Bearer $(cat "$t/reader.tok")' '$U/events' | grep -q '\"name\":\"db\"'"
vmdir=$(hv Get-VM web -Json | sed -n 's/.*"path": "\(.*Virtual Machines[^"]*\)".*/\1/p' | head -1)
printf 'boot <img src=x onerror=alert(1)>\n' >"$vmdir/console.log"
check "Operator: console output, base64, with the offset" bash -c "curl -sk -H 'Authorization: Bearer $(cat "$t/oper.tok")' '$U/vms/web/console?offset=5' | python3 -c 'import sys,json,base64; r=json.load(sys.stdin); sys.exit(not (base64.b64decode(r[\"data\"]) == b\"<img src=x onerror=alert(1)>\\n\" and r[\"offset\"] == 34))'"
check "Operator: console stream of an Off VM: the output, then end" bash -c "curl -skN --max-time 5 -H 'Authorization: Bearer $(cat "$t/oper.tok")' '$U/vms/web/console/stream' >'$t/sse'; grep -q '^event: console' '$t/sse' && grep -q '^event: end' '$t/sse'"
python3 -c "import sys; sys.stdout.write(''.join('line %06d of a long console log\\n' % i for i in range(4000)))" >"$vmdir/console.log"
check "a 140 KB console log comes through the stream whole" bash -c "curl -skN --max-time 10 -H 'Authorization: Bearer $(cat "$t/oper.tok")' '$U/vms/web/console/stream' | python3 -c '
import sys, json, base64
data = b\"\".join(base64.b64decode(json.loads(l[6:])[\"data\"]) for l in sys.stdin if l.startswith(\"data: \") and \"\\\"data\\\"\" in l)
sys.exit(data != open(sys.argv[1], \"rb\").read())' '$vmdir/console.log'"
printf 'boot <img src=x onerror=alert(1)>\n' >"$vmdir/console.log"

# The console's static files: no token needed, a strict CSP, nothing else served.
check "GET / serves the console with a strict CSP" bash -c "curl -sk -D '$t/h' -o '$t/index' 'https://127.0.0.1:$port/' && grep -q 'src=\"/ui/app.js\"' '$t/index' && grep -qi \"^content-security-policy: default-src 'none'; script-src 'self'\" '$t/h' && ! grep -qi 'unsafe' '$t/h' && grep -qi '^x-frame-options: deny' '$t/h'"
check "the console's script and style" bash -c "[ \$(curl -sk -o /dev/null -w '%{http_code}' 'https://127.0.0.1:$port/ui/app.js') = 200 ] && curl -sk -D- -o /dev/null 'https://127.0.0.1:$port/ui/app.css' | grep -qi '^content-type: text/css'"
check "no other file is served" bash -c "for p in /ui/ /ui/../web.md /ui/index.html /etc/passwd /ui/app.js/x; do [ \$(curl -sk --path-as-is -o /dev/null -w '%{http_code}' 'https://127.0.0.1:$port'\$p) = 404 ] || exit 1; done"
check "the console's script puts server strings in as text only" bash -c "! grep -nE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(' web/www/app.js"

# The audit log.
check "the audit log names who, op and result, mode 0600" bash -c "grep -q '\"user\":\"token:reader\".*\"op\":\"start\".*\"status\":403,\"result\":\"access denied' '$t/web/audit.log' && grep -q '\"user\":\"token:admin\".*\"op\":\"new\".*\"params\":{\"name\":\"made\"' '$t/web/audit.log' && [ \$(stat -c %a '$t/web/audit.log') = 600 ]"
check "the audit log never holds a token" bash -c "! grep -q vrd_ '$t/web/audit.log'"

# hv -ComputerName from an environment without the local socket.
remote() { env -u VIRIDIAN_SOCKET HOME="$t/home" VIRIDIAN_SOCKET="$t/none.sock" XDG_CONFIG_HOME= "$B/hv" "$@" -ComputerName "127.0.0.1:$port"; }
hv Get-VM >"$t/local.txt"
remote Get-VM -Credential "$t/reader.tok" >"$t/remote.txt" 2>"$t/remote.err"
check "hv -ComputerName Get-VM equals the local output" cmp -s "$t/local.txt" "$t/remote.txt"
check "...pinned the certificate on first use" bash -c "grep -q 'pinned the certificate' '$t/remote.err' && grep -q \"^127.0.0.1:$port \$(openssl x509 -in '$t/web/cert.pem' -outform DER | sha256sum | cut -c1-64)\$\" '$t/home/.config/viridian/known_hosts'"
check "hv -ComputerName Get-VM -Json equals too" bash -c "diff <('$B/hv' Get-VM -Json | grep -v -e uptime -e cpu_usage) <(env -u VIRIDIAN_SOCKET HOME='$t/home' '$B/hv' Get-VM -Json -ComputerName 127.0.0.1:$port -Credential '$t/reader.tok' | grep -v -e uptime -e cpu_usage)"
check "hv -ComputerName Get-VMCheckpoint equals too" bash -c "diff <('$B/hv' Get-VMCheckpoint -VMName web) <(env -u VIRIDIAN_SOCKET HOME='$t/home' VIRIDIAN_TOKEN=\$(cat '$t/reader.tok') '$B/hv' Get-VMCheckpoint -VMName web -ComputerName 127.0.0.1:$port)"
check "hv -ComputerName Connect-VM prints the remote console like the local one" bash -c "diff <('$B/hv' Connect-VM web </dev/null) <(env -u VIRIDIAN_SOCKET HOME='$t/home' '$B/hv' Connect-VM web -ComputerName 127.0.0.1:$port -Credential '$t/oper.tok' </dev/null) && '$B/hv' Connect-VM web </dev/null | grep -q 'onerror'"
check "hv -ComputerName: a Reader's Remove-VM is refused" bash -c "env -u VIRIDIAN_SOCKET HOME='$t/home' '$B/hv' Remove-VM db -ComputerName 127.0.0.1:$port -Credential '$t/reader.tok' 2>&1 | grep -q 'access denied'"
check "hv -ComputerName: an Administrator's Set-VM works" bash -c "env -u VIRIDIAN_SOCKET HOME='$t/home' '$B/hv' Set-VM db -ProcessorCount 3 -ComputerName 127.0.0.1:$port -Credential '$t/admin.tok' >/dev/null && '$B/hv' Get-VM db -Json | grep -q '\"cpus\": 3'"
check "hv -ComputerName: no token is refused" bash -c "env -u VIRIDIAN_SOCKET -u VIRIDIAN_TOKEN HOME='$t/home' '$B/hv' Get-VM -ComputerName 127.0.0.1:$port 2>&1 | grep -q 'needs a token'"
check "hv -ComputerName: *-VHD cmdlets say they are local" bash -c "'$B/hv' Get-VHD x.vhdx -ComputerName 127.0.0.1:$port 2>&1 | grep -q \"this machine's files\""

# A changed server certificate: refused, like ssh.
kill $wpid; wait $wpid 2>/dev/null; wpid=""
rm -f "$t/web/cert.pem" "$t/web/key.pem"
oldport=$port
: >"$t/web.log"
"$B/vmmsweb" --listen "127.0.0.1:$oldport" --state "$t/web" 2>"$t/web.log" & wpid=$!
for _ in $(seq 50); do grep -q listening "$t/web.log" && break; sleep 0.1; done
remote Get-VM -Credential "$t/reader.tok" >"$t/out" 2>"$t/err"; rc=$?
check "a changed certificate is refused" [ $rc != 0 ]
check "...with the pinning error" grep -q "certificate of 127.0.0.1:$oldport has CHANGED.*known_hosts line 1 pins" "$t/err"
check "...and nothing printed" [ ! -s "$t/out" ]

# Host-account login through PAM (pam_wrapper's pam_matrix plays the accounts), sessions
# with a cookie and a CSRF header.
pw=$(ls /usr/lib/*/libpam_wrapper.so 2>/dev/null | head -1)
matrix=$(ls /usr/lib/*/pam_wrapper/pam_matrix.so 2>/dev/null | head -1)
# pam_wrapper dlopens libpam with RTLD_DEEPBIND, which a sanitizer runtime refuses.
asan=$(ldd "$B/vmmsweb" | grep -c libasan)
if [ -n "$pw" ] && [ -n "$matrix" ] && [ "$asan" = 0 ]; then
  mkdir -p "$t/pam"
  printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' "$matrix" "$t/passdb" "$matrix" "$t/passdb" >"$t/pam/viridian"
  printf 'alice:s3cret:viridian\nbob:pw:viridian\n' >"$t/passdb"
  printf '# test roles\nuser alice Operator\n' >"$t/roles"
  : >"$t/web2.log"
  LD_PRELOAD=$pw PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR=$t/pam "$B/vmmsweb" --listen 127.0.0.1:0 --state "$t/web2" --login-roles "$t/roles" 2>"$t/web2.log" & w2=$!
  for _ in $(seq 50); do grep -q listening "$t/web2.log" && break; sleep 0.1; done
  check "vmmsweb starts under pam_wrapper" grep -q listening "$t/web2.log"
  L=https://127.0.0.1:$(sed -n 's/.*https:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$t/web2.log")/api/v1
  login() { curl -sk -c "$t/jar" -D "$t/lh" -o "$t/lb" -w '%{http_code}' -H 'Content-Type: application/json' --data-binary "$1" "$L/login"; }
  check "login: a wrong password is 401" [ "$(login '{"user":"alice","password":"nope"}')" = 401 ]
  check "login: a malformed body is 400" [ "$(login '{"user":"../x","password":"a"}')" = 400 ]
  check "login: an account without a role is 403" [ "$(login '{"user":"bob","password":"pw"}')" = 403 ]
  check "login: alice (Operator) gets a session" bash -c "[ \$(curl -sk -c '$t/jar' -D '$t/lh' -o '$t/lb' -w '%{http_code}' -H 'Content-Type: application/json' --data-binary '{\"user\":\"alice\",\"password\":\"s3cret\"}' '$L/login') = 200 ] && grep -q '\"role\":\"Operator\"' '$t/lb'"
  check "...the cookie is HttpOnly, Secure, SameSite=Strict, with an expiry" grep -qi '^set-cookie: vmmsweb_session=[0-9a-f]\{64\}; Path=/api/; Max-Age=28800; HttpOnly; Secure; SameSite=Strict' "$t/lh"
  csrf=$(sed -n 's/.*"csrf":"\([0-9a-f]*\)".*/\1/p' "$t/lb")
  sess() { curl -sk -b "$t/jar" -o "$t/sb" -w '%{http_code}' "$@"; }
  check "a session without the CSRF header is refused (403)" bash -c "[ \$(curl -sk -b '$t/jar' -o '$t/sb' -w '%{http_code}' -X POST '$L/vms/web/pause') = 403 ] && grep -q CSRF '$t/sb'"
  wrong=${csrf%?}$([ "${csrf: -1}" = 0 ] && echo 1 || echo 0)
check "a wrong CSRF header is refused" [ "$(sess -X POST -H "X-CSRF-Token: $wrong" "$L/vms/web/pause")" = 403 ]
  check "with the CSRF header: GET /vms" [ "$(sess -H "X-CSRF-Token: $csrf" "$L/vms")" = 200 ]
  check "...whoami is pam:alice" bash -c "curl -sk -b '$t/jar' -H 'X-CSRF-Token: $csrf' '$L/whoami' | grep -q '\"user\":\"pam:alice\",\"role\":\"Operator\"'"
  check "the session's role holds: Remove-VM refused" [ "$(sess -X DELETE -H "X-CSRF-Token: $csrf" "$L/vms/db")" = 403 ]
  check "...Start reaches vmms" [ "$(sess -X POST -H "X-CSRF-Token: $csrf" "$L/vms/web/pause")" = 409 ]
  check "logout ends the session" bash -c "[ \$(curl -sk -b '$t/jar' -o /dev/null -w '%{http_code}' -X POST -H 'X-CSRF-Token: $csrf' '$L/logout') = 200 ] && [ \$(curl -sk -b '$t/jar' -o /dev/null -w '%{http_code}' -H 'X-CSRF-Token: $csrf' '$L/vms') = 401 ]"
  check "a forged session cookie is 401" [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Cookie: vmmsweb_session=$(printf '%064d' 0)" -H "X-CSRF-Token: $csrf" "$L/vms")" = 401 ]
  check "logins are audited, passwords never" bash -c "grep -q '\"user\":\"pam:alice\".*\"op\":\"login\".*\"status\":200' '$t/web2/audit.log' && grep -q '\"op\":\"login\".*\"status\":401' '$t/web2/audit.log' && ! grep -q s3cret '$t/web2/audit.log'"
  h2=127.0.0.1:$(sed -n 's/.*https:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$t/web2.log")
  check "hv -ComputerName -Credential USER (password on stdin) equals the local Get-VM" bash -c "diff <('$B/hv' Get-VM) <(echo s3cret | env -u VIRIDIAN_SOCKET HOME='$t/home' '$B/hv' Get-VM -ComputerName $h2 -Credential alice 2>/dev/null)"
  check "...a wrong password: login failed" bash -c "echo nope | env -u VIRIDIAN_SOCKET HOME='$t/home' '$B/hv' Get-VM -ComputerName $h2 -Credential alice 2>&1 | grep -q 'login failed'"
  check "...the session's role holds (Operator: no Remove-VM)" bash -c "echo s3cret | env -u VIRIDIAN_SOCKET HOME='$t/home' '$B/hv' Remove-VM db -ComputerName $h2 -Credential alice 2>&1 | grep -q 'access denied'"
  check "...nothing changed" [ "$(nvms)" = 2 ]
  kill $w2; wait $w2 2>/dev/null
else
  skip_part "PAM login (libpam-wrapper is not installed, or $B is a sanitizer build it cannot run under)"
fi

# Failed authentication is rate-limited per client address (last: it locks 127.0.0.2 out).
for _ in 1 2 3 4 5; do curl -sk --interface 127.0.0.2 -o /dev/null -H 'Authorization: Bearer vrd_nope' "$U/vms"; done
check "after 5 failures: 429 even with a good token" bash -c "[ \$(curl -sk --interface 127.0.0.2 -o '$t/b5' -w '%{http_code}' -H 'Authorization: Bearer $(cat "$t/admin.tok")' '$U/vms') = 429 ] && grep -q 'too many' '$t/b5'"
check "...with Retry-After" bash -c "curl -sk --interface 127.0.0.2 -D- -o /dev/null '$U/vms' | grep -qi '^retry-after: [0-9]'"
check "...other addresses still served" is 200 admin GET /vms

[ $fails = 0 ] && echo "web-api: all passed" && exit 0
echo "web-api: $fails failed"; tail -5 "$t/web.log"; exit 1
