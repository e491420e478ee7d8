"""The status page: one HTML document, one stylesheet, one script, all served by the daemon.

No CDN and no build step, so it works on a laptop cabled to the box with no internet. The script
polls ``/api/status`` every 2 s and writes every daemon-supplied string with ``textContent`` (never
as HTML), so a point name or alarm text cannot inject markup; the CSP forbids inline script anyway.
"""

from __future__ import annotations

import json
import string

from gateway.htmlescape import escape
from gateway.i18n import html_lang, speaking
from gateway.status.page_text import page_words, script_words

_INDEX_TEMPLATE = string.Template("""<!doctype html>
<html lang="$lang">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body data-words="$words">
<header>
  <h1 id="title">fieldgate</h1>
  <span id="health" class="badge">$loading</span>
  <span id="meta"></span>
  <span id="updated"></span>
</header>
<div id="error" class="banner" hidden></div>
<main>
<section id="points-section"><h2>$points</h2>
  <table id="points"><thead><tr><th>$point</th><th>$value</th><th>$unit</th><th>$quality</th><th>$age</th></tr>
  </thead><tbody></tbody></table></section>
<section id="trend-section"><h2>$trends</h2>
  <div class="controls"><select id="trend-point" aria-label="$point"></select>
  <button type="button" class="span" data-span="1h">$last_hour</button>
  <button type="button" class="span" data-span="24h">$last_day</button></div>
  <div id="trend"><p class="note">$no_trend</p></div></section>
<section id="alarm-history-section"><h2>$alarm_history</h2>
  <table id="alarm-history"><thead><tr><th>$time</th><th>$alarm</th><th>$event</th><th>$by</th><th>$severity</th>
  </tr></thead><tbody></tbody></table></section>
<section id="devices-section"><h2>$devices</h2>
  <table id="devices"><thead><tr><th>$bus</th><th>$device</th><th>$unit</th><th>$state</th><th>$polls</th>
  <th>$errors</th></tr></thead><tbody></tbody></table></section>
<section id="links-section"><h2>$links</h2>
  <table id="links"><thead><tr><th>$link</th><th>$type</th><th>$state</th><th>$sent</th><th>$failed</th>
  <th>$backlog</th></tr></thead><tbody></tbody></table></section>
<section id="journal-section"><h2>$journal</h2><dl id="journal"></dl>
  <h2>$loops</h2><ul id="loops"></ul></section>
<section id="alarms-section"><h2>$alarms</h2>
  <table id="alarms"><thead><tr><th>$alarm</th><th>$rule</th><th>$severity</th><th>$state</th><th>$since</th>
  </tr></thead><tbody></tbody></table></section>
<section id="evidence-section"><h2>$evidence</h2><ol id="evidence" reversed></ol></section>
<section id="camera-section"><h2>$camera</h2>
  <div id="camera-empty">$no_snapshot</div>
  <figure id="camera" hidden><div id="frame"><img id="snapshot" alt="$snapshot_alt"></div>
  <figcaption id="camera-caption"></figcaption></figure>
  <div id="camview" hidden><h3>$camera_view</h3>
    <div class="controls"><select id="camview-camera" aria-label="$camera"></select>
    <button id="camview-refresh" type="button">$refresh_frame</button>
    <button id="camview-test" type="button" hidden>$test_detector</button></div>
    <div id="camview-frame"></div><p id="camview-note" class="note"></p></div></section>
<section id="actions-section"><h2>$technician</h2>
  <p id="logins-off" hidden>$logins_off</p>
  <form id="login-form"><input id="login-user" autocomplete="username" placeholder="$user" required>
    <input id="login-password" type="password" autocomplete="current-password" placeholder="$password" required>
    <button type="submit">$log_in</button></form>
  <div id="session" hidden><span id="session-user"></span> <button id="logout" type="button">$log_out</button>
  <form id="probe-form"><h3>$probe</h3>
    <input id="probe-bus" placeholder="$bus" required>
    <input id="probe-unit" type="number" min="0" max="247" placeholder="$unit_id" required>
    <select id="probe-table"><option>holding</option><option>input</option><option>coil</option>
    <option>discrete</option></select>
    <input id="probe-address" type="number" min="0" max="65535" placeholder="$address" required>
    <input id="probe-count" type="number" min="1" max="125" value="1" required>
    <button type="submit">$read</button></form>
  <p><button id="selftest" type="button">$selftest</button></p>
  <form id="commission-form"><h3>$commission</h3>
    <textarea id="commission-request" rows="3" placeholder="$commission_request"></textarea>
    <button type="submit">$commission_run</button> <span id="commission-links"></span></form></div>
  <pre id="action-result"></pre>
</section>
</main>
</body>
</html>
""")


def index_html(language: str) -> str:
    """The page in ``language`` (the catalog's words, HTML-escaped; the script's labels as JSON)."""
    with speaking(language):
        words = {key: escape(text) for key, text in page_words().items()}
        script = json.dumps(script_words(), ensure_ascii=False, separators=(",", ":"))
    return _INDEX_TEMPLATE.substitute(words, lang=html_lang(language), words=escape(script, quote=True))


APP_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2125; }
header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1em; background: #1d2733; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
.badge { padding: .1em .6em; border-radius: 1em; background: #888; }
.badge.ok { background: #1f8a3b; } .badge.bad { background: #c62828; }
.banner { background: #c62828; color: #fff; padding: .5em 1em; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 1em; padding: 1em; }
section { background: #fff; border-radius: 6px; padding: .5em 1em 1em; box-shadow: 0 1px 2px #0002; }
h2 { font-size: 1.05em; } table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .15em .5em; border-bottom: 1px solid #e3e5e8; }
td.value { font-variant-numeric: tabular-nums; font-weight: 600; }
.good, .online, .connected { color: #1f8a3b; }
.bad, .offline, .disconnected, .overdue { color: #c62828; font-weight: 600; }
#frame { position: relative; display: inline-block; max-width: 100%; }
#frame img { max-width: 100%; display: block; }
.box { position: absolute; border: 2px solid #ff1744; box-sizing: border-box; }
.box span { position: absolute; top: -1.4em; left: -2px; background: #ff1744; color: #fff; font-size: 11px;
  padding: 0 .3em; white-space: nowrap; }
code.raw { color: #6b7280; font-size: 11px; word-break: break-all; }
#trend svg, #camview-frame svg { width: 100%; height: auto; }
#trend-section { grid-column: 1 / -1; } #trend svg { max-width: 1100px; }
.controls { display: flex; gap: .5em; align-items: center; margin-bottom: .5em; }
button.span.chosen { font-weight: 700; }
#points tbody tr { cursor: pointer; }
.note { color: #6b7280; }
td.kind.raised { color: #c62828; font-weight: 600; } td.kind.cleared { color: #1f8a3b; }
#commission-request { width: 100%; font: 12px monospace; }
pre { white-space: pre-wrap; word-break: break-all; max-height: 20em; overflow: auto; }
"""

APP_JS = r"""
'use strict';
const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);
// The labels in the page's language, from the server (gateway/status/page_text.py).
let W = {};
function w(key, args) {
  let text = typeof W[key] === 'string' ? W[key] : key;
  for (const [k, v] of Object.entries(args || {})) text = text.split('{' + k + '}').join(String(v));
  return text;
}
function label(prefix, v) {
  const key = prefix + v;
  return typeof W[key] === 'string' ? W[key] : (v === null || v === undefined ? '—' : String(v));
}
function quality(q) { return q ? label('q_', q) : '—'; }

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function fmtValue(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  return String(v);
}
function fmtAge(s) {
  if (typeof s !== 'number') return '—';
  if (s < 60) return w('sec', {n: s.toFixed(1)});
  if (s < 3600) return w('min', {n: (s / 60).toFixed(1)});
  return w('hour', {n: (s / 3600).toFixed(1)});
}
function fmtTime(t) {
  return typeof t === 'number' ? new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19) + 'Z' : '—';
}
function list(v) { return Array.isArray(v) ? v.filter((x) => x && typeof x === 'object') : []; }
function fillRows(tableId, rows, cells) {
  const body = $(tableId).tBodies[0];
  const fresh = document.createDocumentFragment();
  for (const row of rows) {
    const tr = document.createElement('tr');
    for (const [text, cls] of cells(row)) tr.appendChild(el('td', text, cls));
    fresh.appendChild(tr);
  }
  body.replaceChildren(fresh);
  return body;
}

let trendPoint = null;
let trendSpan = '1h';
let trendDefault = null;
async function loadTrendDefault() {
  try {
    const r = await fetch('/api/trend-points', {cache: 'no-store', credentials: 'same-origin'});
    if (r.ok) trendDefault = (await r.json()).default;
  } catch (e) { /* the first point then */ }
}
let rounds = 0;
function fillTrendPoints(points) {
  const select = $('trend-point');
  const names = points.map((p) => String(p.point));
  const shown = Array.from(select.options).map((o) => o.value);
  if (names.join('\n') !== shown.join('\n')) {
    select.replaceChildren(...names.map((n) => { const o = el('option', n); o.value = n; return o; }));
  }
  if (trendPoint === null && names.length) trendPoint = names.includes(trendDefault) ? trendDefault : names[0];
  if (trendPoint !== null) select.value = trendPoint;
}
async function loadTrend() {
  if (trendPoint === null) return;
  document.querySelectorAll('button.span').forEach((b) => b.classList.toggle('chosen', b.dataset.span === trendSpan));
  try {
    const r = await fetch('/trend.svg?point=' + encodeURIComponent(trendPoint) + '&span=' + trendSpan,
                          {cache: 'no-store', credentials: 'same-origin'});
    if (!r.ok) { $('trend').replaceChildren(el('p', w('no_trend_here'), 'note')); return; }
    // The server drew the SVG and escaped every text in it; it is parsed as XML, never as HTML.
    const svg = new DOMParser().parseFromString(await r.text(), 'image/svg+xml').documentElement;
    if (svg.nodeName === 'svg') $('trend').replaceChildren(document.importNode(svg, true));
  } catch (e) { /* the next round tries again */ }
}
async function loadAlarmHistory() {
  try {
    const r = await fetch('/api/alarm-history', {cache: 'no-store', credentials: 'same-origin'});
    if (!r.ok) return;
    const rows = list((await r.json()).alarms);
    fillRows('alarm-history', rows, (a) => [
      [fmtTime(a.ts), 'time'], [a.alarm_id, 'name'], [label('tr_', a.kind), 'kind ' + String(a.kind)],
      [a.by || w('by_rules'), 'by'], [a.severity, 'severity']]);
  } catch (e) { /* the next round tries again */ }
}

let cameras = [];
async function loadSvg(url, target) {
  const r = await fetch(url, {cache: 'no-store', credentials: 'same-origin'});
  if (!r.ok) return false;
  // Drawn and escaped by the server; parsed as XML, never as HTML.
  const svg = new DOMParser().parseFromString(await r.text(), 'image/svg+xml').documentElement;
  if (svg.nodeName !== 'svg') return false;
  target.replaceChildren(document.importNode(svg, true));
  return true;
}
async function loadCameras() {
  try {
    const r = await fetch('/api/cameras', {cache: 'no-store', credentials: 'same-origin'});
    cameras = r.ok ? list((await r.json()).cameras) : [];
  } catch (e) { cameras = []; }
  $('camview').hidden = cameras.length === 0;
  const select = $('camview-camera');
  const names = cameras.map((c) => String(c.name));
  if (names.join('\n') !== Array.from(select.options).map((o) => o.value).join('\n')) {
    select.replaceChildren(...names.map((n) => { const o = el('option', n); o.value = n; return o; }));
    if (names.length) refreshCamera();
  }
}
async function refreshCamera() {
  const name = $('camview-camera').value;
  if (!name) return;
  const shown = await loadSvg('/camera.svg?camera=' + encodeURIComponent(name), $('camview-frame'));
  const cam = cameras.find((c) => c.name === name) || {};
  $('camview-note').textContent = shown ? w('frame_age', {age: fmtAge(cam.age_s)}) : w('no_frame');
}

function render(s) {
  const gw = s.gateway || {};
  $('title').textContent = (gw.name || gw.id || 'fieldgate') + (gw.id && gw.name ? ' (' + gw.id + ')' : '');
  document.title = 'fieldgate ' + (gw.id || '');
  $('meta').textContent = w('up', {age: fmtAge(gw.uptime_s)});
  const loops = list(s.loops);
  const overdue = loops.filter((l) => l.overdue).map((l) => String(l.name));
  const health = $('health');
  health.textContent = overdue.length ? w('overdue', {names: overdue.join(', ')}) : w('healthy');
  health.className = 'badge ' + (overdue.length ? 'bad' : 'ok');

  const points = fillRows('points', list(s.points), (p) => [
    [p.point, 'name'], [fmtValue(p.value), 'value'], [p.unit || '', 'unit'],
    [quality(p.q), 'q ' + (p.q === 'good' ? 'good' : 'bad')], [fmtAge(p.age_s), 'age']]);
  list(s.points).forEach((p, i) => { points.rows[i].dataset.point = String(p.point); });
  fillTrendPoints(list(s.points));
  if (rounds++ % 8 === 0) { loadTrend(); loadAlarmHistory(); }

  // Each cell's first class names its column (tests and user styles rely on it), the second its state.
  fillRows('devices', list(s.devices), (d) => [
    [d.bus, 'bus'], [d.device, 'name'], [d.unit_id, 'unit'],
    [w(d.online ? 'online' : 'offline'), 'state ' + (d.online ? 'online' : 'offline')],
    [d.polls ?? '—', 'polls'], [d.errors ?? '—', 'errors']]);
  fillRows('links', list(s.links), (l) => [
    [l.name, 'name'], [l.type || '', 'type'],
    [w(l.connected ? 'connected' : 'disconnected'), 'state ' + (l.connected ? 'connected' : 'disconnected')],
    [l.sent_messages ?? '—', 'sent'], [l.failed_sends ?? '—', 'failed'], [l.backlog ?? '—', 'backlog']]);

  const j = s.journal || {};
  const dl = $('journal');
  const items = [[w('j_backlog'), j.backlog], [w('j_oldest'), fmtAge(j.oldest_age_s)],
                 [w('j_committed'), j.committed], [w('j_drops'), j.drops]];
  dl.replaceChildren(...items.flatMap(([k, v]) => [el('dt', k), el('dd', v ?? '—')]));
  $('loops').replaceChildren(...(loops.length ? loops.map((l) => el('li', w(l.overdue ? 'loop_overdue' : 'loop_ok',
    {name: l.name}), l.overdue ? 'overdue' : 'good')) : [el('li', w('no_loops'), 'note')]));

  fillRows('alarms', list(s.alarms).slice(-50).reverse(), (a) => [
    [a.alarm_id, 'name'], [a.rule, 'rule'], [a.severity, 'severity'],
    [label('st_', a.state || (a.acknowledged ? 'acknowledged' : 'active')), 'state'],
    [fmtTime(a.since), 'since']]);
  const said = Array.isArray(s.evidence_text) ? s.evidence_text : [];
  $('evidence').replaceChildren(...list(s.evidence).map((e, i) => {
    const li = el('li');
    li.append(el('span', said[i] || '', 'said'), ' ', el('code', JSON.stringify(e), 'raw'));
    return li;
  }).slice(-50).reverse());
  renderCamera(s.snapshot);
  renderSession(s.session || {});
}

let shownSnapshot = null;
function renderCamera(snap) {
  const has = snap && typeof snap === 'object' && snap.path;
  $('camera').hidden = !has;
  $('camera-empty').hidden = !!has;
  if (!has) return;
  $('camera-caption').textContent = (snap.camera || '') + ' ' + fmtTime(snap.ts);
  const key = String(snap.path) + '@' + String(snap.ts);
  if (key === shownSnapshot) return;
  shownSnapshot = key;
  const img = $('snapshot');
  img.onload = () => drawBoxes(img, snap);
  img.src = '/snapshot.jpg?ts=' + encodeURIComponent(String(snap.ts));
}
function drawBoxes(img, snap) {
  const frame = $('frame');
  frame.querySelectorAll('.box').forEach((b) => b.remove());
  const size = Array.isArray(snap.frame) ? snap.frame : [img.naturalWidth, img.naturalHeight];
  const [w, h] = size.map(Number);
  if (!(w > 0 && h > 0)) return;
  for (const b of Array.isArray(snap.boxes) ? snap.boxes : []) {
    const xy = Array.isArray(b) ? b : (b && Array.isArray(b.box) ? b.box : null);
    if (!xy || xy.length < 4 || !xy.slice(0, 4).every((v) => typeof v === 'number')) continue;
    const div = el('div', null, 'box');
    div.style.left = (100 * xy[0] / w) + '%';
    div.style.top = (100 * xy[1] / h) + '%';
    div.style.width = (100 * (xy[2] - xy[0]) / w) + '%';
    div.style.height = (100 * (xy[3] - xy[1]) / h) + '%';
    const label = Array.isArray(b) ? b.slice(4).filter((v) => v !== null).join(' ')
      : [b.label ?? b.role ?? '', typeof b.score === 'number' ? b.score.toFixed(2) : ''].join(' ');
    if (label.trim()) div.appendChild(el('span', label.trim()));
    frame.appendChild(div);
  }
}
function renderSession(session) {
  const user = typeof session.user === 'string' ? session.user : null;
  $('login-form').hidden = !!user || session.login === false;
  $('logins-off').hidden = session.login !== false;
  $('session').hidden = !user;
  $('session-user').textContent = user ? w('logged_in_as', {user}) : '';
  $('camview-test').hidden = !user;
}

async function refresh() {
  try {
    const r = await fetch('/api/status', {cache: 'no-store', credentials: 'same-origin'});
    if (!r.ok) throw new Error('HTTP ' + r.status);
    render(await r.json());
    $('error').hidden = true;
    $('updated').textContent = w('updated', {time: new Date().toLocaleTimeString()});
  } catch (e) {
    $('error').hidden = false;
    $('error').textContent = w('not_answering', {reason: e.message});
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

async function post(url, body) {
  const r = await fetch(url, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  let data;
  try { data = await r.json(); } catch (e) { data = {error: 'HTTP ' + r.status}; }
  return [r.ok, data];
}
function showResult(ok, data) {
  const out = $('action-result');
  out.className = ok ? 'good' : 'bad';
  out.textContent = JSON.stringify(data, null, 2);
}

document.addEventListener('DOMContentLoaded', () => {
  try { W = JSON.parse(document.body.dataset.words || '{}'); } catch (e) { W = {}; }
  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const [ok, data] = await post('/login', {user: $('login-user').value, password: $('login-password').value});
    $('login-password').value = '';
    showResult(ok, ok ? {logged_in: data.user} : data);
    renderSession(ok ? {user: data.user} : {});
  });
  $('commission-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = $('commission-request').value.trim();
    let request;
    try { request = text ? JSON.parse(text) : undefined; } catch (e) { showResult(false, {error: e.message}); return; }
    $('commission-links').textContent = w('commission_running');
    const [ok, data] = await post('/api/action/commission', request ? {request} : {});
    showResult(ok, data);
    const links = $('commission-links');
    links.replaceChildren();
    if (ok) {
      for (const kind of ['html', 'pdf']) {
        const a = el('a', kind.toUpperCase());
        a.href = '/commission-report?name=' + encodeURIComponent(data.result[kind]);
        links.append(a, ' ');
      }
      links.append(el('span', data.result.passed ? w('passed') : w('not_passed'), data.result.passed ? 'good' : 'bad'));
    }
  });
  $('camview-camera').addEventListener('change', refreshCamera);
  $('camview-refresh').addEventListener('click', async () => { await loadCameras(); refreshCamera(); });
  $('camview-test').addEventListener('click', async () => {
    const [ok, data] = await post('/api/action/detect', {camera: $('camview-camera').value});
    showResult(ok, data);
    if (ok) {
      await refreshCamera();
      $('camview-note').textContent = w('tested', {count: data.result.counts, total: data.result.detections.length});
    }
  });
  loadCameras();
  const ready = loadTrendDefault();
  $('trend-point').addEventListener('change', (ev) => { trendPoint = ev.target.value; loadTrend(); });
  document.querySelectorAll('button.span').forEach((b) => b.addEventListener('click', () => {
    trendSpan = b.dataset.span; loadTrend();
  }));
  $('points').addEventListener('click', (ev) => {
    const row = ev.target.closest('tr');
    if (row && row.dataset.point) { trendPoint = row.dataset.point; $('trend-point').value = trendPoint; loadTrend(); }
  });
  $('logout').addEventListener('click', async () => { await post('/logout', {}); renderSession({}); });
  $('probe-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const args = {bus: $('probe-bus').value, unit_id: Number($('probe-unit').value), table: $('probe-table').value,
                  address: Number($('probe-address').value), count: Number($('probe-count').value)};
    showResult(...await post('/api/action/probe', args));
  });
  $('selftest').addEventListener('click', async () => {
    if (!confirm(w('confirm_selftest'))) return;
    showResult(...await post('/api/action/selftest', {}));
  });
  ready.finally(refresh);
});
"""
