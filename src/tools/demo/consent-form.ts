// The mailbox owner's part of an authorization, done the way a browser does it: load the consent
// page, fill in the form it shows (its hidden fields kept, the login filled in), press Allow, and
// go where the provider redirects. Only what the page itself says is used: the form's action and
// method, its inputs and the Allow button's name and value.

export interface ConsentForm {
  /** absolute: the action resolved against the page's URL */
  action: string;
  method: string;
  /** the form's inputs as the page fills them (hidden fields included) */
  fields: URLSearchParams;
  /** the name and value the Allow button submits */
  allow: { name: string; value: string };
}

const ATTR = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)\s*=\s*"([^"]*)"/g;

function attributes(tag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of tag.matchAll(ATTR)) out[m[1]!.toLowerCase()] = decodeEntities(m[2]!);
  return out;
}

function decodeEntities(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The first form of `html` that has a button with id `allow`; throws saying what is missing. */
export function parseConsentForm(html: string, pageUrl: string): ConsentForm {
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const form = attributes(m[1]!);
    const body = m[2]!;
    const buttons = [...body.matchAll(/<button\b([^>]*)>/gi)].map((b) => attributes(b[1]!));
    const allow = buttons.find((b) => b.id === 'allow');
    if (!allow) continue;
    const fields = new URLSearchParams();
    for (const i of body.matchAll(/<input\b([^>]*)>/gi)) {
      const a = attributes(i[1]!);
      if (a.name) fields.append(a.name, a.value ?? '');
    }
    return {
      action: new URL(form.action ?? '', pageUrl).toString(),
      method: (form.method ?? 'get').toUpperCase(),
      fields,
      allow: { name: allow.name ?? '', value: allow.value ?? '' },
    };
  }
  throw new Error(`no consent form with an Allow button (#allow) at ${pageUrl}`);
}

/**
 * Opens `authorizationUrl`, submits its consent form as `login` with Allow, and returns where the
 * provider redirects (the redirect URI with the code and state). Throws on an error page or an
 * answer that is not a redirect.
 */
export async function allowConsent(authorizationUrl: string, login: string): Promise<string> {
  const page = await fetch(authorizationUrl, { redirect: 'manual' });
  const html = await page.text();
  if (page.status !== 200)
    throw new Error(`the authorization page answered ${page.status}: ${html.slice(0, 200)}`);
  const form = parseConsentForm(html, authorizationUrl);
  if (form.fields.has('login') && !form.fields.get('login')) form.fields.set('login', login);
  if (form.allow.name) form.fields.append(form.allow.name, form.allow.value);
  const res =
    form.method === 'POST'
      ? await fetch(form.action, {
          method: 'POST',
          redirect: 'manual',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: form.fields.toString(),
        })
      : await fetch(`${form.action}?${form.fields}`, { redirect: 'manual' });
  const location = res.headers.get('location');
  if (res.status < 300 || res.status > 399 || !location)
    throw new Error(
      `the consent form answered ${res.status}, not a redirect: ${(await res.text()).slice(0, 200)}`,
    );
  return new URL(location, form.action).toString();
}
