// The status page at `/`: server-rendered HTML (every value escaped) plus one small inline script
// that refreshes the mailbox table and the 5-minute chart from `GET /admin/live` every 2 s.
//
// Authentication: `Authorization: Bearer <adminToken>` or `/?token=<adminToken>`. A browser cannot
// send a header on a plain navigation, so the query parameter is what people use; the script keeps
// the token in memory for its fetches and removes it from the address bar at once. The trade-off:
// the token is in the URL of that one request, so it can end up in browser history (before the
// script runs), in a reverse proxy's access log, or in a screenshot. The page sends
// `Referrer-Policy: no-referrer` and `Cache-Control: no-store`; put the page behind loopback or a
// VPN, or let a reverse proxy add the header, when that matters.

import type { AccountState, AccountView, OnboardingSettings } from './backend.js';
import type { LiveSnapshot } from '../metrics/live.js';
import { escapeHtml, scriptJson } from './html.js';
import {
  ONBOARDING_PANEL_SCRIPT,
  reauthCellHtml,
  reauthProviders,
  renderOnboardingPanel,
} from './onboarding-panel.js';

export { escapeHtml };

export const STATE_LABELS: Readonly<Record<AccountState, string>> = {
  unknown: 'unknown',
  ok: 'ok',
  refreshing: 'refreshing',
  needs_authorization: 'needs authorization',
  needs_reauth: 'needs re-authorization',
  error: 'error',
};

const stateLabel = (s: AccountState) => STATE_LABELS[s] ?? s;

function poolText(a: AccountView): [string, string, string] {
  if (!a.pool) return ['-', '-', '-'];
  return [String(a.pool.idle), String(a.pool.busy + a.pool.connecting), String(a.pool.waiting)];
}

function row(a: AccountView, reauth: readonly string[]): string {
  const [idle, busy, waiting] = poolText(a);
  const cells = [
    a.email,
    a.provider,
    a.auth ?? '-',
    stateLabel(a.state),
    a.tokenExpiresAt ?? '-',
    idle,
    busy,
    waiting,
    a.lastError ?? '',
  ];
  return (
    `<tr data-email="${escapeHtml(a.email)}" class="state-${escapeHtml(a.state)}">` +
    cells.map((c) => `<td>${escapeHtml(c)}</td>`).join('') +
    reauthCellHtml(a, reauth) +
    '</tr>'
  );
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222;background:#fafafa}
h1{font-size:1.3rem;margin:0 0 .5rem} h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.num{text-align:right}
tr.state-needs_reauth td:nth-child(4),tr.state-needs_authorization td:nth-child(4){color:#b00020;font-weight:600}
tr.state-error td:nth-child(4){color:#a15c00;font-weight:600}
tr.state-ok td:nth-child(4){color:#17702d}
#chart{background:#fff;border:1px solid #ddd} .muted{color:#777} #problem{color:#b00020}
.legend span{margin-right:1rem} .tp{color:#1f6feb} .lat{color:#d1495b}
ul#errors{font-family:ui-monospace,monospace;font-size:12px}
`;

/** Runs in the browser. Builds DOM with textContent only: never inserts HTML from the data. */
const SCRIPT = `
(function(){
  'use strict';
  var params = new URLSearchParams(location.search);
  var token = params.get('token');
  if (token !== null) { params.delete('token'); var q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : '')); }
  var LABELS = JSON.parse(document.getElementById('labels').textContent);
  var W = 600, H = 160, PAD = 4;
  function text(el, v){ el.textContent = v == null ? '' : String(v); }
  function poolCells(a){ return a.pool ? [a.pool.idle, a.pool.busy + a.pool.connecting, a.pool.waiting] : ['-','-','-']; }
  function renderAccounts(list){
    var tbody = document.querySelector('#accounts tbody');
    var rows = document.createDocumentFragment();
    list.forEach(function(a){
      var tr = document.createElement('tr');
      tr.setAttribute('data-email', a.email);
      tr.className = 'state-' + String(a.state).replace(/[^a-z_]/gi, '');
      var p = poolCells(a);
      [a.email, a.provider, a.auth || '-', LABELS[a.state] || a.state, a.tokenExpiresAt || '-', p[0], p[1], p[2], a.lastError || '']
        .forEach(function(v){ var td = document.createElement('td'); text(td, v); tr.appendChild(td); });
      var actions = reauthCell(a); if (actions) tr.appendChild(actions);
      rows.appendChild(tr);
    });
    tbody.replaceChildren(rows);
    text(document.getElementById('count'), list.length);
  }
  function points(series, key, max){
    var n = series.length; if (!n) return '';
    return series.map(function(p, i){
      var v = p[key] == null ? 0 : p[key];
      var x = PAD + (W - 2 * PAD) * (n === 1 ? 1 : i / (n - 1));
      var y = H - PAD - (H - 2 * PAD) * (max > 0 ? Math.min(v, max) / max : 0);
      return x.toFixed(1) + ',' + y.toFixed(1);
    }).join(' ');
  }
  function renderLive(live){
    var series = live.series.map(function(p){ return { t: p.t, rate: p.delivered + p.rejected + p.deferred, p99: p.p99Ms }; });
    var maxRate = 1, maxLat = 1;
    series.forEach(function(p){ if (p.rate > maxRate) maxRate = p.rate; if (p.p99 != null && p.p99 > maxLat) maxLat = p.p99; });
    document.getElementById('throughput').setAttribute('points', points(series, 'rate', maxRate));
    document.getElementById('latency').setAttribute('points', points(series, 'p99', maxLat));
    text(document.getElementById('max-rate'), maxRate + ' msg/s');
    text(document.getElementById('max-lat'), Math.round(maxLat) + ' ms');
    var m = live.lastMinute;
    text(document.getElementById('summary'), 'last minute: ' + m.throughputPerSec.toFixed(2) + ' msg/s, ' +
      m.delivered + ' delivered, ' + m.deferred + ' deferred, ' + m.rejected + ' rejected, p50 ' +
      (m.p50Ms == null ? '-' : m.p50Ms + ' ms') + ', p99 ' + (m.p99Ms == null ? '-' : m.p99Ms + ' ms'));
    var ul = document.getElementById('errors');
    var items = document.createDocumentFragment();
    live.recentErrors.forEach(function(e){ var li = document.createElement('li'); text(li, e.at + '  ' + e.email + '  ' + e.reply); items.appendChild(li); });
    ul.replaceChildren(items);
    text(document.getElementById('updated'), new Date(live.now).toLocaleTimeString());
  }
  function tick(){
    var headers = token !== null ? { Authorization: 'Bearer ' + token } : {};
    fetch('admin/live', { headers: headers, cache: 'no-store', credentials: 'same-origin' }).then(function(r){
      if (!r.ok) throw new Error('GET /admin/live: HTTP ' + r.status);
      return r.json();
    }).then(function(d){
      text(document.getElementById('problem'), !d.ready ? 'not ready (starting or draining)' : d.degraded ? 'degraded: ' + d.degraded : '');
      renderAccounts(d.accounts); renderLive(d.live);
    }).catch(function(e){ text(document.getElementById('problem'), String(e.message || e)); })
      .finally(function(){ setTimeout(tick, 2000); });
  }
${ONBOARDING_PANEL_SCRIPT}
  renderLive(JSON.parse(document.getElementById('initial').textContent));
  setTimeout(tick, 2000);
})();
`;

export function renderStatusPage(opts: {
  accounts: AccountView[];
  live: LiveSnapshot;
  nonce: string;
  ready: boolean;
  /** why the instances cannot share state right now (shown as "degraded: ...") */
  degraded?: string | undefined;
  /** absent: the backend offers no web onboarding */
  onboarding?: OnboardingSettings;
}): string {
  const n = escapeHtml(opts.nonce);
  const reauth = reauthProviders(opts.onboarding);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>xoauth2-proxy status</title><style nonce="${n}">${STYLE}</style></head>
<body>
<h1>xoauth2-proxy</h1>
<p><span id="summary" class="muted"></span> <span class="muted">updated <span id="updated"></span></span>
<span id="problem">${!opts.ready ? 'not ready (starting or draining)' : opts.degraded ? `degraded: ${escapeHtml(opts.degraded)}` : ''}</span></p>
<h2>Throughput and p99 latency, last 5 minutes</h2>
<p class="legend"><span class="tp">&#9632; messages/s (max <span id="max-rate"></span>)</span>
<span class="lat">&#9632; p99 latency (max <span id="max-lat"></span>)</span></p>
<svg id="chart" width="600" height="160" viewBox="0 0 600 160" role="img" aria-label="throughput and p99 latency">
<polyline id="throughput" fill="none" stroke="#1f6feb" stroke-width="1.5" points=""></polyline>
<polyline id="latency" fill="none" stroke="#d1495b" stroke-width="1" points=""></polyline>
</svg>
<h2>Mailboxes (<span id="count">${opts.accounts.length}</span>)</h2>
<table id="accounts"><thead><tr><th>email</th><th>provider</th><th>authenticates</th><th>state</th><th>token expires</th>
<th>idle</th><th>busy</th><th>waiting</th><th>last error</th>${reauth.length ? '<th></th>' : ''}</tr></thead>
<tbody>${opts.accounts.map((a) => row(a, reauth)).join('\n')}</tbody></table>
${renderOnboardingPanel(opts.onboarding)}
<h2>Recent errors</h2>
<ul id="errors">${opts.live.recentErrors
    .map((e) => `<li>${escapeHtml(`${e.at}  ${e.email}  ${e.reply}`)}</li>`)
    .join('')}</ul>
<script type="application/json" id="labels">${scriptJson(STATE_LABELS)}</script>
<script type="application/json" id="initial">${scriptJson(opts.live)}</script>
<script type="application/json" id="onboarding">${scriptJson({ enabled: Boolean(opts.onboarding?.enabled), providers: reauth })}</script>
<script nonce="${n}">${SCRIPT}</script>
</body></html>
`;
}

/** 401 page: a form that loads `/?token=...`. */
export function renderTokenForm(wrongToken: boolean): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>xoauth2-proxy status</title></head>
<body><h1>xoauth2-proxy status</h1>
<p>${wrongToken ? 'Wrong admin token.' : 'The status page needs the admin token (http.adminToken).'}</p>
<form method="get" action="/"><label>Admin token <input type="password" name="token" autocomplete="off"></label>
<button type="submit">Open</button></form></body></html>
`;
}

export function renderAdminDisabledPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xoauth2-proxy</title></head>
<body><h1>xoauth2-proxy</h1>
<p>The status page needs <code>http.adminToken</code> in the configuration (it is disabled, like /admin/*, while no token is set).</p>
<p>Metrics: <a href="/metrics">/metrics</a>, health: <a href="/healthz">/healthz</a>, readiness: <a href="/readyz">/readyz</a>.</p>
</body></html>
`;
}
