// Authorizing a mailbox (issue "onboarding"): shared by `xoauth2-proxy accounts authorize` (the
// command, through a loopback redirect or the device flow) and the web onboarding of the status
// page. Both plan the flow with planAuthorization(), get tokens their own way, and end in
// completeAuthorization(): verify the grant (a real refresh, then AUTH XOAUTH2 at the provider's
// SMTP), seal the refresh token in the state store (never in the YAML), add the account to the
// accounts file if it is missing (its client password stored hashed) or take a plain refresh token
// out of it, and tell the running proxy, which adopts the new token at once (no restart).
import type { AccountConfig, Config, OAuthClientConfig, ProviderConfig } from '../config/types.js';
import { formatPath } from '../config/errors.js';
import { authMode, isBuiltinProvider, oauthClientOf, providerUrl } from '../config/providers.js';
import { hashPassword } from '../accounts/password.js';
import type { AccountsFileEditor } from '../account-admin/file-editor.js';
import { formatIssue } from '../shared/issue.js';
import { normalizeEmail } from '../shared/email.js';
import { formatHostPort } from '../shared/net.js';
import { silentLogger, type Logger } from '../shared/log.js';
import type { StateStore } from '../state/store.js';
import { TokenGrantError, type TokenClient } from '../oauth/token-client.js';
import {
  authorizationCodeContext,
  buildAuthorizationUrl,
  codeFromAuthorizationResponse,
  exchangeAuthorizationCode,
  newState,
} from '../oauth/grants/authorization-code.js';
import { newPkce } from '../oauth/grants/pkce.js';
import { deviceFlowRefusal, providerFlavor, type ProviderFlavor } from '../oauth/grants/providers.js';
import type { AuthorizedTokens } from '../oauth/grants/request.js';
import { UpstreamConnection, oneLine } from '../upstream/connection.js';

export type { AuthorizedTokens } from '../oauth/grants/request.js';

/** Why an authorization cannot start or did not complete; `hint` says what to do. */
export type AuthorizationFailure =
  /** --provider (or the web form's provider) names no configured provider */
  | 'unknown_provider'
  /** a new account and no provider given, with more than one to choose from */
  | 'provider_required'
  /** the account exists with another provider */
  | 'provider_mismatch'
  /** the provider gets app-only tokens: its accounts need no authorization */
  | 'app_only'
  /** no OAuth client: the account has no clientId and the provider no oauthClient */
  | 'no_client'
  /** the provider has no authorization (or device) endpoint */
  | 'no_endpoint'
  /** the provider refuses this flow (Google's device endpoint and Gmail scopes) */
  | 'flow_refused'
  /** the account would have to be added or changed, but accounts are inline in the config */
  | 'inline_accounts'
  /** the new refresh token does not refresh: nothing was stored */
  | 'refresh_failed'
  /** the upstream SMTP refused AUTH XOAUTH2 with the new token, or could not be reached */
  | 'smtp_probe_failed'
  /** the accounts file could not be written or the account is invalid */
  | 'accounts_file';

export class AuthorizationError extends Error {
  readonly code = 'AUTHORIZATION_FAILED';
  constructor(
    readonly failure: AuthorizationFailure,
    message: string,
    /** what to do, one sentence */
    readonly hint: string,
    /** true when the refresh token was stored anyway (only smtp_probe_failed) */
    readonly stored = false,
    /** the config field at fault, when one is */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'AuthorizationError';
  }
}

/** Everything an interactive authorization of one mailbox uses. */
export interface AuthorizationPlan {
  /** normalised */
  email: string;
  provider: ProviderConfig;
  /** the account as configured, if it is */
  account?: AccountConfig;
  /** the OAuth client the refresh token is bound to: the account's own, else the provider's oauthClient */
  client: OAuthClientConfig;
  /** true when the client is the provider's (the account file then gets no clientId) */
  providerClient: boolean;
  tenant: string;
  /** `{tenant}` substituted; undefined when the provider has none */
  authorizeUrl?: string;
  deviceAuthorizationUrl?: string;
  tokenUrl: string;
  scope: string;
  /** google / microsoft for the built-in entries (whatever their URLs), else by the endpoint's host */
  flavor: ProviderFlavor;
  /** the accounts file would change (add the account, or take a plain refresh token out of it) */
  changesAccountsFile: boolean;
}

/**
 * Checks that `email` can be authorized with `config` and says how. A new account needs a provider
 * (`opts.provider`, or the only provider with an oauthClient). Throws AuthorizationError naming the
 * field to set.
 */
export function planAuthorization(
  config: Config,
  emailArg: string,
  opts: { provider?: string } = {},
): AuthorizationPlan {
  const email = normalizeEmail(emailArg);
  const account = config.accounts.find((a) => a.email === email);
  let name = opts.provider?.trim();
  if (name && !Object.hasOwn(config.providers, name)) {
    throw new AuthorizationError(
      'unknown_provider',
      `unknown provider "${name}"`,
      `use one of: ${Object.keys(config.providers).join(', ')}`,
    );
  }
  if (account && name && name !== account.provider) {
    throw new AuthorizationError(
      'provider_mismatch',
      `${email} is configured with provider "${account.provider}", not "${name}"`,
      `leave the provider out, or remove the account first (accounts remove ${email})`,
    );
  }
  if (!account && !name) {
    const candidates = Object.values(config.providers).filter((p) => p.oauthClient && !p.auth);
    if (candidates.length !== 1) {
      throw new AuthorizationError(
        'provider_required',
        `${email} is not configured yet: which provider is it at?`,
        `give --provider (one of: ${Object.keys(config.providers).join(', ')})`,
      );
    }
    name = candidates[0]!.name;
  }
  const provider = config.providers[account?.provider ?? name!]!;
  if (authMode(provider) !== 'refresh_token') {
    throw new AuthorizationError(
      'app_only',
      `provider "${provider.name}" gets app-only tokens (auth.type ${provider.auth!.type}): its mailboxes need no authorization`,
      `add the mailbox with \`xoauth2-proxy accounts add --email ${email} --provider ${provider.name} --password-stdin\``,
    );
  }
  const client = oauthClientOf(account ?? {}, provider);
  if (!client) {
    const field = formatPath(['providers', provider.name, 'oauthClient']);
    throw new AuthorizationError(
      'no_client',
      `no OAuth client to authorize ${email} with`,
      `set ${field} (clientId, and clientSecret for a confidential client) to your app registration`,
      false,
      field,
    );
  }
  const changesAccountsFile = !account || account.refreshToken !== undefined;
  if (changesAccountsFile && !config.accountsFile) {
    throw new AuthorizationError(
      'inline_accounts',
      account
        ? `${email} has a refreshToken inline in the config, which this command cannot take out`
        : `${email} would be added, but the accounts are inline in the config`,
      account
        ? `remove refreshToken from the account in ${config.file ?? 'the config'} by hand, then authorize again`
        : 'set `accountsFile:` in the config (the commands edit that file), or add the account by hand without refreshToken',
      false,
      'accountsFile',
    );
  }
  const tenant = account?.tenant ?? provider.tenant;
  const tokenUrl = providerUrl(provider, 'tokenUrl', tenant)!;
  const authorizeUrl = providerUrl(provider, 'authorizeUrl', tenant);
  const deviceAuthorizationUrl = providerUrl(provider, 'deviceAuthorizationUrl', tenant);
  return {
    email,
    provider,
    ...(account ? { account } : {}),
    client,
    providerClient: account?.clientId === undefined,
    tenant,
    ...(authorizeUrl !== undefined ? { authorizeUrl } : {}),
    ...(deviceAuthorizationUrl !== undefined ? { deviceAuthorizationUrl } : {}),
    tokenUrl,
    scope: provider.scope,
    // a built-in entry keeps its provider's manners even when pointed elsewhere (the simulator)
    flavor: isBuiltinProvider(provider.name) ? provider.name : providerFlavor(authorizeUrl ?? tokenUrl),
    changesAccountsFile,
  };
}

/** The authorization endpoint, or an AuthorizationError naming the field to set. */
export function requireAuthorizeUrl(plan: AuthorizationPlan): string {
  if (plan.authorizeUrl) return plan.authorizeUrl;
  const field = formatPath(['providers', plan.provider.name, 'authorizeUrl']);
  throw new AuthorizationError(
    'no_endpoint',
    `provider "${plan.provider.name}" has no authorization endpoint`,
    `set ${field}`,
    false,
    field,
  );
}

/** The device endpoint, or why this provider cannot use the device flow. */
export function requireDeviceAuthorizationUrl(plan: AuthorizationPlan): string {
  const refusal = deviceFlowRefusal(plan.flavor, plan.scope);
  if (refusal)
    throw new AuthorizationError('flow_refused', 'the device flow cannot authorize Gmail', refusal);
  if (plan.deviceAuthorizationUrl) return plan.deviceAuthorizationUrl;
  const field = formatPath(['providers', plan.provider.name, 'deviceAuthorizationUrl']);
  throw new AuthorizationError(
    'no_endpoint',
    `provider "${plan.provider.name}" has no device authorization endpoint`,
    `set ${field}, or authorize in a browser (without --device)`,
    false,
    field,
  );
}

/** An authorization-code request on its way: keep it until the redirect comes back. */
export interface PendingAuthorization {
  /** what the mailbox owner opens */
  url: string;
  /** checked on the redirect (codeFromAuthorizationResponse) */
  state: string;
  /** PKCE (S256): sent only with the code exchange */
  codeVerifier: string;
  redirectUri: string;
}

/**
 * The authorization URL for `redirectUri` (PKCE S256, a fresh state unless one is given, the mailbox
 * as login hint).
 */
export function beginAuthorization(
  plan: AuthorizationPlan,
  redirectUri: string,
  opts: { state?: string } = {},
): PendingAuthorization {
  const pkce = newPkce();
  const state = opts.state ?? newState();
  const url = buildAuthorizationUrl({
    authorizeUrl: requireAuthorizeUrl(plan),
    clientId: plan.client.clientId,
    redirectUri,
    scope: plan.scope,
    state,
    codeChallenge: pkce.challenge,
    flavor: plan.flavor,
    loginHint: plan.email,
  });
  return { url, state, codeVerifier: pkce.verifier, redirectUri };
}

/**
 * The redirect's query (the loopback listener's or the web callback's): the state is checked
 * first (a GrantError `state_mismatch` before anything is exchanged), then the code is exchanged
 * with the PKCE verifier. Throws GrantError.
 */
export async function finishAuthorization(
  tokenClient: TokenClient,
  plan: AuthorizationPlan,
  pending: PendingAuthorization,
  params: URLSearchParams | { code: string },
): Promise<AuthorizedTokens> {
  const code =
    params instanceof URLSearchParams
      ? codeFromAuthorizationResponse(
          params,
          pending.state,
          authorizationCodeContext({ ...planContext(plan), redirectUri: pending.redirectUri }),
        )
      : params.code;
  return exchangeAuthorizationCode(tokenClient, {
    tokenUrl: plan.tokenUrl,
    clientId: plan.client.clientId,
    ...(plan.client.clientSecret !== undefined ? { clientSecret: plan.client.clientSecret } : {}),
    code,
    redirectUri: pending.redirectUri,
    codeVerifier: pending.codeVerifier,
    flavor: plan.flavor,
    mailbox: plan.email,
    scope: plan.scope,
  });
}

/** The GrantContext fields of a plan (for error hints). */
export function planContext(plan: AuthorizationPlan) {
  return {
    tokenUrl: plan.tokenUrl,
    clientId: plan.client.clientId,
    flavor: plan.flavor,
    mailbox: plan.email,
    scope: plan.scope,
  };
}

/** What completeAuthorization needs from its caller. */
export interface AuthorizationDeps {
  config: Config;
  /** the state store on config.state.dir (the proxy's own in the web flow, a second handle in the CLI) */
  store: Pick<StateStore, 'getAuthorizedRefreshToken' | 'putAuthorizedRefreshToken' | 'deleteAccessToken'>;
  tokenClient: TokenClient;
  /**
   * the accounts file (config.accountsFile) editor; its `apply` reloads a running proxy in process
   * (web flow) or does nothing (CLI: the proxy watches the file)
   */
  editor?: AccountsFileEditor;
  /**
   * called once the token is stored: the CLI rewrites the authorization signal file
   * (state/store.ts signalAuthorization); the web flow calls Proxy.adoptAuthorizations()
   */
  notify?: () => void | Promise<void>;
  log?: Logger;
}

export interface CompleteAuthorizationOptions {
  /** for an account not in the accounts file yet: its client password, stored hashed */
  password?: string;
  /** or the hash itself (`$scrypt$...`) */
  passwordHash?: string;
  /** false skips the refresh and the SMTP probe (tests of the storing alone); default true */
  verify?: boolean;
}

/** How the client software reaches the proxy (for the web flow's page: host and port to set). */
export interface ClientSmtpSettings {
  host: string;
  /** plain listeners (STARTTLS when `starttls`) */
  ports: number[];
  starttls: boolean;
  /** implicit-TLS listeners */
  tlsPorts: number[];
  username: string;
}

export interface AuthorizationResult {
  email: string;
  provider: string;
  /** the account was added to the accounts file */
  added: boolean;
  /** a plain refresh token was taken out of the accounts file */
  removedPlainRefreshToken: boolean;
  /** the refresh token was rotated by the verifying refresh (the rotated one is what is stored) */
  rotated: boolean;
  /** the provider's SMTP host:port that accepted AUTH XOAUTH2 ("" when verify was false) */
  verifiedAt: string;
  clientSmtp: ClientSmtpSettings;
  warnings: string[];
}

/**
 * Verify, store, register, notify (see the file's header). Throws AuthorizationError: for
 * `refresh_failed` nothing was stored; for `smtp_probe_failed` the token and the account were
 * stored (`stored`), since the consent is hard to get again and the cause is elsewhere (SMTP AUTH
 * disabled for the mailbox, the network).
 */
export async function completeAuthorization(
  deps: AuthorizationDeps,
  plan: AuthorizationPlan,
  tokens: AuthorizedTokens,
  opts: CompleteAuthorizationOptions = {},
): Promise<AuthorizationResult> {
  const log = deps.log ?? silentLogger;
  const { email, provider } = plan;
  let refreshToken = tokens.refreshToken;
  let accessToken = tokens.accessToken;
  let rotated = false;
  let probeFailure: AuthorizationError | undefined;
  let verifiedAt = '';

  if (opts.verify !== false) {
    try {
      const r = await deps.tokenClient.refresh({
        tokenUrl: plan.tokenUrl,
        clientId: plan.client.clientId,
        ...(plan.client.clientSecret !== undefined ? { clientSecret: plan.client.clientSecret } : {}),
        refreshToken,
        scope: plan.scope,
      });
      accessToken = r.accessToken;
      if (r.refreshToken !== undefined && r.refreshToken !== refreshToken) {
        refreshToken = r.refreshToken;
        rotated = true;
      }
    } catch (err) {
      const ge = err instanceof TokenGrantError ? err : undefined;
      const desc = ge?.oauth?.description ? ` (${ge.oauth.description})` : '';
      throw new AuthorizationError(
        'refresh_failed',
        `the new refresh token of ${email} does not refresh: ${ge?.reason ?? (err as Error).message}${desc}`,
        ge?.kind === 'transient'
          ? `the token endpoint failed; nothing was stored: authorize again`
          : `nothing was stored: check ${formatPath(['providers', provider.name, 'scope'])} and the app's permissions, then authorize again`,
      );
    }
    const hp = formatHostPort(provider.smtp);
    const probe = await probeSmtpAuth(deps.config, plan, accessToken);
    if (probe.ok) verifiedAt = hp;
    else {
      probeFailure = new AuthorizationError(
        'smtp_probe_failed',
        `${hp} refused AUTH XOAUTH2 for ${email}: ${probe.reason}`,
        probe.hint,
        true,
      );
    }
  }

  // the token first: a running proxy that reloads on the file change below must find it
  deps.store.putAuthorizedRefreshToken(email, refreshToken);
  deps.store.deleteAccessToken(email);

  const warnings: string[] = [];
  let added = false;
  let removedPlainRefreshToken = false;
  if (plan.changesAccountsFile) {
    if (!deps.editor)
      throw new AuthorizationError('accounts_file', 'no accounts file editor', 'set accountsFile');
    const r = plan.account
      ? await deps.editor.update(email, { refreshToken: null })
      : await deps.editor.add({
          email,
          provider: provider.name,
          ...(plan.providerClient ? {} : { clientId: plan.client.clientId }),
          ...(opts.passwordHash !== undefined
            ? { passwordHash: opts.passwordHash }
            : opts.password !== undefined
              ? { passwordHash: await hashPassword(opts.password) }
              : {}),
        });
    if (!r.ok) {
      throw new AuthorizationError(
        'accounts_file',
        `the refresh token of ${email} is stored, but ${deps.editor.file} was not changed: ${r.error}` +
          (r.issues?.length ? ` (${r.issues.map(formatIssue).join('; ')})` : ''),
        'fix the accounts file and authorize again',
        true,
      );
    }
    warnings.push(...(r.warnings ?? []));
    added = !plan.account;
    removedPlainRefreshToken = plan.account !== undefined;
    // a reload of a running proxy between the two writes would have dropped the row of an account
    // it did not know yet (TokenManager.setAccounts keeps only configured accounts): write it again
    if (deps.store.getAuthorizedRefreshToken(email) !== refreshToken)
      deps.store.putAuthorizedRefreshToken(email, refreshToken);
  }
  try {
    await deps.notify?.();
  } catch (err) {
    warnings.push(
      `the running proxy was not told (${(err as Error).message}): it adopts the token on SIGHUP`,
    );
  }
  log.info({ email, provider: provider.name, added, rotated }, 'mailbox authorized: refresh token stored');
  if (probeFailure) throw probeFailure;
  return {
    email,
    provider: provider.name,
    added,
    removedPlainRefreshToken,
    rotated,
    verifiedAt,
    clientSmtp: clientSmtpSettings(deps.config, email),
    warnings,
  };
}

export function clientSmtpSettings(config: Config, email: string): ClientSmtpSettings {
  return {
    host: config.smtp.hostname,
    ports: config.smtp.listen.map((l) => l.port),
    starttls: config.smtp.tls !== undefined,
    tlsPorts: config.smtp.tlsListen.map((l) => l.port),
    username: email,
  };
}

type ProbeResult = { ok: true } | { ok: false; reason: string; hint: string };

/** EHLO, STARTTLS/TLS as configured, AUTH XOAUTH2 with the new token, QUIT. */
async function probeSmtpAuth(config: Config, plan: AuthorizationPlan, token: string): Promise<ProbeResult> {
  const p = plan.provider;
  const conn = new UpstreamConnection({
    smtp: p.smtp,
    ehloName: config.smtp.hostname,
    ...(plan.account?.sourceAddress !== undefined ? { localAddress: plan.account.sourceAddress } : {}),
    commandTimeoutMs: p.commandTimeoutMs,
  });
  try {
    await conn.connect();
    const out = await conn.authenticate(plan.email, token);
    if (out.kind === 'ok') return { ok: true };
    const reason = oneLine(out.reply);
    return {
      ok: false,
      reason,
      hint:
        out.kind === 'temporary'
          ? 'the upstream refused for now; the refresh token is stored and the proxy will use it'
          : plan.flavor === 'microsoft'
            ? `the refresh token is stored; enable SMTP AUTH for the mailbox (Set-CASMailbox -Identity ${plan.email} ` +
              '-SmtpClientAuthenticationDisabled $false) and check that the scope has SMTP.Send'
            : `the refresh token is stored; check that the scope (${plan.scope}) allows SMTP and that the mailbox can send`,
    };
  } catch (err) {
    return {
      ok: false,
      reason: (err as Error).message,
      hint: `the refresh token is stored; check that this host reaches ${formatHostPort(p.smtp)} (providers.${p.name}.smtp)`,
    };
  } finally {
    await conn.quit().catch(() => undefined);
  }
}
