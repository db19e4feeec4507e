// The onboarding part of the status page: "Add mailbox", a "Re-authorize" button per mailbox, and
// the onboarding links (create, list, revoke). Its script runs inside the status page's script, so it
// uses the admin token that script keeps in memory: every action is a fetch with
// `Authorization: Bearer`, which a page of another origin cannot send (no CSRF), and the token never
// goes into a URL or a cookie.
import type { AccountView, OnboardingSettings } from './backend.js';
import { escapeHtml } from './html.js';

/** The providers whose mailboxes the web flow can authorize ([] when it is off). */
export function reauthProviders(s: OnboardingSettings | undefined): readonly string[] {
  return s?.enabled ? s.providers : [];
}

/** The row's last cell when the web flow is on ('' when off). */
export function reauthCellHtml(a: AccountView, providers: readonly string[]): string {
  if (!providers.length) return '';
  return providers.includes(a.provider)
    ? `<td class="actions"><button type="button" class="reauth" data-email="${escapeHtml(a.email)}">Re-authorize</button></td>`
    : '<td class="actions"></td>';
}

export function renderOnboardingPanel(s: OnboardingSettings | undefined): string {
  if (!s) return '';
  if (!s.enabled)
    return `<h2>Add a mailbox</h2>\n<p id="onboarding-off" class="muted">${escapeHtml(s.reason)}</p>`;
  const options = s.providers
    .map((p) => `<option value="${escapeHtml(p)}">${escapeHtml(p)}</option>`)
    .join('');
  const noProvider = s.providers.length
    ? ''
    : `<p class="muted">No provider can be authorized in the browser yet: give one an <code>authorizeUrl</code> and an <code>oauthClient</code>.</p>`;
  return `<h2>Add a mailbox</h2>
${noProvider}<form id="add-mailbox"><label>Mailbox <input type="email" id="add-email" required size="30"></label>
<label>Provider <select id="add-provider">${options}</select></label>
<button type="submit" id="add">Add mailbox</button></form>
<p class="muted">You sign in at the provider as the mailbox and allow access; the browser comes back to
<code id="redirect-uri">${escapeHtml(s.redirectUri)}</code> (register it as a redirect URI of the OAuth client).</p>
<h2>Onboarding links</h2>
<form id="new-link"><label>Mailbox <input type="email" id="link-email" size="30" placeholder="any mailbox"></label>
<label>Provider <select id="link-provider">${options}</select></label>
<label>Expires in <input type="number" id="link-days" min="1" max="30" value="7" size="3"> days</label>
<button type="submit" id="create-link">Create link</button></form>
<p id="link-result" hidden>Give this link to the mailbox owner (it works once):
<input id="link-url" readonly size="70"> expires <span id="link-expires"></span></p>
<table id="links"><thead><tr><th>mailbox</th><th>provider</th><th>created</th><th>expires</th><th>status</th><th>used by</th><th></th></tr></thead><tbody></tbody></table>
<p id="onboarding-problem" class="error"></p>`;
}

/** Inside the status page's script: `token` and `text` are its own. */
export const ONBOARDING_PANEL_SCRIPT = `
  var ONBOARDING = JSON.parse(document.getElementById('onboarding').textContent);
  var REAUTH = ONBOARDING.enabled ? ONBOARDING.providers : [];
  function reauthCell(a){
    if (!REAUTH.length) return null;
    var td = document.createElement('td'); td.className = 'actions';
    if (REAUTH.indexOf(a.provider) >= 0) {
      var b = document.createElement('button'); b.type = 'button'; b.className = 'reauth';
      b.setAttribute('data-email', a.email); text(b, 'Re-authorize'); td.appendChild(b);
    }
    return td;
  }
  function adminFetch(method, path, body){
    var headers = token !== null ? { Authorization: 'Bearer ' + token } : {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(path, { method: method, headers: headers, cache: 'no-store', credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body) }).then(function(r){
      return r.text().then(function(t){
        var j = null; try { j = t ? JSON.parse(t) : null; } catch (e) {}
        if (!r.ok) throw new Error((j && j.error) || (method + ' ' + path + ': HTTP ' + r.status));
        return j;
      });
    });
  }
  function onboardingProblem(e){ var p = document.getElementById('onboarding-problem'); if (p) text(p, e ? String(e.message || e) : ''); }
  function startFlow(email, provider){
    onboardingProblem(null);
    adminFetch('POST', 'admin/onboarding/start', provider ? { email: email, provider: provider } : { email: email })
      .then(function(d){ location.assign(d.authorizeUrl); }).catch(onboardingProblem);
  }
  function loadLinks(){
    adminFetch('GET', 'admin/onboarding-links').then(function(d){
      var rows = document.createDocumentFragment();
      d.links.forEach(function(l){
        var tr = document.createElement('tr'); tr.setAttribute('data-id', l.id); tr.className = 'link-' + String(l.status).replace(/[^a-z]/g, '');
        [l.email || 'any', l.provider, l.createdAt, l.expiresAt, l.status, l.usedBy || ''].forEach(function(v){
          var td = document.createElement('td'); text(td, v); tr.appendChild(td); });
        var td = document.createElement('td');
        if (l.status === 'unused') { var b = document.createElement('button'); b.type = 'button'; b.className = 'revoke';
          b.setAttribute('data-id', l.id); text(b, 'Revoke'); td.appendChild(b); }
        tr.appendChild(td); rows.appendChild(tr);
      });
      document.querySelector('#links tbody').replaceChildren(rows);
    }).catch(onboardingProblem);
  }
  if (ONBOARDING.enabled) {
    document.getElementById('add-mailbox').addEventListener('submit', function(ev){
      ev.preventDefault();
      startFlow(document.getElementById('add-email').value.trim(), document.getElementById('add-provider').value);
    });
    document.getElementById('accounts').addEventListener('click', function(ev){
      var b = ev.target.closest && ev.target.closest('button.reauth'); if (b) startFlow(b.getAttribute('data-email'));
    });
    document.getElementById('new-link').addEventListener('submit', function(ev){
      ev.preventDefault(); onboardingProblem(null);
      var email = document.getElementById('link-email').value.trim();
      var body = { provider: document.getElementById('link-provider').value, expiresIn: document.getElementById('link-days').value + 'd' };
      if (email) body.email = email;
      adminFetch('POST', 'admin/onboarding-links', body).then(function(d){
        var u = document.getElementById('link-url'); u.value = d.url;
        text(document.getElementById('link-expires'), d.expiresAt);
        document.getElementById('link-result').hidden = false; u.select(); loadLinks();
      }).catch(onboardingProblem);
    });
    document.getElementById('links').addEventListener('click', function(ev){
      var b = ev.target.closest && ev.target.closest('button.revoke'); if (!b) return;
      adminFetch('DELETE', 'admin/onboarding-links/' + encodeURIComponent(b.getAttribute('data-id'))).then(loadLinks).catch(onboardingProblem);
    });
    loadLinks();
  }
`;
