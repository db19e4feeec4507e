// Every reply the proxy itself gives a client, each under a stable code (like undici's error codes):
// the one place a reply's SMTP code, enhanced code and text are written. Upstream verdicts are not
// here: they are passed through (relay/pass-through.ts). Every failure of the proxy's own is a 4xx,
// so the client keeps the message and retries (docs/design.md, principle 10); the 5xx here are the
// client's own mistakes. README.md's reply table is checked against this list by
// test/shared/replies.test.ts.
import { SmtpError, type SmtpReply } from './smtp-reply.js';

interface Entry {
  readonly code: number;
  readonly enhanced: string;
  /** the text, or how to build it from the reply's parameters */
  readonly text: string | ((...args: never[]) => string);
}

function seconds(ms: number): string {
  return String(Math.round(ms) / 1000);
}

const CATALOGUE = {
  // the client session (smtp/)
  AUTH_REQUIRED: { code: 530, enhanced: '5.7.0', text: 'Authentication required' },
  // one reply for an unknown mailbox and a wrong password: never say whether the mailbox exists
  AUTH_INVALID: { code: 535, enhanced: '5.7.8', text: 'Authentication credentials invalid' },
  AUTH_THROTTLED: {
    code: 421,
    enhanced: '4.7.0',
    text: 'Too many failed authentications from your address, try again later',
  },
  SENDER_NOT_A_MAILBOX: {
    code: 550,
    enhanced: '5.7.1',
    text: (from: string) => `Sender <${from}> is not a mailbox of this proxy`,
  },
  MESSAGE_TOO_BIG: {
    code: 552,
    enhanced: '5.3.4',
    text: (limit: number) => `Message exceeds the maximum size of ${limit} bytes`,
  },
  // the session gives this one itself (smtp.maxRecipients);
  // test/smtp/listener.test.ts checks that the wire carries exactly this
  TOO_MANY_RECIPIENTS: { code: 452, enhanced: '4.5.3', text: 'Error: too many recipients' },
  COMMAND_TIMEOUT: { code: 421, enhanced: '4.4.2', text: 'Error: timeout exceeded, no complete command' },
  DATA_TIMEOUT: { code: 421, enhanced: '4.4.2', text: 'Error: timeout exceeded, message data too slow' },
  SHUTTING_DOWN: { code: 421, enhanced: '4.3.2', text: 'Service shutting down, try again later' },

  // the transaction (relay/)
  OVERLOADED: {
    code: 452,
    enhanced: '4.3.1',
    text: 'Proxy busy: too many messages in flight, try again shortly',
  },
  INTERNAL_ERROR: {
    code: 451,
    enhanced: '4.3.0',
    text: 'Internal error in the proxy, message not relayed; try again',
  },
  ACCOUNT_UNUSABLE: {
    code: 451,
    enhanced: '4.4.1',
    text: (email: string, why: string) => `Mailbox ${email} cannot be relayed now: ${why}`,
  },

  // the upstream side (upstream/)
  UNKNOWN_ACCOUNT: {
    code: 451,
    enhanced: '4.3.0',
    text: (email: string) => `Mailbox ${email} is not configured for upstream relaying`,
  },
  BAD_ADDRESS: {
    code: 553,
    enhanced: '5.1.3',
    text: (address: string) => `Address ${JSON.stringify(address)} contains a line break`,
  },
  POOL_TIMEOUT: {
    code: 451,
    enhanced: '4.7.0',
    text: (email: string, ms: number) =>
      `No upstream connection for ${email} became free within ${seconds(ms)} s`,
  },
  RATE_LIMITED: {
    code: 451,
    enhanced: '4.7.0',
    text: (email: string, perMinute: number) =>
      `Mailbox ${email} reached its limit of ${perMinute} messages per minute`,
  },
  UPSTREAM_CONNECTION_LOST: {
    code: 451,
    enhanced: '4.4.2',
    text: 'Upstream connection lost before the message was accepted',
  },
  UPSTREAM_UNREACHABLE: {
    code: 451,
    enhanced: '4.4.1',
    text: (host: string, port: number, reason: string) => `Upstream ${host}:${port} unreachable: ${reason}`,
  },
  UPSTREAM_AUTH_REJECTED: {
    code: 451,
    enhanced: '4.7.0',
    text: (email: string) => `Upstream rejected the access token for ${email}`,
  },
  UPSTREAM_AUTH_TEMPFAIL: {
    code: 451,
    enhanced: '4.4.1',
    text: (host: string, port: number, upstream: string) =>
      `Upstream ${host}:${port} refused authentication temporarily: ${upstream}`,
  },
  UPSTREAM_AUTH_FAILED: {
    code: 451,
    enhanced: '4.7.0',
    text: (email: string, upstream: string) => `Upstream refused authentication for ${email}: ${upstream}`,
  },

  // access tokens (oauth/)
  NEEDS_REAUTH: {
    code: 451,
    enhanced: '4.7.0',
    text: (email: string) =>
      `Mailbox ${email} needs re-authorization: the refresh token was revoked or is invalid; ` +
      `run \`xoauth2-proxy accounts authorize ${email}\``,
  },
  // a refresh-token account with no refresh token in the file and none in the state store yet
  NEEDS_AUTHORIZATION: {
    code: 451,
    enhanced: '4.7.0',
    text: (email: string) =>
      `Mailbox ${email} is not authorized yet: run \`xoauth2-proxy accounts authorize ${email}\``,
  },
  // an app-only grant (client credentials, service account) refused: the text is built by
  // grantFailureText() of oauth/grants/errors.ts (or TokenManager.authRejected) and names the
  // mailbox, the provider's error and what the administrator must grant, in at most 480 octets
  GRANT_FAILED: {
    code: 451,
    enhanced: '4.7.0',
    text: (text: string) => text,
  },
  TOKEN_REFRESH_FAILED: {
    code: 451,
    enhanced: '4.4.3',
    text: (email: string, reason: string) => `Could not refresh the access token for ${email}: ${reason}`,
  },
} as const satisfies Record<string, Entry>;

type Catalogue = typeof CATALOGUE;

/** The stable code of a reply the proxy gives, e.g. "UPSTREAM_UNREACHABLE". */
export type ReplyCode = keyof Catalogue;

/** The parameters of a reply's text ([] for a fixed text). */
export type ReplyArgs<C extends ReplyCode> = Catalogue[C]['text'] extends (...args: infer A) => string
  ? A
  : [];

// Fixed replies are built once and shared: they are on the hot path of refusals.
const FIXED = new Map<ReplyCode, SmtpReply>();
for (const [name, e] of Object.entries(CATALOGUE) as [ReplyCode, Entry][]) {
  if (typeof e.text === 'string')
    FIXED.set(name, Object.freeze({ code: e.code, enhanced: e.enhanced, text: e.text }));
}

/** The reply the client gets for `code`. */
export function smtpReply<C extends ReplyCode>(code: C, ...args: ReplyArgs<C>): SmtpReply {
  const fixed = FIXED.get(code);
  if (fixed) return fixed;
  const e: Entry = CATALOGUE[code];
  const text = (e.text as (...a: ReplyArgs<C>) => string)(...args);
  return { code: e.code, enhanced: e.enhanced, text };
}

/** An error carrying the reply for `code`, to be thrown where the failure is found. */
export function smtpError<C extends ReplyCode>(code: C, ...args: ReplyArgs<C>): SmtpError {
  return new SmtpError(code, smtpReply(code, ...args));
}

/** The same, keeping what went wrong underneath as the error's `cause` (for the logs). */
export function smtpErrorCausedBy<C extends ReplyCode>(
  cause: unknown,
  code: C,
  ...args: ReplyArgs<C>
): SmtpError {
  return new SmtpError(code, smtpReply(code, ...args), { cause });
}

/** One line of the catalogue as documentation shows it: the text, or undefined when it has parameters. */
export interface CatalogueLine {
  name: ReplyCode;
  code: number;
  enhanced: string;
  text: string | undefined;
}

/** Every reply of the catalogue, in its order. */
export function replyCatalogue(): CatalogueLine[] {
  return (Object.entries(CATALOGUE) as [ReplyCode, Entry][]).map(([name, e]) => ({
    name,
    code: e.code,
    enhanced: e.enhanced,
    text: typeof e.text === 'string' ? e.text : undefined,
  }));
}
