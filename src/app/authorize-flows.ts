// The two ways `accounts authorize` gets a mailbox owner's consent on the command line: the
// authorization code with PKCE through a loopback redirect on 127.0.0.1 (RFC 8252), which also
// takes the final redirect URL pasted back for a browser on another host, and the device
// authorization grant (RFC 8628). Both end with tokens for completeAuthorization().
import { TokenClient } from '../oauth/token-client.js';
import {
  authorizationCodeContext,
  codeFromPastedRedirect,
  newState,
} from '../oauth/grants/authorization-code.js';
import { pollDeviceToken, requestDeviceAuthorization } from '../oauth/grants/device.js';
import { GrantError } from '../oauth/grants/errors.js';
import { startLoopbackRedirect } from '../oauth/grants/loopback-redirect.js';
import type { AuthorizedTokens } from '../oauth/grants/request.js';
import { validateAccount } from '../config/accounts.js';
import type { Config } from '../config/types.js';
import { AccountsFileEditor } from '../account-admin/file-editor.js';
import { silentLogger } from '../shared/log.js';
import { openStateStore, signalAuthorization, type StateStore } from '../state/store.js';
import {
  beginAuthorization,
  finishAuthorization,
  planContext,
  requireDeviceAuthorizationUrl,
  type AuthorizationDeps,
  type AuthorizationPlan,
} from './authorize.js';
import { loadCheckedConfig } from './credentials.js';

export interface LoopbackFlowOptions {
  /** 0 / absent: a free port */
  redirectPort?: number;
  /** the URL to open, once the listener is up (print it; open a browser) */
  onUrl(url: string, redirectUri: string): void;
  /** lines the user pastes (the final redirect URL); absent: only the listener is waited for */
  pasted?: AsyncIterator<string>;
  /** a pasted line that is not a redirect URL: say why, then the next line is read */
  onBadPaste?(message: string): void;
  signal?: AbortSignal;
}

/**
 * Starts the loopback listener, announces the URL, and exchanges the code of whichever comes first:
 * the browser's redirect to the listener or a pasted redirect URL. A wrong state (either way) is
 * refused before any exchange; throws GrantError.
 */
export async function authorizeWithLoopback(
  client: TokenClient,
  plan: AuthorizationPlan,
  opts: LoopbackFlowOptions,
): Promise<AuthorizedTokens> {
  const state = newState();
  const redirect = await startLoopbackRedirect({
    expectedState: state,
    ...(opts.redirectPort !== undefined ? { port: opts.redirectPort } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
    context: { flavor: plan.flavor, clientId: plan.client.clientId, mailbox: plan.email, scope: plan.scope },
  });
  const stopPaste = new AbortController();
  try {
    const pending = beginAuthorization(plan, redirect.redirectUri, { state });
    opts.onUrl(pending.url, pending.redirectUri);
    const sources: Promise<string>[] = [redirect.code];
    if (opts.pasted) {
      const ctx = authorizationCodeContext({ ...planContext(plan), redirectUri: pending.redirectUri });
      sources.push(readPastedCode(opts.pasted, pending, ctx, stopPaste.signal, opts.onBadPaste));
    }
    const code = await Promise.race(sources);
    return await finishAuthorization(client, plan, pending, { code });
  } finally {
    stopPaste.abort();
    redirect.close();
  }
}

async function readPastedCode(
  lines: AsyncIterator<string>,
  expected: { redirectUri: string; state: string },
  ctx: ReturnType<typeof authorizationCodeContext>,
  stop: AbortSignal,
  onBad?: (message: string) => void,
): Promise<string> {
  for (;;) {
    const next = await lines.next();
    if (stop.aborted) return new Promise<string>(() => undefined); // the listener won
    if (next.done) return new Promise<string>(() => undefined); // stdin closed: the listener may still answer
    const line = next.value.trim();
    if (!line) continue;
    try {
      return codeFromPastedRedirect(line, expected, ctx);
    } catch (err) {
      // not our redirect URL at all: let the user paste again; a wrong state or a provider error ends it
      if (err instanceof GrantError && err.failure === 'bad_callback' && onBad) {
        onBad(`${err.reason}: ${err.hint}`);
        continue;
      }
      throw err;
    }
  }
}

export interface DeviceFlowOptions {
  /** show the user code and where to enter it */
  onCode(info: {
    userCode: string;
    verificationUri: string;
    verificationUriComplete?: string;
    expiresInSec: number;
  }): void;
  /** after each poll still pending; `slowDown` when the server asked to poll less often */
  onPending?(info: { intervalSec: number; slowDown: boolean }): void;
  signal?: AbortSignal;
}

/** RFC 8628: ask for a user code, show it, poll at the server's pace. Throws AuthorizationError / GrantError. */
export async function authorizeWithDevice(
  client: TokenClient,
  plan: AuthorizationPlan,
  opts: DeviceFlowOptions,
): Promise<AuthorizedTokens> {
  const deviceAuthorizationUrl = requireDeviceAuthorizationUrl(plan);
  const secret = plan.client.clientSecret !== undefined ? { clientSecret: plan.client.clientSecret } : {};
  const authorization = await requestDeviceAuthorization(client, {
    deviceAuthorizationUrl,
    clientId: plan.client.clientId,
    ...secret,
    scope: plan.scope,
    flavor: plan.flavor,
    mailbox: plan.email,
  });
  opts.onCode({
    userCode: authorization.userCode,
    verificationUri: authorization.verificationUri,
    ...(authorization.verificationUriComplete
      ? { verificationUriComplete: authorization.verificationUriComplete }
      : {}),
    expiresInSec: authorization.expiresInSec,
  });
  return pollDeviceToken(client, {
    tokenUrl: plan.tokenUrl,
    clientId: plan.client.clientId,
    ...secret,
    authorization,
    ...(opts.signal ? { signal: opts.signal } : {}),
    ...(opts.onPending ? { onPending: opts.onPending } : {}),
    flavor: plan.flavor,
    mailbox: plan.email,
    scope: plan.scope,
  });
}

/** What the command line needs to authorize against a config file: its snapshot and the dependencies. */
export interface CliAuthorization {
  config: Config;
  tokenClient: TokenClient;
  deps: AuthorizationDeps;
  close(): void;
}

/**
 * Loads and checks the config, opens a second handle on the proxy's state store (SQLite in WAL
 * mode: a running proxy keeps its own), an accounts file editor (the running proxy watches the file)
 * and a token client. `notify` rewrites the state dir's authorization signal, which a proxy on the
 * same state dir watches to adopt the new token at once.
 */
export async function openCliAuthorization(
  configFile: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CliAuthorization> {
  const { config } = await loadCheckedConfig(configFile, env);
  const store: StateStore = openStateStore({
    dir: config.state.dir,
    ...(config.state.secretKey !== undefined ? { secretKey: config.state.secretKey } : {}),
    log: silentLogger,
  });
  const tokenClient = new TokenClient({ timeoutMs: config.oauth.requestTimeoutMs });
  const editor = config.accountsFile
    ? new AccountsFileEditor(config.accountsFile, {
        validate: (raw) => validateAccount(raw, config.providers),
        apply: async () => {},
      })
    : undefined;
  return {
    config,
    tokenClient,
    deps: {
      config,
      store,
      tokenClient,
      ...(editor ? { editor } : {}),
      notify: () => signalAuthorization(config.state.dir),
    },
    close() {
      tokenClient.close();
      store.close();
    },
  };
}
