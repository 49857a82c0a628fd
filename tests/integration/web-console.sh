#!/usr/bin/env bash
# The browser console in headless Chromium, driven over the DevTools protocol
# (tests/integration/lib/cdp.py), no guest: sign in with a token through the form, the VM
# dashboard lists the VMs, a VM named `<img src=x onerror=alert(1)>` shows literally with no
# image element and no dialog, Start reaches vmms and its refusal is shown, a Reader's Start
# is refused (403) in the page, sign out forgets the token; screenshots at 1280x800 and phone
# width go to $VIRIDIAN_TEST_OUTPUT/web-console (default build/test-output/web-console).
set -uo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib/skip.bash
B=${VIRIDIAN_BUILD:-build}
for x in vmms vmmsweb hv; do [ -x "$B/$x" ] || { echo "build $B/$x first (make)"; exit 1; }; done
chrome=$(command -v chromium || command -v chromium-browser) || { echo "skip: chromium is not installed (tools/deps)"; exit 77; }
out=${VIRIDIAN_TEST_OUTPUT:-$B/test-output}/web-console
mkdir -p "$out"
t=$(mktemp -d /tmp/web-console.XXXXXX)
export VIRIDIAN_SOCKET=$t/vmms.sock
vpid="" wpid="" cpid=""
trap 'for p in $cpid $wpid $vpid; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$t"' EXIT

"$B/vmms" --foreground --root "$t/root" 2>>"$t/vmms.log" & vpid=$!
for _ in $(seq 50); do [ -S "$VIRIDIAN_SOCKET" ] && break; sleep 0.1; done
"$B/hv" New-VM -Name '<img src=x onerror=alert(1)>' -MemoryStartupBytes 512MB >/dev/null
"$B/hv" New-VM -Name web -MemoryStartupBytes 1GB >/dev/null
for r in Administrator Reader; do
  "$B/hv" New-VMManagementToken -Name "$r" -Role "$r" -Json | sed -n 's/.*"token": "\(vrd_[0-9a-f]*\)".*/\1/p' >"$t/$r.tok"
done
# Host accounts: pam_wrapper's pam_matrix plays them when it is installed.
pw=$(ls /usr/lib/*/libpam_wrapper.so 2>/dev/null | head -1)
matrix=$(ls /usr/lib/*/pam_wrapper/pam_matrix.so 2>/dev/null | head -1)
pamenv=()
# pam_wrapper dlopens libpam with RTLD_DEEPBIND, which a sanitizer runtime refuses.
asan=$(ldd "$B/vmmsweb" | grep -c libasan)
if [ -n "$pw" ] && [ -n "$matrix" ] && [ "$asan" = 0 ]; then
  mkdir -p "$t/pam"
  printf 'auth required %s passdb=%s\naccount required %s passdb=%s\n' "$matrix" "$t/passdb" "$matrix" "$t/passdb" >"$t/pam/viridian"
  echo 'alice:s3cret:viridian' >"$t/passdb"
  echo 'user alice Operator' >"$t/roles"
  pamenv=(LD_PRELOAD="$pw" PAM_WRAPPER=1 PAM_WRAPPER_SERVICE_DIR="$t/pam")
else
  skip_part "the host-account sign-in (libpam-wrapper is not installed, or $B is a sanitizer build it cannot run under)"
fi
: >"$t/web.log"; touch "$t/roles"
env "${pamenv[@]}" "$B/vmmsweb" --listen 127.0.0.1:0 --state "$t/web" --login-roles "$t/roles" 2>"$t/web.log" & wpid=$!
for _ in $(seq 50); do grep -q listening "$t/web.log" && break; sleep 0.1; done
port=$(sed -n 's/.*https:\/\/127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$t/web.log")
[ -n "$port" ] || { echo "FAIL: vmmsweb did not start"; exit 1; }

: >"$t/chrome.log"
"$chrome" --headless=new --no-sandbox --disable-gpu --ignore-certificate-errors --no-first-run \
  --user-data-dir="$t/chrome" --remote-debugging-port=0 about:blank 2>"$t/chrome.log" & cpid=$!
for _ in $(seq 150); do grep -q 'DevTools listening' "$t/chrome.log" && break; sleep 0.1; done
dport=$(sed -n 's/.*DevTools listening on ws:\/\/127\.0\.0\.1:\([0-9]*\)\/.*/\1/p' "$t/chrome.log")
[ -n "$dport" ] || { echo "FAIL: chromium did not start"; tail -5 "$t/chrome.log"; exit 1; }

PYTHONPATH=tests/integration/lib python3 - "$port" "$dport" "$t" "$out" "${#pamenv[@]}" <<'PY'
import sys, time
from cdp import CDP
port, dport, t, out, pam = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] != "0"
url = "https://127.0.0.1:%s/" % port
tok = {r: open("%s/%s.tok" % (t, r)).read().strip() for r in ("Administrator", "Reader")}
fails = 0
def check(name, ok):
    global fails
    print(("ok: " if ok else "FAIL: ") + name)
    fails += 0 if ok else 1
c = CDP(dport)
c.call("Page.enable"); c.call("Runtime.enable")
rows = "document.querySelectorAll('#vms tbody tr').length"
c.call("Page.navigate", url=url)
check("the sign-in form shows without a token", c.wait("!document.getElementById('login').hidden && document.getElementById('dashboard').hidden"))
start = time.time()
c.js("document.getElementById('token').value = %r; document.getElementById('login-form').requestSubmit(); true" % tok["Administrator"])
check("signed in: the dashboard lists both VMs", c.wait(rows + " === 2"))
print("sign-in to the listed dashboard: %.0f ms" % ((time.time() - start) * 1000))
check("...and says who", c.js("document.getElementById('who').textContent") == "token:Administrator (Administrator)")
check("the token field is cleared", c.js("document.getElementById('token').value") == "")
name = c.js("document.querySelector('#vms tbody tr td').textContent")
check("a VM named <img src=x onerror=alert(1)> shows literally", name == "<img src=x onerror=alert(1)>")
check("...and makes no element", c.js("document.images.length === 0 && document.querySelectorAll('#vms img, #vms [onerror]').length === 0"))
c.screenshot("%s/dashboard-1280x800.png" % out, 1280, 800)
c.screenshot("%s/dashboard-phone-390x844.png" % out, 390, 844, mobile=True)
c.call("Emulation.clearDeviceMetricsOverride")
check("every action button is reachable by keyboard and labelled", c.js(
    "[...document.querySelectorAll('#vms button')].every(b => b.tabIndex >= 0 && b.getAttribute('aria-label'))"))
c.js("document.querySelector('button[aria-label=\"Start web\"]').click(); true")
check("Start reaches vmms; its refusal (no kernel) is shown", c.wait(
    "document.getElementById('status').className === 'error' && /kernel/i.test(document.getElementById('status').textContent)"))
c.js("document.getElementById('logout').click(); true")
check("sign out forgets the token and the list", c.wait("!document.getElementById('login').hidden") and c.js("sessionStorage.length + " + rows) == 0)
# A Reader: the token in the fragment (dropped from the address bar), Start refused.
c.call("Page.navigate", url="about:blank")
c.wait("location.href === 'about:blank'")
c.call("Page.navigate", url=url + "#token=" + tok["Reader"])
check("a Reader signs in through the URL fragment", c.wait(rows + " === 2"))
check("...which leaves the address bar", c.js("location.hash") == "")
c.js("document.querySelector('button[aria-label=\"Start web\"]').click(); true")
check("a Reader's Start is refused in the page (access denied)", c.wait("/access denied/.test(document.getElementById('status').textContent)"))
# Load to interactive with a signed-in session (the token in sessionStorage).
times = []
for _ in range(5):
    c.call("Page.navigate", url="about:blank"); c.wait("location.href === 'about:blank'")
    s = time.time(); c.call("Page.navigate", url=url)
    c.wait(rows + " === 2", timeout=10); times.append((time.time() - s) * 1000)
print("console load to interactive (VMs listed): median %.0f ms, min %.0f ms (5 loads)" % (sorted(times)[2], min(times)))
if pam:  # a host account through the form: the session cookie is HttpOnly, its CSRF token sent
    c.js("document.getElementById('logout').click(); true")  # the Reader's token session
    c.call("Page.navigate", url="about:blank"); c.wait("location.href === 'about:blank'")
    c.call("Page.navigate", url=url)
    c.wait("!document.getElementById('login').hidden")
    c.js("document.getElementById('user').value = 'alice'; document.getElementById('password').value = 'wrong';"
         "document.getElementById('login-form').requestSubmit(); true")
    check("a wrong password is refused in the page", c.wait("/login failed/.test(document.getElementById('login-error').textContent)"))
    c.js("document.getElementById('user').value = 'alice'; document.getElementById('password').value = 's3cret';"
         "document.getElementById('login-form').requestSubmit(); true")
    check("alice signs in with her host account", c.wait(rows + " === 2") and c.js("document.getElementById('who').textContent") == "pam:alice (Operator)")
    check("...the session cookie is out of the script's reach (HttpOnly)", c.js("document.cookie") == "")
    check("...the password field is cleared", c.js("document.getElementById('password').value") == "")
    c.js("document.querySelector('button[aria-label=\"Start web\"]').click(); true")
    check("...Start reaches vmms with the CSRF header", c.wait("/kernel/i.test(document.getElementById('status').textContent)"))
    old = c.js("sessionStorage.getItem('viridian-csrf')")
    c.js("document.getElementById('logout').click(); true")
    c.wait("!document.getElementById('login').hidden")
    time.sleep(0.5)
    check("sign out ends the session on the server", c.js(
        "fetch('/api/v1/vms', {headers: {'X-CSRF-Token': %r}}).then(r => r.status)" % old) == 401)
dialogs = [e for e in c.events if e.get("method") == "Page.javascriptDialogOpening"]
check("no script dialog ever opened", not dialogs)
sys.exit(1 if fails else 0)
PY
rc=$?
ls "$out"/*.png >/dev/null 2>&1 && echo "screenshots: $out"
[ $rc = 0 ] && echo "web-console: all passed" || echo "web-console: failed"
exit $rc
