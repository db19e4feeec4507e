// The local failures of the upstream side, each a temporary reply (SPEC section 3): the client keeps
// the message and retries. Stable codes let the relay and tests tell them apart.
import { SmtpError, reply } from '../shared/smtp-reply.js';

function seconds(ms: number): string {
  return String(Math.round(ms) / 1000);
}

export const upstreamErrors = {
  poolTimeout: (email: string, ms: number) =>
    new SmtpError(
      'POOL_TIMEOUT',
      reply(451, '4.7.0', `No upstream connection for ${email} became free within ${seconds(ms)} s`),
    ),
  rateLimited: (email: string, perMinute: number) =>
    new SmtpError(
      'RATE_LIMITED',
      reply(451, '4.7.0', `Mailbox ${email} reached its limit of ${perMinute} messages per minute`),
    ),
  connectionLost: (cause: unknown) =>
    new SmtpError(
      'UPSTREAM_CONNECTION_LOST',
      reply(451, '4.4.2', 'Upstream connection lost before the message was accepted'),
      { cause },
    ),
  unreachable: (host: string, port: number, reason: string, cause?: unknown) =>
    new SmtpError(
      'UPSTREAM_UNREACHABLE',
      reply(451, '4.4.1', `Upstream ${host}:${port} unreachable: ${reason}`),
      {
        cause,
      },
    ),
  tokenRejected: (email: string) =>
    new SmtpError(
      'UPSTREAM_AUTH_REJECTED',
      reply(451, '4.7.0', `Upstream rejected the access token for ${email}`),
    ),
  authTemporary: (host: string, port: number, upstream: string) =>
    new SmtpError(
      'UPSTREAM_AUTH_TEMPFAIL',
      reply(451, '4.4.1', `Upstream ${host}:${port} refused authentication temporarily: ${upstream}`),
    ),
  authFailed: (email: string, upstream: string) =>
    new SmtpError(
      'UPSTREAM_AUTH_FAILED',
      reply(451, '4.7.0', `Upstream refused authentication for ${email}: ${upstream}`),
    ),
  unknownAccount: (email: string) =>
    new SmtpError(
      'UNKNOWN_ACCOUNT',
      reply(451, '4.3.0', `Mailbox ${email} is not configured for upstream relaying`),
    ),
  badAddress: (address: string) =>
    new SmtpError(
      'BAD_ADDRESS',
      reply(553, '5.1.3', `Address ${JSON.stringify(address)} contains a line break`),
    ),
  shuttingDown: () =>
    new SmtpError('SHUTTING_DOWN', reply(421, '4.3.2', 'Service shutting down, try again later')),
};
