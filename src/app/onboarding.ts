// The web onboarding flow behind the HTTP routes (http/onboarding-routes.ts; docs/web-onboarding.md):
// signed links, the authorization-code flow with PKCE through http.publicUrl, and the end shared
// with `accounts authorize` (app/authorize.ts: verify, store sealed, add the account, adopt at once).
//
// Who may start a flow: an administrator (the routes checked the admin token) or the holder of an
// unexpired, unused, unrevoked link. Who may finish one: the browser that started it (a cookie bound
// to the flow) coming back with the flow's state. Nothing else reaches the provider or the store.
//
// Single use: a link is claimed (atomically, in the state store) when its flow comes back with an
// authorization code, before the code is exchanged; if the exchange or the verification fails, the
// claim is given back. So an owner who cancels at the consent page, or whose attempt fails, can
// open the link again until it expires, and a link never authorizes twice.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseDuration } from '../config/duration.js';
import { authMode, providerUrl } from '../config/providers.js';
import type { Config } from '../config/types.js';
import type { AccountsFileEditor } from '../account-admin/file-editor.js';
import type {
  CreatedOnboardingLink,
  FlowFinished,
  FlowStart,
  FlowStarted,
  OnboardingBackend,
  OnboardingFailure,
  OnboardingLinkInfo,
  OnboardingLinkView,
  OnboardingSettings,
  SmtpSettingsView,
} from '../http/backend.js';
import { normalizeEmail } from '../shared/email.js';
import type { Issue } from '../shared/issue.js';
import type { Logger } from '../shared/log.js';
import type { StateStore } from '../state/store.js';
import type { OnboardingLinkRecord } from '../state/onboarding-links.js';
import type { TokenClient } from '../oauth/token-client.js';
import { GrantError } from '../oauth/grants/errors.js';
import {
  authorizationCodeContext,
  codeFromAuthorizationResponse,
} from '../oauth/grants/authorization-code.js';
import {
  AuthorizationError,
  beginAuthorization,
  clientSmtpSettings,
  completeAuthorization,
  finishAuthorization,
  planAuthorization,
  planContext,
  type AuthorizationPlan,
  type AuthorizationResult,
  type PendingAuthorization,
} from './authorize.js';
import { FLOW_TTL_MS, FlowTable, type PendingFlow } from './onboarding-flows.js';
import { newLinkId, signLink, verifyLink, type LinkClaims } from './onboarding-link.js';

export const DEFAULT_LINK_LIFETIME_MS = 7 * 86_400_000;
export const MAX_LINK_LIFETIME_MS = 30 * 86_400_000;
const MIN_LINK_LIFETIME_MS = 1000;
/** used and expired links are listed this long after their expiry, then pruned */
const LINK_RETENTION_MS = 30 * 86_400_000;
const CALLBACK_PATH = '/oauth/callback';
const LINK_FIELDS = new Set(['email', 'provider', 'expiresIn']);

export interface OnboardingDeps {
  /** the snapshot in use (it changes on reload) */
  config: () => Config;
  store: StateStore;
  tokenClient: TokenClient;
  /** the accounts file editor whose `apply` reloads the running proxy; undefined: accounts are inline */
  editor: () => AccountsFileEditor | undefined;
  /** the running proxy adopts the stored authorizations (Proxy.adoptAuthorizations) */
  adopt: () => void;
  log: Logger;
  now?: () => number;
  flows?: FlowTable;
}

const failure = (
  status: number,
  problem: string,
  title: string,
  message: string,
  issues?: Issue[],
): OnboardingFailure => ({ ok: false, status, problem, title, message, ...(issues ? { issues } : {}) });

const iso = (ms: number) => new Date(ms).toISOString();
const EMAIL = /^[^@\s]+@[^@\s]+$/;
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** A client password for a new account: 144 random bits, shown once, stored as a scrypt hash. */
function newClientPassword(): string {
  return randomBytes(18).toString('base64url');
}

/** The refusals a link can get, each a page of its own. */
function linkFailure(
  problem: 'invalid' | 'expired' | 'used' | 'revoked',
  claims?: LinkClaims,
  rec?: OnboardingLinkRecord,
): OnboardingFailure {
  const ask = 'Ask your administrator for a new link.';
  switch (problem) {
    case 'invalid':
      return failure(
        400,
        'link_invalid',
        'This link is not valid',
        `This onboarding link is incomplete or was altered. Open it exactly as you received it (all of it, from one line); if it still fails, ${ask.toLowerCase()}`,
      );
    case 'expired':
      return failure(
        410,
        'link_expired',
        'This link has expired',
        `This onboarding link expired on ${iso(claims!.expiresAt)}. ${ask}`,
      );
    case 'used':
      return failure(
        410,
        'link_used',
        'This link was already used',
        `This onboarding link was already used${rec?.usedAt !== undefined ? ` on ${iso(rec.usedAt)}` : ''}. Each link works once. ${ask}`,
      );
    case 'revoked':
      return failure(
        410,
        'link_revoked',
        'This link was withdrawn',
        `This onboarding link was withdrawn. ${ask}`,
      );
  }
}

function mailboxExists(email: string): OnboardingFailure {
  return failure(
    409,
    'mailbox_exists',
    'This mailbox is already set up',
    `${email} is already set up at the relay. To authorize it again, ask your administrator for a link made for this mailbox.`,
  );
}

function authorizationFailure(err: AuthorizationError): OnboardingFailure {
  const status = err.failure === 'unknown_provider' || err.failure === 'provider_required' ? 400 : 409;
  return failure(
    status,
    err.failure,
    'This mailbox cannot be authorized here',
    `${err.message}: ${err.hint}`,
    err.field ? [{ path: err.field, message: err.message }] : undefined,
  );
}

/** The listeners a mail program connects to, with the security each offers. */
function smtpSettings(r: AuthorizationResult): SmtpSettingsView[] {
  const s = r.clientSmtp;
  return [
    ...s.ports.map((port) => ({ host: s.host, port, security: s.starttls ? 'starttls' : 'none' }) as const),
    ...s.tlsPorts.map((port) => ({ host: s.host, port, security: 'tls' }) as const),
  ];
}

export function onboardingBackend(deps: OnboardingDeps): OnboardingBackend {
  const now = deps.now ?? Date.now;
  const flows = deps.flows ?? new FlowTable({ now });
  const links = deps.store.onboardingLinks;
  const { log } = deps;

  /** Providers a mailbox can be added with in the browser: refresh-token mode, an authorization endpoint, a client. */
  const webProviders = (config: Config) =>
    Object.values(config.providers)
      .filter((p) => authMode(p) === 'refresh_token' && p.authorizeUrl && p.oauthClient)
      .map((p) => p.name);

  const settings = (): OnboardingSettings => {
    const config = deps.config();
    const publicUrl = config.http.publicUrl;
    if (!config.http.adminToken)
      return {
        enabled: false,
        reason: 'Web onboarding needs http.adminToken (the administrator starts every flow).',
      };
    if (!publicUrl)
      return {
        enabled: false,
        reason:
          'Web onboarding is off: set http.publicUrl to the address browsers reach this server at ' +
          '(e.g. https://relay.example.com) and register <publicUrl>/oauth/callback as a redirect URI of the OAuth client.',
      };
    return {
      enabled: true,
      publicUrl,
      redirectUri: publicUrl + CALLBACK_PATH,
      providers: webProviders(config),
    };
  };

  const enabledSettings = () => {
    const s = settings();
    return s.enabled ? s : undefined;
  };

  const createLink = (raw: unknown): CreatedOnboardingLink | OnboardingFailure => {
    const s = enabledSettings();
    if (!s) return failure(404, 'off', 'Web onboarding is off', (settings() as { reason: string }).reason);
    const bad = (path: string, message: string) =>
      failure(400, 'invalid', 'Invalid onboarding link request', `${path}: ${message}`, [{ path, message }]);
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return bad('', 'expected a JSON object');
    const body = raw as Record<string, unknown>;
    const unknown = Object.keys(body).find((k) => !LINK_FIELDS.has(k));
    if (unknown) return bad(unknown, `unknown field (expected ${[...LINK_FIELDS].join(', ')})`);
    if (typeof body.provider !== 'string' || !body.provider.trim())
      return bad('provider', `expected one of: ${s.providers.join(', ') || '(none can be authorized yet)'}`);
    const provider = body.provider.trim();
    if (!s.providers.includes(provider))
      return bad(
        'provider',
        `"${provider}" cannot authorize mailboxes in the browser (it needs authorizeUrl and oauthClient, and no app-only auth); expected one of: ${s.providers.join(', ') || '(none)'}`,
      );
    let email: string | undefined;
    if (body.email !== undefined && body.email !== null && body.email !== '') {
      if (typeof body.email !== 'string' || !EMAIL.test(body.email.trim()))
        return bad('email', 'expected a mailbox address, or no email for a link any mailbox can use');
      email = normalizeEmail(body.email);
      try {
        planAuthorization(deps.config(), email, { provider });
      } catch (err) {
        if (err instanceof AuthorizationError) return { ...authorizationFailure(err), problem: 'invalid' };
        throw err;
      }
    }
    let lifetime = DEFAULT_LINK_LIFETIME_MS;
    if (body.expiresIn !== undefined) {
      const ms = parseDuration(body.expiresIn);
      if (ms === undefined || ms < MIN_LINK_LIFETIME_MS || ms > MAX_LINK_LIFETIME_MS)
        return bad('expiresIn', 'expected a duration from "1s" to "30d", such as "7d" or "12h"');
      lifetime = ms;
    }
    const t = now();
    // rounded up to the second the link carries, so it lasts at least what was asked
    const claims: LinkClaims = {
      id: newLinkId(),
      ...(email ? { email } : {}),
      provider,
      expiresAt: Math.ceil((t + lifetime) / 1000) * 1000,
    };
    links.prune(t - LINK_RETENTION_MS);
    links.add({ ...claims, createdAt: t });
    const url = `${s.publicUrl}/onboard?link=${signLink(links.macKey, claims)}`;
    log.info(
      { linkId: claims.id, email, provider, expiresAt: iso(claims.expiresAt) },
      'onboarding link created',
    );
    return {
      ok: true,
      id: claims.id,
      url,
      expiresAt: iso(claims.expiresAt),
      ...(email ? { email } : {}),
      provider,
    };
  };

  const linkStatus = (l: OnboardingLinkRecord, t: number): OnboardingLinkView['status'] => {
    if (l.revokedAt !== undefined) return 'revoked';
    if (l.usedAt !== undefined) return 'used';
    return t >= l.expiresAt ? 'expired' : 'unused';
  };

  const listLinks = (): OnboardingLinkView[] => {
    const t = now();
    return links.list().map((l) => ({
      id: l.id,
      ...(l.email !== undefined ? { email: l.email } : {}),
      provider: l.provider,
      createdAt: iso(l.createdAt),
      expiresAt: iso(l.expiresAt),
      status: linkStatus(l, t),
      ...(l.usedBy !== undefined ? { usedBy: l.usedBy } : {}),
    }));
  };

  const revokeLink = (id: string): boolean => {
    const done = links.revoke(id, now());
    if (done) log.info({ linkId: id }, 'onboarding link revoked');
    return done;
  };

  /** Signature, expiry, then the store's record: unknown (pruned), revoked, used. */
  const checkClaims = (token: string): LinkClaims | OnboardingFailure => {
    const v = verifyLink(links.macKey, token, now());
    if (!v.ok) return linkFailure(v.reason, v.reason === 'expired' ? v.claims : undefined);
    const rec = links.get(v.claims.id);
    if (!rec || rec.revokedAt !== undefined) return linkFailure('revoked');
    if (rec.usedAt !== undefined) return linkFailure('used', v.claims, rec);
    return v.claims;
  };

  const authorizeOrigin = (claims: LinkClaims): string | OnboardingFailure => {
    const provider = deps.config().providers[claims.provider];
    const url =
      provider &&
      webProviders(deps.config()).includes(provider.name) &&
      providerUrl(provider, 'authorizeUrl');
    if (!url)
      return failure(
        409,
        'provider_unavailable',
        'This link cannot be used now',
        `The provider "${claims.provider}" of this link is no longer set up for browser sign-in. Ask your administrator.`,
      );
    return new URL(url).origin;
  };

  const checkLink = (token: string): OnboardingLinkInfo | OnboardingFailure => {
    const claims = checkClaims(token);
    if ('ok' in claims) return claims;
    const origin = authorizeOrigin(claims);
    if (typeof origin !== 'string') return origin;
    return {
      ok: true,
      ...(claims.email ? { email: claims.email } : {}),
      provider: claims.provider,
      expiresAt: iso(claims.expiresAt),
      authorizeOrigin: origin,
    };
  };

  const start = async (req: FlowStart): Promise<FlowStarted | OnboardingFailure> => {
    const s = enabledSettings();
    if (!s) return failure(404, 'off', 'Web onboarding is off', (settings() as { reason: string }).reason);
    let email: string;
    let provider: string | undefined;
    let startedBy: PendingFlow['startedBy'];
    if (req.by === 'link') {
      const claims = checkClaims(req.link);
      if ('ok' in claims) return claims;
      const origin = authorizeOrigin(claims);
      if (typeof origin !== 'string') return origin;
      const typed = req.email?.trim();
      if (!claims.email && (!typed || !EMAIL.test(typed)))
        return failure(
          400,
          'email_required',
          'Which mailbox?',
          'Enter your mailbox address on the previous page, then continue.',
          [{ path: 'email', message: 'expected a mailbox address' }],
        );
      email = normalizeEmail(claims.email ?? typed!);
      provider = claims.provider;
      startedBy = { linkId: claims.id };
      if (!claims.email && deps.config().accounts.some((a) => a.email === email)) return mailboxExists(email);
    } else {
      if (!EMAIL.test(req.email.trim()))
        return failure(400, 'invalid', 'Invalid mailbox', 'email: expected a mailbox address', [
          { path: 'email', message: 'expected a mailbox address' },
        ]);
      email = normalizeEmail(req.email);
      provider = req.provider;
      startedBy = { admin: true };
    }
    let plan: AuthorizationPlan;
    let pending: PendingAuthorization;
    try {
      plan = planAuthorization(deps.config(), email, provider ? { provider } : {});
      if (!s.providers.includes(plan.provider.name))
        return failure(
          409,
          'provider_unavailable',
          'This mailbox cannot be authorized here',
          `provider "${plan.provider.name}" cannot authorize mailboxes in the browser: it needs providers.${plan.provider.name}.authorizeUrl and .oauthClient`,
        );
      pending = beginAuthorization(plan, s.redirectUri);
    } catch (err) {
      if (err instanceof AuthorizationError) return authorizationFailure(err);
      throw err;
    }
    const binding = randomBytes(32).toString('base64url');
    const added = flows.add({
      state: pending.state,
      verifier: pending.codeVerifier,
      bindingDigest: sha256(binding),
      email: plan.email,
      provider: plan.provider.name,
      redirectUri: pending.redirectUri,
      startedBy,
      startedAt: now(),
    });
    if (!added)
      return failure(
        503,
        'busy',
        'Too many sign-ins in progress',
        'Too many sign-ins are waiting for the provider right now. Try again in a few minutes.',
      );
    log.info(
      {
        email: plan.email,
        provider: plan.provider.name,
        by: 'linkId' in startedBy ? 'link' : 'admin',
        ...startedBy,
      },
      'web onboarding started',
    );
    return {
      ok: true,
      authorizeUrl: pending.url,
      state: pending.state,
      binding,
      expiresInSec: FLOW_TTL_MS / 1000,
    };
  };

  const finish = async (
    query: URLSearchParams,
    binding: string | undefined,
  ): Promise<FlowFinished | OnboardingFailure> => {
    const states = query.getAll('state');
    if (states.length !== 1 || !states[0])
      return failure(
        400,
        'state_missing',
        'Sign-in not recognised',
        'This address is only for the provider to send you back to after signing in; it came without a usable state. Start again from your link or the status page.',
      );
    const state = states[0];
    const taken = flows.take(state);
    if (taken.found === 'finished')
      return failure(
        410,
        'flow_finished',
        'This sign-in is already finished',
        'This sign-in was already completed (or failed) a moment ago. A password is shown only once and cannot be shown again; ask your administrator for a new link if you need one.',
      );
    if (taken.found === 'none')
      return failure(
        400,
        'state_unknown',
        'Sign-in not recognised',
        `This sign-in is unknown or has expired (a sign-in must be finished within ${FLOW_TTL_MS / 60_000} minutes). Start again from your link or the status page.`,
      );
    const flow = taken.flow;
    if (binding === undefined || !timingSafeEqual(sha256(binding), flow.bindingDigest)) {
      log.warn({ email: flow.email }, 'web onboarding callback without the browser binding: refused');
      return failure(
        403,
        'browser_mismatch',
        'Finish in the browser you started in',
        `This sign-in was started in another browser (or its cookie was blocked). Start again, and finish in the same browser, at ${settings().enabled ? (settings() as { publicUrl: string }).publicUrl : 'the relay'}.`,
      );
    }
    const retry =
      'linkId' in flow.startedBy
        ? 'You can open your link again to retry while it is valid.'
        : 'Start again from the status page.';

    // planned again on the snapshot in use: a reload since the start may have changed the provider
    let plan: AuthorizationPlan;
    try {
      plan = planAuthorization(deps.config(), flow.email, { provider: flow.provider });
    } catch (err) {
      if (err instanceof AuthorizationError) return authorizationFailure(err);
      throw err;
    }

    const linkId = 'linkId' in flow.startedBy ? flow.startedBy.linkId : undefined;
    // a link for any mailbox adds one; it never replaces the authorization of a configured mailbox
    if (linkId !== undefined && plan.account && !links.get(linkId)?.email) return mailboxExists(flow.email);

    // The provider's answer first (a refusal at the consent page uses nothing up), state checked again.
    let code: string;
    try {
      code = codeFromAuthorizationResponse(
        query,
        flow.state,
        authorizationCodeContext({ ...planContext(plan), redirectUri: flow.redirectUri }),
      );
    } catch (err) {
      if (!(err instanceof GrantError)) throw err;
      const denied = err.oauthError === 'access_denied';
      log.info(
        { email: flow.email, error: err.oauthError ?? err.failure },
        'web onboarding: no authorization code',
      );
      return failure(
        denied ? 403 : 400,
        denied ? 'consent_denied' : 'provider_error',
        denied ? 'Access was not allowed' : 'The provider did not authorize',
        `${denied ? 'Access to the mailbox was not allowed at the provider.' : `The provider answered: ${err.description ?? err.oauthError ?? err.message}.`} Nothing was changed. ${retry}`,
      );
    }

    // Single use: the link is claimed before the code is exchanged, and given back if that fails.
    if (linkId !== undefined) {
      const rec = links.get(linkId);
      if (!rec || rec.revokedAt !== undefined) return linkFailure('revoked');
      if (now() >= rec.expiresAt) return linkFailure('expired', { ...rec });
      if (!links.claim(linkId, now())) return linkFailure('used', undefined, links.get(linkId));
    }
    const giveBack = () => {
      if (linkId !== undefined) links.release(linkId);
    };

    let result: AuthorizationResult;
    let password: string | undefined;
    let warning: string | undefined;
    try {
      const tokens = await finishAuthorization(
        deps.tokenClient,
        plan,
        { url: '', state: flow.state, codeVerifier: flow.verifier, redirectUri: flow.redirectUri },
        { code },
      );
      password = plan.account ? undefined : newClientPassword();
      result = await completeAuthorization(
        {
          config: deps.config(),
          store: deps.store,
          tokenClient: deps.tokenClient,
          ...(deps.editor() ? { editor: deps.editor()! } : {}),
          notify: deps.adopt,
          log,
        },
        plan,
        tokens,
        password !== undefined ? { password } : {},
      );
    } catch (err) {
      const probeFailed =
        err instanceof AuthorizationError && err.failure === 'smtp_probe_failed' && err.stored;
      // From a link, a mailbox the provider's SMTP refused is not kept: the owner may have signed in
      // as someone else, and can retry with the link once the cause is fixed. Re-authorizations
      // (the link's own mailbox) keep what was stored, as the administrator's flows do.
      if (probeFailed && linkId !== undefined && !plan.account) {
        await deps.editor()?.remove(flow.email);
        giveBack();
        log.warn(
          { email: flow.email, linkId, err: err.message },
          'web onboarding: SMTP probe refused, mailbox not added',
        );
        return failure(
          502,
          'smtp_probe_failed',
          'The mailbox could not be verified',
          `${err.message}. ${err.hint.replace(/^the refresh token is stored; /, '')}. Nothing was kept. ${retry}`,
        );
      }
      // stored anyway (the provider's SMTP refused the probe): the mailbox is set up, say what to fix
      if (probeFailed) {
        warning = `The provider's mail server refused a test login: ${err.message}. ${err.hint}.`;
        result = {
          email: flow.email,
          provider: flow.provider,
          added: password !== undefined,
          removedPlainRefreshToken: false,
          rotated: false,
          verifiedAt: '',
          clientSmtp: clientSmtpSettings(deps.config(), flow.email),
          warnings: [],
        };
      } else {
        giveBack();
        if (!(err instanceof AuthorizationError) && !(err instanceof GrantError)) {
          log.error({ err, email: flow.email, linkId }, 'web onboarding failed');
          return failure(
            500,
            'internal',
            'The mailbox could not be authorized',
            `An internal error stopped the authorization (the relay's log has it). ${retry}`,
          );
        }
        const text = err instanceof AuthorizationError ? `${err.message}: ${err.hint}.` : err.message;
        const kept = err instanceof AuthorizationError && err.stored ? '' : ' Nothing was stored.';
        log.warn({ email: flow.email, provider: flow.provider, linkId, err: text }, 'web onboarding failed');
        return failure(
          502,
          err instanceof AuthorizationError ? err.failure : 'exchange_failed',
          'The mailbox could not be authorized',
          `${text}${kept} ${retry}`,
        );
      }
    }
    if (linkId !== undefined) links.finish(linkId, flow.email);
    log.info(
      {
        email: result.email,
        provider: result.provider,
        added: result.added,
        linkId,
        by: linkId ? 'link' : 'admin',
      },
      'web onboarding finished',
    );
    return {
      ok: true,
      email: result.email,
      provider: result.provider,
      added: result.added,
      ...(result.added && password !== undefined ? { password } : {}),
      smtp: smtpSettings(result),
      ...(warning ? { warning } : {}),
    };
  };

  return { settings, createLink, listLinks, revokeLink, checkLink, start, finish };
}
