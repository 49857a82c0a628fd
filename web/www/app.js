// The VM dashboard: a list of VMs with power actions, through vmmsweb's API. Every string from
// the server (VM names, states, errors: guest- and user-controlled) goes into the page as
// text (textContent only), and the CSP allows no inline script.
'use strict';

const api = '/api/v1';
// Either an API token (sent as Authorization) or a login session: its cookie goes by itself,
// and its CSRF token (kept here) in the X-CSRF-Token header.
let token = sessionStorage.getItem('viridian-token');
let csrf = sessionStorage.getItem('viridian-csrf');
const $ = (id) => document.getElementById(id);

// A token may come in the URL fragment (#token=...) once; it is moved to sessionStorage and
// dropped from the address bar.
if (location.hash.startsWith('#token=')) {
  token = decodeURIComponent(location.hash.slice(7));
  sessionStorage.setItem('viridian-token', token);
  history.replaceState(null, '', location.pathname);
}

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

function text(tag, s, label) {
  const e = document.createElement(tag);
  e.textContent = s;
  if (label) e.dataset.label = label;
  return e;
}

function uptime(ms) {
  const s = Math.floor(ms / 1000);
  const p = (n) => String(n).padStart(2, '0');
  return p(Math.floor(s / 3600)) + ':' + p(Math.floor(s / 60) % 60) + ':' + p(s % 60);
}

// What each state allows, as Hyper-V Manager offers it.
const actions = [
  ['Start', 'start', (s) => s === 'Off' || s === 'Saved'],
  ['Shut down', 'stop', (s) => s === 'Running'],
  ['Turn off', 'turnoff', (s) => ['Running', 'Paused', 'Starting', 'Stopping'].includes(s)],
  ['Save', 'save', (s) => s === 'Running' || s === 'Paused'],
  ['Pause', 'pause', (s) => s === 'Running'],
  ['Resume', 'resume', (s) => s === 'Paused'],
];

function row(vm) {
  const tr = document.createElement('tr');
  tr.append(text('td', vm.name, 'Name'), text('td', vm.state + (vm.operation ? ' (' + vm.operation + ')' : ''), 'State'),
    text('td', vm.cpu_usage + ' %', 'CPU'), text('td', Math.round(vm.memory_assigned / 1048576) + ' MB', 'Memory'),
    text('td', uptime(vm.uptime_ms), 'Uptime'), text('td', vm.heartbeat || '', 'Heartbeat'));
  const td = document.createElement('td');
  td.className = 'actions';
  td.dataset.label = 'Actions';
  for (const [label, op, ok] of actions) {
    if (!ok(vm.state)) continue;
    const b = text('button', label);
    b.type = 'button';
    b.setAttribute('aria-label', label + ' ' + vm.name);
    b.addEventListener('click', async () => {
      b.disabled = true;
      const r = await call('POST', '/vms/' + encodeURIComponent(vm.name) + '/' + op);
      show(r.ok ? label + ': ' + vm.name : r.error, !r.ok);
      refresh();
    });
    td.append(b);
  }
  tr.append(td);
  return tr;
}

function show(msg, error) {
  $('status').textContent = msg;
  $('status').className = error ? 'error' : '';
}

async function refresh() {
  const r = await call('GET', '/vms');
  if (!r.ok) return show(r.error, true);
  $('vms').tBodies[0].replaceChildren(...r.vms.map(row));
}

function signOut(msg) {
  if (csrf && !token) call('POST', '/logout');
  token = csrf = null;
  sessionStorage.removeItem('viridian-token');
  sessionStorage.removeItem('viridian-csrf');
  $('dashboard').hidden = true;
  $('vms').tBodies[0].replaceChildren();
  $('logout').hidden = true;
  $('who').textContent = '';
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
}

async function signIn() {
  const w = await call('GET', '/whoami');
  if (!w.ok) return;
  $('who').textContent = w.user + ' (' + w.role + ')';
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('logout').hidden = false;
  refresh();
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
  if (token || csrf) signIn(); else signOut('');
  setInterval(() => { if ((token || csrf) && !$('dashboard').hidden) refresh(); }, 2000);
});
