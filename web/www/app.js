// The browser console through vmmsweb's API: the VM dashboard, a VM's pages (#vm/<id>: summary
// and power actions, checkpoints, serial console, event log) and the New-VM form (#new). Every
// string from the server (VM and checkpoint names, console output, events, errors: guest- and
// user-controlled) goes into the page as text (textContent only), and the CSP allows no
// inline script.
'use strict';

const api = '/api/v1';
// Either an API token (sent as Authorization) or a login session: its cookie goes by itself,
// and its CSRF token (kept here) in the X-CSRF-Token header.
let token = sessionStorage.getItem('viridian-token');
let csrf = sessionStorage.getItem('viridian-csrf');
let signedIn = false;
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

// A token may come in the URL fragment (#token=...); it is moved to sessionStorage and
// dropped from the address bar.
function takeToken() {
  if (!location.hash.startsWith('#token=')) return false;
  token = decodeURIComponent(location.hash.slice(7));
  sessionStorage.setItem('viridian-token', token);
  history.replaceState(null, '', location.pathname);
  return true;
}
takeToken();

async function call(method, path, body) {
  const opts = { method, headers: token ? { Authorization: 'Bearer ' + token } : { 'X-CSRF-Token': csrf || '' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(api + path, opts);
  let j;
  try { j = await r.json(); } catch (e) { j = { ok: false, error: 'HTTP ' + r.status }; }
  if (r.status === 401) { token = csrf = null; signOut(j.error); }
  return j;
}

const vmPath = (vm, rest) => '/vms/' + encodeURIComponent(vm) + (rest || '');

function text(tag, s, label) {
  const e = document.createElement(tag);
  e.textContent = s;
  if (label) e.dataset.label = label;
  return e;
}

function button(label, aria, onclick) {
  const b = text('button', label);
  b.type = 'button';
  if (aria) b.setAttribute('aria-label', aria);
  b.addEventListener('click', onclick);
  return b;
}

function tr(...cells) {
  const e = document.createElement('tr');
  e.append(...cells);
  return e;
}

// A table body's rows, or one row saying there are none.
function rows(table, list, none) {
  const body = table.tBodies[0];
  if (list.length) return body.replaceChildren(...list);
  const td = text('td', none);
  td.colSpan = table.tHead.rows[0].cells.length;
  body.replaceChildren(tr(td));
}

function uptime(ms) {
  const s = Math.floor(ms / 1000);
  const p = (n) => String(n).padStart(2, '0');
  return p(Math.floor(s / 3600)) + ':' + p(Math.floor(s / 60) % 60) + ':' + p(s % 60);
}

const mb = (bytes) => Math.round(bytes / 1048576) + ' MB';
const when = (ms) => new Date(ms).toLocaleString();

// What each state allows, as Hyper-V Manager offers it.
const actions = [
  ['Start', 'start', (s) => s === 'Off' || s === 'Saved'],
  ['Shut down', 'stop', (s) => s === 'Running'],
  ['Turn off', 'turnoff', (s) => ['Running', 'Paused', 'Starting', 'Stopping'].includes(s)],
  ['Save', 'save', (s) => s === 'Running' || s === 'Paused'],
  ['Pause', 'pause', (s) => s === 'Running'],
  ['Resume', 'resume', (s) => s === 'Paused'],
  ['Restart', 'restart', (s) => s === 'Running' || s === 'Paused'],
];

// Restart-VM has no endpoint of its own: turn off, wait for Off, start, as hv does.
async function power(vm, op) {
  if (op !== 'restart') return call('POST', vmPath(vm, '/' + op));
  const r = await call('POST', vmPath(vm, '/turnoff'));
  if (!r.ok) return r;
  for (let i = 0; i < 60; i++) {
    const g = await call('GET', vmPath(vm));
    if (!g.ok) return g;
    if (g.vm.state === 'Off') return call('POST', vmPath(vm, '/start'));
    await sleep(500);
  }
  return { ok: false, error: 'the VM did not turn off within 30 s' };
}

// The current page; seq changes with it, so that an answer or a loop of a page left behind
// finds out and does nothing.
let view = { name: '' };
let seq = 0;

/* ---- the dashboard ---- */

function row(vm) {
  const name = document.createElement('td');
  name.dataset.label = 'Name';
  const a = text('a', vm.name);
  a.href = '#vm/' + encodeURIComponent(vm.id);
  a.dataset.key = 'open ' + vm.id;
  name.append(a);
  const td = document.createElement('td');
  td.className = 'actions';
  td.dataset.label = 'Actions';
  for (const [label, op, ok] of actions) {
    if (!ok(vm.state)) continue;
    const b = button(label, label + ' ' + vm.name, async () => {
      b.disabled = true;
      const r = await power(vm.id, op);
      show(r.ok ? label + ': ' + vm.name : r.error, !r.ok);
      refreshList();
    });
    b.dataset.key = op + ' ' + vm.id;
    td.append(b);
  }
  return tr(name, text('td', vm.state + (vm.operation ? ' (' + vm.operation + ')' : ''), 'State'),
    text('td', vm.cpu_usage + ' %', 'CPU'), text('td', mb(vm.memory_assigned), 'Memory'),
    text('td', uptime(vm.uptime_ms), 'Uptime'), text('td', vm.heartbeat || '', 'Heartbeat'), td);
}

function show(msg, error) {
  $('status').textContent = msg;
  $('status').className = error ? 'error' : '';
}

async function refreshList() {
  const mine = seq;
  const r = await call('GET', '/vms');
  if (mine !== seq) return;
  if (!r.ok) return show(r.error, true);
  // The rows are made anew every 2 s: the focus goes back to the same link or button.
  const key = document.activeElement && document.activeElement.dataset.key;
  $('vms').tBodies[0].replaceChildren(...r.vms.map(row));
  const again = key && [...$('vms').querySelectorAll('[data-key]')].find((e) => e.dataset.key === key);
  if (again) again.focus();
}

/* ---- a VM's pages ---- */

const tabs = ['summary', 'checkpoints', 'console', 'events'];
let busy = null; // the VM a power action is under way for: its buttons stay disabled

function vmShow(msg, error) {
  $('vm-status').textContent = msg;
  $('vm-status').className = error ? 'error' : '';
}

function openVm(changed) {
  for (const t of tabs) $('tab-' + t).hidden = t !== view.tab;
  for (const a of $('vm-tabs').querySelectorAll('a')) {
    const t = a.dataset.tab;
    a.href = '#vm/' + encodeURIComponent(view.id) + (t === 'summary' ? '' : '/' + t);
    if (t === view.tab) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  cpConfirm(null);
  if (changed) {
    for (const id of ['vm-name', 'vm-state', 'vm-status', 'vm-fields', 'cp-tree', 'console-out']) $(id).replaceChildren();
    for (const t of ['vm-disks', 'vm-nics', 'vm-ics', 'vm-events']) $(t).tBodies[0].replaceChildren();
  }
  refreshVm();
  if (view.tab === 'checkpoints') refreshCheckpoints();
  if (view.tab === 'console') consoleFollow();
}

async function refreshVm() {
  const mine = seq;
  const r = await call('GET', vmPath(view.id));
  if (mine !== seq) return;
  for (const b of $('vm-actions').querySelectorAll('button'))
    b.disabled = busy === view.id || !r.ok || !actions.find((a) => a[1] === b.dataset.op)[2](r.vm.state);
  if (!r.ok) return vmShow(r.error, true);
  const vm = r.vm;
  $('vm-name').textContent = vm.name;
  $('vm-state').textContent = vm.state + (vm.operation ? ' (' + vm.operation + ')' : '');
  if (view.tab === 'summary') summary(vm);
  if (view.tab === 'events') refreshEvents();
}

// As Get-VMIntegrationService names them and reads the worker's status.
const services = [['Heartbeat', 'Heartbeat'], ['Shutdown', 'Shutdown'], ['TimeSynchronization', 'Time Synchronization'],
  ['KeyValuePairExchange', 'Key-Value Pair Exchange'], ['VSS', 'VSS']];

async function summary(vm) {
  const fields = [['Status', vm.status], ['Generation', vm.generation], ['Processors', vm.cpus],
    ['CPU usage', vm.cpu_usage + ' %'], ['Memory', mb(vm.memory_startup) + (vm.memory_assigned ? ', ' + mb(vm.memory_assigned) + ' assigned' : '')],
    ['Uptime', uptime(vm.uptime_ms)], ['Heartbeat', vm.heartbeat || '-'], ['IP addresses', vm.ip_addresses.join(', ') || '-'],
    ['Checkpoint type', vm.checkpoint_type], ['Notes', vm.notes || '-'], ['ID', vm.id]];
  $('vm-fields').replaceChildren(...fields.flatMap(([k, v]) => [text('dt', k), text('dd', String(v))]));
  rows($('vm-disks'), vm.disks.map((d) => tr(text('td', 'SCSI ' + d.controller, 'Controller'),
    text('td', String(d.lun), 'Location'), text('td', d.path, 'Path'))), 'No hard disks.');
  const ics = vm.integration_services || {}, on = vm.integration_services_enabled || {};
  rows($('vm-ics'), services.map(([key, name]) => {
    const st = ics[key], enabled = on[key] !== false;
    return tr(text('td', name, 'Service'), text('td', enabled ? 'Yes' : 'No', 'Enabled'),
      text('td', !st || !enabled || st === 'disabled' ? '' : st === 'ready' ? 'OK' : 'No Contact', 'Status'));
  }), '');
  const mine = seq;
  const n = await call('GET', vmPath(vm.id, '/adapters'));
  if (mine !== seq) return;
  if (!n.ok) return vmShow(n.error, true);
  rows($('vm-nics'), n.adapters.map((a) => tr(text('td', a.name, 'Name'), text('td', a.switch || 'not connected', 'Switch'),
    text('td', a.mac_address, 'MAC address'), text('td', a.vlan ? String(a.vlan) : 'untagged', 'VLAN'),
    text('td', a.status || '', 'Status'))), 'No network adapters.');
}

async function refreshEvents() {
  const mine = seq;
  const r = await call('GET', vmPath(view.id, '/events'));
  if (mine !== seq) return;
  if (!r.ok) return vmShow(r.error, true);
  rows($('vm-events'), r.events.slice().reverse().map((e) => {
    const level = text('td', e.level, 'Level');
    level.className = 'level-' + e.level;
    return tr(text('td', when(e.time_ms), 'Time'), level, text('td', e.message, 'Message'));
  }), 'No events.');
}

/* ---- checkpoints ---- */

async function refreshCheckpoints() {
  const mine = seq;
  const r = await call('GET', vmPath(view.id, '/checkpoints'));
  if (mine !== seq) return;
  if (!r.ok) return vmShow(r.error, true);
  $('cp-tree').replaceChildren(r.checkpoints.length ? cpTree(r.checkpoints) : text('p', 'No checkpoints.'));
}

// Nested lists, parent above child: a checkpoint whose parent is gone is a root.
function cpTree(list) {
  const kids = new Map();
  for (const c of list) {
    const p = list.some((x) => x.id === c.parent_id) ? c.parent_id : '';
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push(c);
  }
  const ul = (parent) => {
    const u = document.createElement('ul');
    for (const c of kids.get(parent)) {
      const li = document.createElement('li');
      const meta = text('span', ' ' + c.type + ', ' + when(c.created_ms) + (c.current ? ', current' : ''));
      meta.className = 'meta';
      li.dataset.id = c.id;
      li.append(text('span', c.name), meta, ' ', button('Apply', 'Apply checkpoint ' + c.name, () => cpConfirm(
          'Apply checkpoint \u201c' + c.name + '\u201d? What the VM holds now is lost (a running VM is turned off first).', 'Apply',
          () => cpRun('POST', '/checkpoints/' + encodeURIComponent(c.id) + '/restore', undefined, 'Applying', 'Applied \u201c' + c.name + '\u201d'))),
        button('Delete', 'Delete checkpoint ' + c.name, () => cpConfirm('Delete checkpoint \u201c' + c.name + '\u201d?', 'Delete',
          () => cpRun('DELETE', '/checkpoints/' + encodeURIComponent(c.id), undefined, 'Deleting', 'Deleted \u201c' + c.name + '\u201d'))));
      if (kids.has(c.id)) li.append(ul(c.id));
      u.append(li);
    }
    return u;
  };
  return ul('');
}

// Apply and Delete ask first, in the page (window.confirm would stop the page).
let pending = null;
function cpConfirm(question, label, run) {
  pending = run || null;
  $('cp-confirm').hidden = !question;
  if (!question) return;
  $('cp-confirm').querySelector('span').textContent = question;
  $('cp-yes').textContent = label;
  $('cp-yes').focus();
}

// A checkpoint request; the job it starts is followed (job-status) to its end.
async function cpRun(method, path, body, doing, done) {
  const vm = view.id, mine = seq;
  for (const b of $('tab-checkpoints').querySelectorAll('button')) b.disabled = true;
  vmShow(doing + '...');
  let r = await call(method, vmPath(vm, path), body);
  let job = r.ok && r.job ? { state: r.job_state, percent: 0 } : null;
  while (job && job.state === 'Running' && mine === seq) {
    $('cp-job').hidden = false;
    $('cp-progress').value = job.percent;
    $('cp-job-text').textContent = doing + ': ' + job.percent + ' %';
    await sleep(500);
    const j = await call('GET', '/jobs/' + encodeURIComponent(r.job));
    if (!j.ok) { r = j; break; }
    job = j.job;
  }
  $('cp-job').hidden = true;
  for (const b of $('tab-checkpoints').querySelectorAll('button')) b.disabled = false;
  if (mine !== seq) return;
  if (job && job.state === 'Failed') r = { ok: false, error: doing + ' failed: ' + job.error };
  vmShow(r.ok ? done : r.error, !r.ok);
  refreshCheckpoints();
  refreshVm();
}

/* ---- the serial console ---- */

// Text only: escape sequences (colours, cursor moves) are dropped, and so is CR (the guest's
// lines end in CR LF); any other control character is shown as ^X instead of acted on.
function terminal() {
  const decoder = new TextDecoder();
  let carry = '';
  return (bytes) => {
    let s = carry + decoder.decode(bytes, { stream: true });
    const cut = s.search(/\x1b(\[[0-?]*[ -/]*|\][^\x07\x1b]*)?$/); // a sequence the next read ends
    carry = cut >= 0 && s.length - cut < 256 ? s.slice(cut) : '';
    if (carry) s = s.slice(0, cut);
    return s.replace(/\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\))/g, '').replace(/\r/g, '')
      .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, (c) => '^' + String.fromCharCode(c.charCodeAt(0) ^ 0x40))
      .replace(/[\x80-\x9f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16));
  };
}

const keep = 256 * 1024; // bytes of the log read at most, characters shown at most

// console-read from where the last read ended: again at once while there is more, else every
// 0.5 s (2 s while the VM is off). An EventSource on the console stream could send neither the
// token nor the CSRF header.
async function consoleFollow() {
  const mine = seq, vm = view.id, out = $('console-out');
  let offset = 0, term = terminal();
  while (mine === seq) {
    const r = await call('GET', vmPath(vm, '/console?offset=' + offset));
    if (mine !== seq) return;
    if (!r.ok) return vmShow(r.error, true);
    if (r.size - r.offset > keep) { // far behind: the last part only
      offset = r.size - keep;
      term = terminal();
      out.replaceChildren('[earlier output left out]\n');
      continue;
    }
    const bytes = Uint8Array.from(atob(r.data), (c) => c.charCodeAt(0));
    if (r.offset - bytes.length !== offset) { // the log started over (the VM started again)
      term = terminal();
      out.replaceChildren();
    }
    offset = r.offset;
    const s = bytes.length ? term(bytes) : '';
    if (s) {
      const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
      out.append(s);
      if (out.textContent.length > 2 * keep) out.textContent = out.textContent.slice(-keep);
      if (atEnd) out.scrollTop = out.scrollHeight;
    } else {
      await sleep(r.state === 'Off' ? 2000 : 500);
    }
  }
}

// console-input, base64; what COM1's FIFO did not take is sent again.
async function consoleSend(vm, bytes) {
  for (let tries = 0; bytes.length && tries < 20; tries++) {
    const r = await call('POST', vmPath(vm, '/console'), { data: btoa(String.fromCharCode(...bytes)) });
    if (!r.ok) return r;
    bytes = bytes.subarray(r.accepted);
    if (bytes.length) await sleep(100);
  }
  return bytes.length ? { ok: false, error: 'the guest did not take the last ' + bytes.length + ' bytes' } : { ok: true };
}

/* ---- the New-VM form ---- */

function diskChoice() {
  const v = document.querySelector('input[name=disk]:checked').value;
  $('new-vhd-name').disabled = $('new-vhd-size').disabled = v !== 'new';
  $('new-vhd-path').disabled = v !== 'existing';
}

async function newVm(e) {
  e.preventDefault();
  $('new-error').textContent = '';
  const body = { name: $('new-name').value.trim(), memory: Number($('new-memory').value) * 1048576,
    cpus: Number($('new-cpus').value), generation: Number($('new-gen').value) };
  const disk = document.querySelector('input[name=disk]:checked').value;
  if (disk === 'new') {
    body.new_vhd_path = $('new-vhd-name').value.trim() || body.name + '.vhdx';
    body.new_vhd_size = Number($('new-vhd-size').value) * 1073741824;
  } else if (disk === 'existing') {
    body.vhd_path = $('new-vhd-path').value.trim();
  }
  const r = await call('POST', '/vms', body);
  if (!r.ok) {
    $('new-error').textContent = r.error;
    return;
  }
  $('new-form').reset();
  diskChoice();
  location.hash = '#vm/' + encodeURIComponent(r.vm.id);
}

/* ---- pages, signing in and out ---- */

function route() {
  if (takeToken()) return signIn();
  if (!signedIn) return;
  const was = view;
  const m = location.hash.match(/^#vm\/([^/]+)(?:\/(checkpoints|console|events))?$/);
  let id = null;
  try { id = m && decodeURIComponent(m[1]); } catch (e) { /* a malformed name: the dashboard */ }
  view = id ? { name: 'vm', id, tab: m[2] || 'summary' } : { name: location.hash === '#new' ? 'new' : 'dashboard' };
  seq++;
  for (const s of ['dashboard', 'vm', 'new']) $(s).hidden = s !== view.name;
  const changed = view.name !== was.name || view.id !== was.id;
  if (view.name === 'vm') openVm(changed);
  else if (view.name === 'new') $('new-error').textContent = '';
  else refreshList();
  // A new page: its heading takes the focus (a tab of the same VM keeps it on the tab).
  if (changed) $(view.name).querySelector('h2').focus();
}

function signOut(msg) {
  if (csrf && !token) call('POST', '/logout');
  token = csrf = null;
  signedIn = false;
  seq++;
  view = { name: '' };
  sessionStorage.removeItem('viridian-token');
  sessionStorage.removeItem('viridian-csrf');
  for (const s of ['dashboard', 'vm', 'new', 'nav', 'logout']) $(s).hidden = true;
  $('vms').tBodies[0].replaceChildren();
  $('who').textContent = '';
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
}

async function signIn() {
  const w = await call('GET', '/whoami');
  if (!w.ok) return;
  $('who').textContent = w.user + ' (' + w.role + ')';
  $('login').hidden = true;
  $('logout').hidden = $('nav').hidden = false;
  signedIn = true;
  route();
}

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const user = $('user').value.trim(), password = $('password').value;
    token = $('token').value.trim() || null;
    $('token').value = $('password').value = '';
    if (token) {
      sessionStorage.setItem('viridian-token', token);
    } else {
      const r = await fetch(api + '/login', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user, password }) });
      let j;
      try { j = await r.json(); } catch (err) { j = { ok: false, error: 'HTTP ' + r.status }; }
      if (!j.ok) { $('login-error').textContent = j.error; return; }
      csrf = j.csrf;
      sessionStorage.setItem('viridian-csrf', csrf);
    }
    signIn();
  });
  $('logout').addEventListener('click', () => signOut(''));
  for (const [label, op] of actions) {
    const b = button(label, null, async () => {
      const vm = view.id, mine = seq;
      busy = vm;
      for (const x of $('vm-actions').querySelectorAll('button')) x.disabled = true;
      vmShow(label + '...');
      const r = await power(vm, op);
      busy = null;
      if (mine === seq) vmShow(r.ok ? label + ': ' + (r.state || 'done') : r.error, !r.ok);
      refreshVm();
    });
    b.dataset.op = op;
    b.disabled = true;
    $('vm-actions').append(b);
  }
  $('cp-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const name = $('cp-name').value.trim();
    $('cp-name').value = '';
    cpRun('POST', '/checkpoints', name ? { name } : {}, 'Creating a checkpoint', name ? 'Checkpoint \u201c' + name + '\u201d created' : 'Checkpoint created');
  });
  $('cp-yes').addEventListener('click', () => { const run = pending; cpConfirm(null); if (run) run(); });
  $('cp-no').addEventListener('click', () => cpConfirm(null));
  $('cp-confirm').addEventListener('keydown', (e) => { if (e.key === 'Escape') cpConfirm(null); });
  $('console-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const line = $('console-in').value;
    $('console-in').value = '';
    const r = await consoleSend(view.id, new TextEncoder().encode(line + '\r'));
    if (!r.ok) {
      $('console-in').value = line;
      vmShow(r.error, true);
    }
  });
  $('new-disk').addEventListener('change', diskChoice);
  diskChoice();
  $('new-form').addEventListener('submit', newVm);
  window.addEventListener('hashchange', route);
  if (token || csrf) signIn(); else signOut('');
  setInterval(() => {
    if (view.name === 'dashboard') refreshList();
    else if (view.name === 'vm') refreshVm();
  }, 2000);
});
