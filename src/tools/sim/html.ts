// The simulator's few HTML pages (consent, device code entry): plain forms that a person, fetch
// or a headless browser can drive, with ids on the controls and on the outcome.
export interface PageReply {
  status: number;
  /** a page to show */
  html?: string;
  /** or a redirect (302) */
  location?: string;
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function page(status: number, title: string, body: string): PageReply {
  const html =
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">' +
    `<title>${escapeHtml(title)}</title>` +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    '<style>body{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}' +
    'input{display:block;width:100%;margin:.3rem 0 1rem;padding:.4rem}button{margin-right:.5rem;padding:.4rem 1rem}' +
    '.error{color:#a00}</style></head>\n' +
    `<body><h1>${escapeHtml(title)}</h1>\n${body}\n</body></html>\n`;
  return { status, html };
}

/** An error the user sees (never redirected: RFC 6749 section 4.1.2.1). */
export function errorPage(status: number, error: string, description: string): PageReply {
  return page(
    status,
    'Sign-in error',
    `<p id="error" class="error" data-error="${escapeHtml(error)}">${escapeHtml(error)}: ${escapeHtml(description)}</p>`,
  );
}

/** `uri` with these query parameters added, keeping the query it already has (RFC 6749 section 3.1.2). */
export function withQuery(uri: string, params: Record<string, string | undefined>): string {
  const url = new URL(uri);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) url.searchParams.append(k, v);
  return url.toString();
}
