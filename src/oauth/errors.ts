// The replies a client gets when no access token can be had (SPEC section 3).
import { SmtpError, reply } from '../shared/smtp-reply.js';

export function needsReauthError(email: string): SmtpError {
  return new SmtpError(
    'NEEDS_REAUTH',
    reply(
      451,
      '4.7.0',
      `Mailbox ${email} needs re-authorization: the refresh token was revoked or is invalid`,
    ),
  );
}

export function refreshFailedError(email: string, reason: string): SmtpError {
  return new SmtpError(
    'TOKEN_REFRESH_FAILED',
    reply(451, '4.4.3', `Could not refresh the access token for ${email}: ${reason}`),
  );
}

export function unknownAccountError(email: string): SmtpError {
  return new SmtpError(
    'UNKNOWN_ACCOUNT',
    reply(451, '4.3.0', `No OAuth2 credentials are configured for ${email}`),
  );
}
