// Wires the HTTP server (metrics, health, admin API, status page) to a running Proxy.
import type { AccountConfig } from '../config/types.js';
import { validateAccount } from '../config/accounts.js';
import { oauthClientOf, tokenUrl } from '../config/providers.js';
import {
  startHttpServer,
  type AccountView,
  type AdminBackend,
  type RunningHttpServer,
} from '../http/server.js';
import { AccountsFileEditor } from '../account-admin/file-editor.js';
import { accountAdminOps, type AccountAdminOps } from '../account-admin/admin-ops.js';
import { adminFailure, type AdminResult } from '../shared/admin-result.js';
import { TokenClient } from '../oauth/token-client.js';
import { clientCredentialsGrant } from '../oauth/grants/client-credentials.js';
import { jwtBearerGrant } from '../oauth/grants/jwt-bearer.js';
import { authLabel } from './account-auth.js';
import { appOnlyGrant } from './credentials.js';
import { onboardingBackend } from './onboarding.js';
import type { Proxy } from './proxy.js';

const INLINE_ACCOUNTS =
  'accounts are inline in the config file; set `accountsFile:` to manage accounts through the admin API';

/**
 * One real token request with the account's credentials, caching nothing (for `?verify=true`): a
 * refresh with its refresh token, or its provider's app-only grant (a service account's is made
 * for the mailbox, so it checks the delegation too). An account whose refresh token is to come from
 * `accounts authorize` has nothing to verify yet.
 */
function oneShotRefresh(proxy: Proxy, client: TokenClient) {
  return async (account: AccountConfig): Promise<void> => {
    const provider = proxy.config.providers[account.provider];
    if (!provider) throw new Error(`unknown provider "${account.provider}"`);
    const app = appOnlyGrant(provider, account.tenant);
    if (app?.grant === 'client_credentials') {
      await clientCredentialsGrant(client, app);
      return;
    }
    if (app?.grant === 'jwt_bearer') {
      await jwtBearerGrant(client, { key: app.key, subject: account.email, scope: app.scope });
      return;
    }
    const oauthClient = oauthClientOf(account, provider);
    if (account.refreshToken === undefined || !oauthClient) return;
    const res = await client.refresh({
      tokenUrl: tokenUrl(provider, account.tenant),
      clientId: oauthClient.clientId,
      clientSecret: oauthClient.clientSecret,
      refreshToken: account.refreshToken,
      scope: provider.scope,
    });
    // a rotating provider retired the configured token: its successor is the account's from now on
    if (res.refreshToken !== undefined && res.refreshToken !== account.refreshToken)
      await proxy.tokens.keepRotation(account.email, account.refreshToken, res.refreshToken);
  };
}

function listAccounts(proxy: Proxy): AccountView[] {
  const out: AccountView[] = [];
  for (const a of proxy.config.accounts) {
    const token = proxy.tokens.status(a.email);
    const unusable = proxy.registry.get(a.email)?.unusable;
    const view: AccountView = {
      email: a.email,
      provider: a.provider,
      ...(token.source ? { auth: authLabel(token.source) } : {}),
      state: unusable ? 'error' : token.state,
      hasPassword: Boolean(a.passwordHash || a.password),
    };
    if (token.expiresAt) view.tokenExpiresAt = new Date(token.expiresAt).toISOString();
    const lastError = unusable ?? token.lastError;
    if (lastError) view.lastError = lastError;
    if (a.sourceAddress) view.sourceAddress = a.sourceAddress;
    const pool = proxy.pools.stats(a.email);
    if (pool) view.pool = pool;
    out.push(view);
  }
  return out;
}

export function adminBackend(proxy: Proxy): { backend: AdminBackend; close(): void } {
  const client = new TokenClient({ timeoutMs: proxy.config.oauth.requestTimeoutMs });
  // The editor follows the snapshot's accountsFile (a reload may point it elsewhere).
  let ops: { file: string; editor: AccountsFileEditor; ops: AccountAdminOps } | undefined;
  const accountOps = (): AccountAdminOps | undefined => {
    const file = proxy.config.accountsFile;
    if (!file) return undefined;
    if (ops?.file !== file) {
      const editor = new AccountsFileEditor(file, {
        validate: (raw) => validateAccount(raw, proxy.config.providers),
        apply: async () => {
          const r = await proxy.applyAdminChange();
          if (!r.ok) throw new Error(r.error);
        },
      });
      ops = { file, editor, ops: accountAdminOps(editor, oneShotRefresh(proxy, client)) };
    }
    return ops.ops;
  };
  const editor = () => (accountOps() ? ops!.editor : undefined);
  const inline = (): Promise<AdminResult> =>
    Promise.resolve(adminFailure('no_accounts_file', INLINE_ACCOUNTS));

  const backend: AdminBackend = {
    isReady: () => proxy.isReady(),
    degraded: () => proxy.degraded(),
    listAccounts: () => listAccounts(proxy),
    addAccount: (raw, verify) => accountOps()?.addAccount(raw, verify) ?? inline(),
    updateAccount: (email, raw, verify) => accountOps()?.updateAccount(email, raw, verify) ?? inline(),
    // the reload that applies the change deletes the account's stored tokens (TokenManager.setAccounts)
    deleteAccount: (email) => accountOps()?.deleteAccount(email) ?? inline(),
    async reload() {
      const r = await proxy.applyAdminChange();
      return r.ok
        ? { ok: true, body: { reloaded: true } }
        : adminFailure('failed', r.error ?? 'reload failed');
    },
    live: () => proxy.live.snapshot(),
    onboarding: onboardingBackend({
      config: () => proxy.config,
      store: proxy.store,
      tokenClient: client,
      editor,
      adopt: () => void proxy.adoptAuthorizations(),
      log: proxy.log,
    }),
  };
  return { backend, close: () => client.close() };
}

/** The HTTP server, if `http.listen` is configured. */
export async function startAdminHttp(proxy: Proxy): Promise<RunningHttpServer | undefined> {
  const listen = proxy.config.http.listen;
  if (!listen) return undefined;
  const { backend, close } = adminBackend(proxy);
  let server: RunningHttpServer;
  try {
    server = await startHttpServer({
      listen,
      adminToken: proxy.config.http.adminToken,
      metrics: proxy.metrics,
      backend,
      log: proxy.log,
    });
  } catch (err) {
    close();
    throw err;
  }
  return {
    address: server.address,
    async close() {
      await server.close();
      close();
    },
  };
}
