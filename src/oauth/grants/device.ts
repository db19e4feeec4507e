// The device authorization grant (RFC 8628): ask for a user code, show it, then poll the token
// endpoint at the server's pace until the user approves, declines, or the code expires.
import { setTimeout as delay } from 'node:timers/promises';
import { TokenGrantError, oauthErrorDetails, type TokenClient } from '../token-client.js';
import { GrantError, localGrantError, oauthGrantError, toGrantError, type GrantContext } from './errors.js';
import { providerFlavor, withOfflineAccess, type ProviderFlavor } from './providers.js';
import { authorizedTokensOf, tokenRequest, type AuthorizedTokens } from './request.js';

export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

export interface DeviceAuthorizationRequest {
  /** `{tenant}` already substituted */
  deviceAuthorizationUrl: string;
  clientId: string;
  /** confidential clients authenticate here too (RFC 8628 section 3.1) */
  clientSecret?: string;
  scope: string;
  /** default: by the URL's host */
  flavor?: ProviderFlavor;
  mailbox?: string;
  /** ms clock for expiresAt (tests) */
  now?: () => number;
}

export interface DeviceAuthorization {
  deviceCode: string;
  /** show to the user */
  userCode: string;
  /** show to the user */
  verificationUri: string;
  /** the URI with the code in it, when the server gives one (for a QR code or a click) */
  verificationUriComplete?: string;
  expiresInSec: number;
  /** ms on the `now` clock after which the code is dead */
  expiresAt: number;
  /** seconds between polls (RFC 8628 section 3.2: 5 when the server says nothing) */
  intervalSec: number;
}

/** RFC 8628 sections 3.1 and 3.2 (Microsoft: offline_access added to the scope when missing). */
export async function requestDeviceAuthorization(
  client: TokenClient,
  req: DeviceAuthorizationRequest,
): Promise<DeviceAuthorization> {
  const ctx = deviceContext(req.deviceAuthorizationUrl, req);
  const form = new URLSearchParams({ client_id: req.clientId });
  const scope = withOfflineAccess(ctx.flavor, req.scope);
  if (scope) form.set('scope', scope);
  if (req.clientSecret) form.set('client_secret', req.clientSecret);
  let answer: { status: number; json?: Record<string, unknown> };
  try {
    answer = await client.postForm(req.deviceAuthorizationUrl, form);
  } catch (err) {
    throw toGrantError(err, ctx);
  }
  const { status, json } = answer;
  if (status < 200 || status >= 300) {
    const oauth = oauthErrorDetails(json);
    if (oauth) throw oauthGrantError(oauth, ctx, status);
    throw toGrantError(new TokenGrantError('transient', `HTTP ${status}`, status), ctx);
  }
  const now = (req.now ?? Date.now)();
  const bad = (field: string) =>
    toGrantError(
      new TokenGrantError('transient', `device authorization response: ${field} missing or invalid`, status),
      ctx,
    );
  const deviceCode = json?.device_code;
  if (typeof deviceCode !== 'string' || deviceCode === '') throw bad('device_code');
  const userCode = json?.user_code;
  // shown in a terminal: printable ASCII only, so a server cannot send escape sequences
  if (typeof userCode !== 'string' || !/^[\x21-\x7e][\x20-\x7e]{0,63}$/.test(userCode))
    throw bad('user_code');
  // Google's endpoint still says verification_url
  const verificationUri = displayUrl(json?.verification_uri ?? json?.verification_url);
  if (!verificationUri) throw bad('verification_uri');
  const complete = displayUrl(json?.verification_uri_complete);
  const expiresInSec = positiveNumber(json?.expires_in);
  if (expiresInSec === undefined) throw bad('expires_in');
  const interval = json?.interval === undefined ? 5 : positiveNumber(json.interval);
  if (interval === undefined) throw bad('interval');
  return {
    deviceCode,
    userCode,
    verificationUri,
    ...(complete ? { verificationUriComplete: complete } : {}),
    expiresInSec,
    expiresAt: now + expiresInSec * 1000,
    intervalSec: interval,
  };
}

function positiveNumber(v: unknown): number | undefined {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : undefined;
}

function displayUrl(v: unknown): string | undefined {
  if (typeof v !== 'string' || !/^[\x21-\x7e]{1,2048}$/.test(v)) return undefined;
  try {
    const u = new URL(v);
    return u.protocol === 'https:' || u.protocol === 'http:' ? v : undefined;
  } catch {
    return undefined;
  }
}

export interface DevicePollRequest {
  tokenUrl: string;
  clientId: string;
  clientSecret?: string;
  authorization: DeviceAuthorization;
  /** stops polling; the promise rejects with failure "aborted" */
  signal?: AbortSignal;
  /** injectable for tests: waits ms (rejects when the signal aborts) */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** injectable for tests: the ms clock DeviceAuthorization.expiresAt is on */
  now?: () => number;
  /** called after each poll that is still pending (e.g. to show progress) */
  onPending?: (info: { intervalSec: number; slowDown: boolean }) => void;
  flavor?: ProviderFlavor;
  mailbox?: string;
  scope?: string;
}

/** Polls no faster than this after network trouble; RFC 8628 section 3.5 wants a back-off. */
const MAX_BACKOFF_SEC = 60;

/**
 * RFC 8628 section 3.4 and 3.5: waits `interval` before each poll; `authorization_pending` goes on,
 * `slow_down` adds 5 seconds to this and every later interval, `access_denied` and `expired_token`
 * end it, a network failure or 5xx doubles the interval; the device code's `expires_in` is the deadline.
 */
export async function pollDeviceToken(
  client: TokenClient,
  req: DevicePollRequest,
): Promise<AuthorizedTokens> {
  const ctx = deviceContext(req.tokenUrl, req);
  const now = req.now ?? Date.now;
  const sleep = req.sleep ?? ((ms: number, signal?: AbortSignal) => delay(ms, undefined, { signal }));
  const auth = req.authorization;
  const form = new URLSearchParams({
    grant_type: DEVICE_CODE_GRANT_TYPE,
    device_code: auth.deviceCode,
    client_id: req.clientId,
  });
  if (req.clientSecret) form.set('client_secret', req.clientSecret);
  const aborted = () => localGrantError('aborted', 'stopped polling for the device authorization', ctx);

  let intervalSec = auth.intervalSec;
  let lastTrouble: GrantError | undefined;
  for (;;) {
    if (req.signal?.aborted) throw aborted();
    try {
      await sleep(intervalSec * 1000, req.signal);
    } catch {
      throw aborted();
    }
    if (req.signal?.aborted) throw aborted();
    if (now() >= auth.expiresAt) {
      throw localGrantError(
        'device_expired',
        `the device code expired after ${auth.expiresInSec}s${lastTrouble ? ` (last poll: ${lastTrouble.reason})` : ''}`,
        ctx,
      );
    }
    let res;
    try {
      res = await tokenRequest(client, req.tokenUrl, form, ctx);
    } catch (err) {
      const ge = err as GrantError;
      const error = ge.oauthError;
      if (error === 'authorization_pending' || error === 'slow_down') {
        if (error === 'slow_down') intervalSec += 5;
        lastTrouble = undefined;
        req.onPending?.({ intervalSec, slowDown: error === 'slow_down' });
        continue;
      }
      const serverTrouble = ge.status !== undefined && (ge.status >= 500 || ge.status === 429);
      if (ge.kind === 'transient' && (ge.failure === 'endpoint_failed' || serverTrouble)) {
        intervalSec = Math.min(intervalSec * 2, Math.max(MAX_BACKOFF_SEC, auth.intervalSec));
        lastTrouble = ge;
        continue;
      }
      throw ge;
    }
    if (req.signal?.aborted) throw aborted();
    return authorizedTokensOf(res, ctx);
  }
}

function deviceContext(
  endpoint: string,
  p: { clientId: string; flavor?: ProviderFlavor; mailbox?: string; scope?: string },
): GrantContext {
  return {
    grant: 'device_code',
    flavor: p.flavor ?? providerFlavor(endpoint),
    clientId: p.clientId,
    endpoint,
    ...(p.mailbox !== undefined ? { mailbox: p.mailbox } : {}),
    ...(p.scope !== undefined ? { scope: p.scope } : {}),
  };
}
