#!/usr/bin/env bash
# The browser console in headless Chromium, driven over the DevTools protocol
# (tests/integration/lib/cdp.py), no guest: sign in with a token through the form, the VM
# dashboard lists the VMs, a VM named `<img src=x onerror=alert(1)>` shows literally (on its
# own page too) with no image element and no dialog, Start reaches vmms and its refusal is
# shown; a VM's page (#vm/<id>) shows its fields, adapters and integration services, creates,
# applies and deletes checkpoints (checked with hv Get-VMCheckpoint), lists its events and
# shows its console log as text; the New-VM form creates a VM (hv Get-VM) and shows the API's
# error; a Reader's actions are refused (403) in the pages; sign out forgets the token.
# Screenshots of each page at 1280x800 and phone width go to $VIRIDIAN_TEST_OUTPUT/web-console
# (default build/test-output/web-console).
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
"$B/hv" Add-VMNetworkAdapter -VMName web >/dev/null
"$B/hv" Disable-VMIntegrationService -VMName web -Name VSS >/dev/null
vmfield() { "$B/hv" Get-VM "$1" -Json | python3 -c 'import json, sys; print(json.load(sys.stdin)[0][sys.argv[1]])' "$2"; }
webid=$(vmfield web id)
# A console log as a guest leaves it: CR LF, escape sequences, a bell, markup.
printf 'boot \033[1mok\033[0m <img src=x onerror=alert(1)>\a\r\nlogin: ' >"$(vmfield web path)/console.log"
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

PYTHONPATH=tests/integration/lib python3 - "$port" "$dport" "$t" "$out" "${#pamenv[@]}" "$B" "$webid" <<'PY'
import json, subprocess, sys, time
from cdp import CDP
port, dport, t, out, pam = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] != "0"
B, webid = sys.argv[6], sys.argv[7]
url = "https://127.0.0.1:%s/" % port
tok = {r: open("%s/%s.tok" % (t, r)).read().strip() for r in ("Administrator", "Reader")}
fails = 0
def check(name, ok):
    global fails
    print(("ok: " if ok else "FAIL: ") + name)
    fails += 0 if ok else 1
def hv(*args):
    return subprocess.run([B + "/hv", *args], capture_output=True, text=True).stdout
def shot(page):  # at 1280x800 and phone width, where nothing may be wider than the screen
    c.screenshot("%s/%s-1280x800.png" % (out, page), 1280, 800)
    c.screenshot("%s/%s-phone-390x844.png" % (out, page), 390, 844, mobile=True)
    wide = c.js("document.documentElement.scrollWidth")
    c.call("Emulation.clearDeviceMetricsOverride")
    check("%s page: nothing wider than the phone's 390 px (%s)" % (page, wide), wide <= 390)
def js_str(s):
    return json.dumps(s)
def click(selector):
    c.js("document.querySelector(%s).click(); true" % js_str(selector))
def field(name):  # a value of the VM's summary
    return c.js("(() => { const dt = [...document.querySelectorAll('#vm-fields dt')].find(e => e.textContent === %s);"
                " return dt && dt.nextElementSibling.textContent; })()" % js_str(name))
def tab(name):
    click("#vm-tabs a[data-tab=%s]" % name)
    return c.wait("location.hash === '#vm/%s/%s' && !document.getElementById('tab-%s').hidden" % (webid, name, name))
vm_status = "document.getElementById('vm-status').textContent"
cp_names = "[...document.querySelectorAll('#cp-tree li > span:first-child')].map(s => s.textContent)"
c = CDP(dport)
c.call("Page.enable"); c.call("Runtime.enable"); c.call("Log.enable")
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
shot("dashboard")
check("every action button is reachable by keyboard and labelled", c.js(
    "[...document.querySelectorAll('#vms button')].every(b => b.tabIndex >= 0 && b.getAttribute('aria-label'))"))
c.js("document.querySelector('button[aria-label=\"Start web\"]').click(); true")
check("Start reaches vmms; its refusal (no kernel) is shown", c.wait(
    "document.getElementById('status').className === 'error' && /kernel/i.test(document.getElementById('status').textContent)"))
c.js("document.querySelector('#vms a').focus(); true")
time.sleep(2.5)
check("the dashboard's refresh keeps the focus on its VM link", c.js("(document.activeElement.dataset.key || '').startsWith('open ')"))

# A VM's page: its fields, power buttons by state, vmms's refusal.
c.js("[...document.querySelectorAll('#vms a')].find(a => a.textContent === 'web').click(); true")
check("a VM's name opens its page at #vm/<id>", c.wait(
    "location.hash === '#vm/%s' && document.getElementById('vm-name').textContent === 'web'" % webid))
check("...which takes the focus to its heading", c.js("document.activeElement.id") == "vm-name")
check("...state Off, 1 processor, 1024 MB, generation 1, no uptime, no address", c.wait(
    "document.getElementById('vm-state').textContent === 'Off' && document.querySelectorAll('#vm-fields dt').length > 0")
    and [field(f) for f in ("Processors", "Memory", "Generation", "Uptime", "IP addresses", "Heartbeat")] == ["1", "1024 MB", "1", "00:00:00", "-", "-"])
check("...its network adapter, not connected", c.wait(
    "/Network Adapter.*not connected.*00:15:5d:/.test(document.querySelector('#vm-nics tbody').textContent)"))
check("...no hard disks", "No hard disks" in c.js("document.querySelector('#vm-disks tbody').textContent"))
check("...its integration services, VSS disabled", c.js(
    "[...document.querySelectorAll('#vm-ics tbody tr')].map(r => r.cells[0].textContent + '=' + r.cells[1].textContent).join()")
    == "Heartbeat=Yes,Shutdown=Yes,Time Synchronization=Yes,Key-Value Pair Exchange=Yes,VSS=No")
check("...an Off VM's buttons: Start only", c.js(
    "Object.fromEntries([...document.querySelectorAll('#vm-actions button')].map(b => [b.textContent, !b.disabled]))")
    == {"Start": True, "Shut down": False, "Turn off": False, "Save": False, "Pause": False, "Resume": False, "Restart": False})
check("every control of the VM's pages is reachable by keyboard", c.js(
    "[...document.querySelectorAll('#vm button, #vm a, #vm input, #vm pre')].every(e => e.tabIndex >= 0)"))
shot("vm")
click("#vm-actions button[data-op=start]")
check("Start on the VM's page: vmms's refusal (no kernel) is shown", c.wait(
    "document.getElementById('vm-status').className === 'error' && /kernel/i.test(%s)" % vm_status))

# Checkpoints of an Off VM: create two (a parent and its child), apply the first, delete both.
check("the Checkpoints tab", tab("checkpoints") and c.wait("/No checkpoints/.test(document.getElementById('cp-tree').textContent)"))
def cp_create(name):
    c.js("document.getElementById('cp-name').value = %s; document.getElementById('cp-form').requestSubmit(); true" % js_str(name))
    return c.wait("/created/.test(%s) && %s.includes(%s)" % (vm_status, cp_names, js_str(name)))
check("Create checkpoint: its job ends, the page says so and lists it", cp_create("before"))
check("...hv Get-VMCheckpoint lists it", "before" in hv("Get-VMCheckpoint", "-VMName", "web"))
check("a second checkpoint is the first's child in the tree", cp_create("after") and c.js(
    "document.querySelector('#cp-tree > ul > li > ul > li > span').textContent") == "after")
shot("checkpoints")
def cp_button(op, name):
    click("#cp-tree button[aria-label=%s]" % js_str("%s checkpoint %s" % (op, name)))
cp_button("Apply", "before")
check("Apply asks first, in the page, its button focused", c.wait(
    "!document.getElementById('cp-confirm').hidden && document.activeElement.id === 'cp-yes'"))
click("#cp-yes")
check("...and applies it: 'before' is current", c.wait(
    "/Applied/.test(%s) && [...document.querySelectorAll('#cp-tree li')].some(l => l.firstChild.textContent === 'before' && / current$/.test(l.children[1].textContent))" % vm_status))
cp_button("Delete", "after")
c.wait("!document.getElementById('cp-confirm').hidden")
click("#cp-no")
check("Cancel deletes nothing", c.js("document.getElementById('cp-confirm').hidden") and "after" in hv("Get-VMCheckpoint", "-VMName", "web"))
for name in ("after", "before"):
    cp_button("Delete", name)
    c.wait("!document.getElementById('cp-confirm').hidden")
    click("#cp-yes")
    check("Delete %r: gone from the page" % name, c.wait("/Deleted/.test(%s) && !%s.includes(%s)" % (vm_status, cp_names, js_str(name))))
check("...and from hv Get-VMCheckpoint", not any(n in hv("Get-VMCheckpoint", "-VMName", "web") for n in ("before", "after")))

check("the Event log tab", tab("events"))
check("...lists the creation and the checkpoints, newest first", c.wait(
    "/checkpoint 'before' taken/.test(document.querySelector('#vm-events tbody').textContent)") and c.js(
    "document.querySelector('#vm-events tbody tr:last-child td:last-child').textContent") == "virtual machine created")
shot("events")

check("the Console tab", tab("console"))
check("...shows the Off VM's log as text: escape sequences and CR dropped, the bell as ^G", c.wait(
    "document.getElementById('console-out').textContent === %s" % js_str("boot ok <img src=x onerror=alert(1)>^G\nlogin: ")))
check("...and makes no element", c.js("document.getElementById('console-out').children.length === 0 && document.images.length === 0"))
c.js("document.getElementById('console-in').value = 'root'; document.getElementById('console-form').requestSubmit(); true")
check("console input to an Off VM: vmms's refusal is shown, the line kept", c.wait(
    "/is Off/.test(%s) && document.getElementById('console-in').value === 'root'" % vm_status))
shot("console")

# The New-VM form.
click("#nav a[href='#new']")
check("the New VM form", c.wait("!document.getElementById('new').hidden && location.hash === '#new'"))
def set_value(id, v):
    return "document.getElementById(%s).value = %s;" % (js_str(id), js_str(v))
c.js(set_value("new-name", "web") + "document.getElementById('new-form').requestSubmit(); true")
check("New VM with a name in use: the API's error is shown", c.wait("/already exists/.test(document.getElementById('new-error').textContent)"))
c.js(set_value("new-name", "made") + set_value("new-memory", "768") + set_value("new-cpus", "2") +
     "document.querySelector('input[name=disk][value=new]').click();" + set_value("new-vhd-size", "1") + "true")
check("...choosing a new VHDX enables its fields only", c.js(
    "!document.getElementById('new-vhd-size').disabled && document.getElementById('new-vhd-path').disabled"))
shot("new-vm")
click("#new-form button[type=submit]")
check("New VM: created, its page opens", c.wait("/^#vm\\//.test(location.hash) && document.getElementById('vm-name').textContent === 'made'"))
made = (json.loads(hv("Get-VM", "made", "-Json") or "[{}]") or [{}])[0]
check("...hv Get-VM made: 2 processors, 768 MB, a new made.vhdx", made.get("cpus") == 2 and made.get("memory_startup") == 768 << 20
      and len(made.get("disks", [])) == 1 and made["disks"][0]["path"].endswith("/made.vhdx"))
check("...its page lists the disk", c.wait("/made\\.vhdx/.test(document.querySelector('#vm-disks tbody').textContent)"))
vms = 3

click("#nav a[href='#']")
c.wait(rows + " === %d" % vms)
c.js("[...document.querySelectorAll('#vms a')].find(a => a.textContent.startsWith('<img')).click(); true")
check("the page of the VM named <img src=x onerror=alert(1)> shows it literally", c.wait(
    "document.getElementById('vm-name').textContent === '<img src=x onerror=alert(1)>'"))
check("...and makes no element", c.js("document.images.length === 0 && document.querySelectorAll('[onerror]').length === 0"))
c.js("document.getElementById('logout').click(); true")
check("sign out forgets the token and the list", c.wait("!document.getElementById('login').hidden") and c.js("sessionStorage.length + " + rows) == 0)
# A Reader: the token in the fragment (dropped from the address bar), Start refused.
c.call("Page.navigate", url="about:blank")
c.wait("location.href === 'about:blank'")
c.call("Page.navigate", url=url + "#token=" + tok["Reader"])
check("a Reader signs in through the URL fragment", c.wait(rows + " === %d" % vms))
check("...which leaves the address bar", c.js("location.hash") == "")
c.js("document.querySelector('button[aria-label=\"Start web\"]').click(); true")
check("a Reader's Start is refused in the page (access denied)", c.wait("/access denied/.test(document.getElementById('status').textContent)"))
c.call("Page.navigate", url="about:blank"); c.wait("location.href === 'about:blank'")
c.call("Page.navigate", url=url + "#vm/" + webid)
check("a Reader opens a VM's page from the URL", c.wait("document.getElementById('vm-name').textContent === 'web'"))
click("#vm-actions button[data-op=start]")
check("...its Start is refused in the page (403: needs Operator)", c.wait("/access denied.*needs Operator/.test(%s)" % vm_status))
tab("checkpoints")
c.js("document.getElementById('cp-name').value = 'x'; document.getElementById('cp-form').requestSubmit(); true")
check("...Create checkpoint is refused in the page", c.wait("/access denied.*'checkpoint'/.test(%s)" % vm_status))
check("...and nothing was made", "No checkpoints" in c.js("document.getElementById('cp-tree').textContent") and "x" not in hv("Get-VMCheckpoint", "-VMName", "web").split())
tab("console")
check("...the console is refused in the page", c.wait("/access denied.*'console-read'/.test(%s)" % vm_status))
# Load to interactive with a signed-in session (the token in sessionStorage).
times = []
for _ in range(5):
    c.call("Page.navigate", url="about:blank"); c.wait("location.href === 'about:blank'")
    s = time.time(); c.call("Page.navigate", url=url)
    c.wait(rows + " === %d" % vms, timeout=10); times.append((time.time() - s) * 1000)
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
    check("alice signs in with her host account", c.wait(rows + " === %d" % vms) and c.js("document.getElementById('who').textContent") == "pam:alice (Operator)")
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
check("no script error was thrown", not [e for e in c.events if e.get("method") == "Runtime.exceptionThrown"])
check("nothing broke the CSP", not [e for e in c.events if e.get("method") == "Log.entryAdded"
                                    and "Content Security Policy" in e["params"]["entry"].get("text", "")])
sys.exit(1 if fails else 0)
PY
rc=$?
ls "$out"/*.png >/dev/null 2>&1 && echo "screenshots: $out"
[ $rc = 0 ] && echo "web-console: all passed" || echo "web-console: failed"
exit $rc
