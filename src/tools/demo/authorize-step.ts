// The demo's authorization of one mailbox, end to end through the product's own flow
// (app/authorize.ts, as `accounts authorize` runs it) with no browser: PKCE and state, the
// provider's consent page answered by a form post (consent-form.ts), the redirect to a loopback
// listener, the code exchange, then completeAuthorization (a verifying refresh and AUTH XOAUTH2,
// the refresh token sealed in the state store, the account added with a hashed password). The
// running proxy in this process is told directly (as the web onboarding does), so the mailbox
// works at once.
import fs from 'node:fs';
import path from 'node:path';
import {
  beginAuthorization,
  completeAuthorization,
  finishAuthorization,
  planAuthorization,
} from '../../app/authorize.js';
import type { RunningProxy } from '../../app/run.js';
import { AccountsFileEditor } from '../../account-admin/file-editor.js';
import { validateAccount } from '../../config/accounts.js';
import { newState } from '../../oauth/grants/authorization-code.js';
import { startLoopbackRedirect } from '../../oauth/grants/loopback-redirect.js';
import { TokenClient } from '../../oauth/token-client.js';
import { allowConsent } from './consent-form.js';

/** The consent, the redirect and the exchange must all be done by then. */
const FLOW_TIMEOUT_MS = 15_000;

/**
 * Authorizes `email` (a new account, client password `password`) on the running proxy; `out` gets
 * one line per step. Throws with the step that failed.
 */
export async function authorizeDemoMailbox(
  running: RunningProxy,
  email: string,
  password: string,
  out: (line: string) => void,
): Promise<void> {
  const proxy = running.proxy;
  const config = proxy.config;
  const plan = planAuthorization(config, email);
  const tokenClient = new TokenClient({ timeoutMs: config.oauth.requestTimeoutMs });
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FLOW_TIMEOUT_MS);
  const state = newState();
  const listener = await startLoopbackRedirect({
    expectedState: state,
    signal: abort.signal,
    context: { flavor: plan.flavor, clientId: plan.client.clientId, mailbox: plan.email, scope: plan.scope },
  }).catch((err) => {
    clearTimeout(timer);
    throw err;
  });
  try {
    const pending = beginAuthorization(plan, listener.redirectUri, { state });
    const consentAt = new URL(pending.url);
    out(
      `authorize: ${email}: consent page at ${consentAt.origin}${consentAt.pathname} ` +
        `(client ${plan.client.clientId}, PKCE S256, state ${pending.state.slice(0, 8)}...)`,
    );
    const location = await allowConsent(pending.url, email);
    const back = new URL(location);
    out(
      `authorize: consent form posted as ${email} with Allow: redirected to ${back.origin}${back.pathname}`,
    );
    // the browser's last step: load the redirect URI, where the listener checks the state
    const landing = await fetch(location);
    await landing.text();
    const code = await listener.code;
    const tokens = await finishAuthorization(tokenClient, plan, pending, { code });
    out(
      `authorize: code exchanged with the PKCE verifier at ${plan.tokenUrl}: access and refresh token granted`,
    );
    const file = config.accountsFile!;
    const editor = new AccountsFileEditor(file, {
      validate: (raw) => validateAccount(raw, proxy.config.providers),
      apply: async () => {
        const r = await proxy.reload('demo authorization');
        if (!r.ok) throw new Error(r.error);
      },
    });
    const r = await completeAuthorization(
      {
        config,
        store: proxy.store,
        tokenClient,
        editor,
        notify: () => void proxy.adoptAuthorizations(),
      },
      plan,
      tokens,
      { password },
    );
    const stored = proxy.store.getAuthorizedRefreshToken(email);
    if (stored === undefined) throw new Error(`no refresh token of ${email} in the state store`);
    const stateDir = config.state.dir;
    // the demo's directory holds the config, the accounts file and the state dir
    const plain = plainTextIn(path.dirname(file), stored);
    if (plain) throw new Error(`the refresh token of ${email} is in plain text in ${plain}`);
    out(
      `authorize: granted; verified by a token refresh and AUTH XOAUTH2 at ${r.verifiedAt}; ` +
        `refresh token stored sealed in ${path.join(stateDir, 'state.db')} (not in plain text on disk); ` +
        `${email} ${r.added ? 'added to' : 'updated in'} ${path.basename(file)} with a hashed password`,
    );
  } finally {
    listener.close();
    clearTimeout(timer);
    tokenClient.close();
  }
}

/** The first file under `dir` whose bytes contain `secret`, if any. */
function plainTextIn(dir: string, secret: string): string | undefined {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      const found = plainTextIn(p, secret);
      if (found) return found;
    } else if (e.isFile() && fs.readFileSync(p).includes(secret)) return p;
  }
  return undefined;
}
