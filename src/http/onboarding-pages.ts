// The pages of the web onboarding flow a mailbox owner (or an administrator) sees: the link's page
// with the button to the provider, the result with the SMTP settings and the one-time password, and
// the error pages. Server-rendered, every value escaped; no script.
import type { FlowFinished, OnboardingFailure, OnboardingLinkInfo, SmtpSettingsView } from './backend.js';
import { escapeHtml } from './html.js';

const STYLE = `
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:40rem;padding:0 1rem;color:#222;background:#fafafa}
h1{font-size:1.35rem;margin:0 0 1rem} table{border-collapse:collapse;background:#fff;margin:.5rem 0 1rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:left} th{background:#f0f0f0;font-weight:600}
code,.secret{font-family:ui-monospace,monospace} .secret{font-size:1.1rem;background:#fff7d6;padding:.2rem .4rem;border:1px solid #e5c100}
.muted{color:#666} .error{color:#b00020} input,button{font:inherit;padding:.3rem .5rem} button{cursor:pointer}
`;

function layout(title: string, nonce: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">
<title>${escapeHtml(title)}</title><style nonce="${escapeHtml(nonce)}">${STYLE}</style></head>
<body><h1 id="title">${escapeHtml(title)}</h1>
${body}
</body></html>
`;
}

/**
 * The page a link opens. Opening it changes nothing (mail scanners fetch links): the flow starts
 * only with the button, a form POST that carries the link in its body.
 */
export function renderLinkPage(info: OnboardingLinkInfo, link: string, nonce: string): string {
  const mailbox = info.email
    ? `<p>Mailbox: <b id="mailbox">${escapeHtml(info.email)}</b></p>`
    : `<p><label for="email">Your mailbox address</label><br>
<input type="email" id="email" name="email" required autocomplete="email" size="40"></p>`;
  return layout(
    'Connect your mailbox to the SMTP relay',
    nonce,
    `<p>An administrator invited you to let the relay send mail as your mailbox. You will sign in at
<b id="provider">${escapeHtml(info.provider)}</b> and allow access; the relay then shows you the
settings for your mail program.</p>
<form method="post" action="onboard/start">
<input type="hidden" name="link" value="${escapeHtml(link)}">
${mailbox}
<p><button type="submit" id="continue">Continue to ${escapeHtml(info.provider)}</button></p>
</form>
<p class="muted">This link can be used once and expires ${escapeHtml(info.expiresAt)}.</p>`,
  );
}

const SECURITY_TEXT: Readonly<Record<SmtpSettingsView['security'], string>> = {
  none: 'none (plain SMTP)',
  starttls: 'STARTTLS',
  tls: 'SSL/TLS (implicit)',
};

/** After consent: the SMTP settings and, for a new account, its password, shown this once. */
export function renderFinishedPage(f: FlowFinished, nonce: string): string {
  const servers = f.smtp
    .map(
      (s) =>
        `<tr class="server"><td class="host">${escapeHtml(s.host)}</td><td class="port">${escapeHtml(s.port)}</td>` +
        `<td class="security">${escapeHtml(SECURITY_TEXT[s.security] ?? s.security)}</td></tr>`,
    )
    .join('\n');
  const password =
    f.password !== undefined
      ? `<p>Password: <span class="secret" id="password">${escapeHtml(f.password)}</span></p>
<p><b>Copy it now: it is shown only this once.</b> The relay keeps only a hash of it; reloading this
page will not show it again. Ask your administrator for a new one if it is lost.</p>`
      : `<p id="password-unchanged">The password of this mailbox at the relay is unchanged.</p>`;
  return layout(
    f.added ? 'Mailbox connected' : 'Mailbox re-authorized',
    nonce,
    `<p><b id="email">${escapeHtml(f.email)}</b> (${escapeHtml(f.provider)}) can now send through the relay.</p>
<h2>Settings for your mail program</h2>
<table id="smtp"><thead><tr><th>server</th><th>port</th><th>security</th></tr></thead>
<tbody>${servers}</tbody></table>
<p>Authentication: PLAIN or LOGIN. User name: <code id="username">${escapeHtml(f.email)}</code></p>
${password}${f.warning ? `\n<p class="error" id="warning">${escapeHtml(f.warning)}</p>` : ''}`,
  );
}

/** A refusal: what happened and what to do, in one text; nothing changed. */
export function renderOnboardingError(f: OnboardingFailure, nonce: string): string {
  return layout(
    f.title,
    nonce,
    `<p class="error" id="problem" data-problem="${escapeHtml(f.problem)}">${escapeHtml(f.message)}</p>`,
  );
}
