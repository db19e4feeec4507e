// Response and request helpers shared by the HTTP routes: one error type that becomes one response,
// bounded body reading, and the headers every answer carries (no caching, no sniffing; pages with a
// per-response CSP nonce, no framing, no referrer).
import type { IncomingMessage, ServerResponse } from 'node:http';

export const MAX_BODY_BYTES = 64 * 1024;

/** An error that becomes one HTTP response. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export function methodNotAllowed(allow: string): HttpError {
  return new HttpError(405, `method not allowed (allowed: ${allow})`, { headers: { Allow: allow } });
}

/** The request body, at most MAX_BODY_BYTES (413 past it, without reading the rest). */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        cleanup();
        req.pause();
        reject(tooLarge());
      } else chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function tooLarge(): HttpError {
  return new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`, {
    headers: { Connection: 'close' },
  });
}

export async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req);
  const text = body.toString('utf8');
  if (!text.trim())
    throw new HttpError(400, 'expected a JSON body', { issues: [{ path: '', message: 'empty body' }] });
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `invalid JSON: ${(err as Error).message}`, {
      issues: [{ path: '', message: 'invalid JSON' }],
    });
  }
}

export function send(
  res: ServerResponse,
  status: number,
  body: string,
  type = 'text/plain; charset=utf-8',
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': type,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...(status === 204 ? {} : { 'Content-Length': Buffer.byteLength(body) }),
    ...headers,
  });
  res.end(status === 204 ? undefined : body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers?: unknown): void {
  const { headers: _h, ...rest } = (value ?? {}) as Record<string, unknown>;
  send(
    res,
    status,
    JSON.stringify(rest) + '\n',
    'application/json; charset=utf-8',
    (headers ?? {}) as Record<string, string>,
  );
}

/** `formTargets`: origins a form on the page may also be sent (or redirected) to, beside 'self' */
export function sendHtml(
  res: ServerResponse,
  status: number,
  html: string,
  nonce: string,
  headers: Record<string, string> = {},
  formTargets: readonly string[] = [],
): void {
  const formAction = ["'self'", ...formTargets.filter((o) => /^https?:\/\/[^\s;,']+$/.test(o))].join(' ');
  send(res, status, html, 'text/html; charset=utf-8', {
    // Inline script only with this response's nonce; fetches only to this origin; the token in a
    // `?token=` URL is never sent on as a Referer.
    'Content-Security-Policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; form-action ${formAction}; base-uri 'none'; frame-ancestors 'none'`,
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    ...headers,
  });
}
