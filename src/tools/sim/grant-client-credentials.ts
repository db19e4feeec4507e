// The client credentials grant (RFC 6749 section 4.4) as Microsoft serves app-only access to
// Exchange Online: per tenant, scope `https://outlook.office365.com/.default`, the app
// authenticated by a secret or a certificate (private_key_jwt). The token names no user; SMTP
// accepts it for the mailboxes the app was granted (Add-MailboxPermission).
import { authenticateClient } from './client-auth.js';
import { isConfidential, matchesMailbox } from './directory.js';
import { isAppSmtpScope, specificTenant, type OAuthContext } from './oauth-context.js';
import { aadError, missing, missingClientCredentials, oauthError, type TokenReply } from './oauth-errors.js';
import { tokenSuccess, type TokenRequest } from './token.js';

export function clientCredentialsGrant(ctx: OAuthContext, req: TokenRequest): TokenReply {
  const { style, directory } = ctx;
  if (directory.clientsOpen) return unregisteredClientCredentials(ctx, req.form);
  const ms = style === 'microsoft';
  const { tenant } = req.endpoint;
  if (ms && tenant && !specificTenant(tenant))
    return aadError(
      400,
      'invalid_request',
      50059,
      'No tenant-identifying information found in either the request or implied by any provided credentials.',
      undefined,
      'no_tenant',
    );
  const auth = authenticateClient(ctx, req.form, req.authorization, req.endpoint);
  if (!auth.ok) return auth.reply;
  const client = auth.client!;
  if (!isConfidential(client)) return missingClientCredentials(style);
  if (!ms)
    return oauthError(
      400,
      'unauthorized_client',
      'The client is not authorized to use the client_credentials grant.',
      client.clientId,
      'grant_not_allowed',
    );
  const scope = req.form.get('scope');
  if (!scope) return missing(style, 'scope', client.clientId);
  if (!isAppSmtpScope(scope))
    return aadError(
      400,
      'invalid_scope',
      70011,
      `The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope ${scope} is not valid.`,
      client.clientId,
      'invalid_scope',
    );
  const clientId = client.clientId;
  // Looked up at every AUTH: permissions granted or withdrawn later apply to tokens already issued.
  const allows = (mailbox: string) => {
    const app = directory.clients.get(clientId);
    return app !== undefined && matchesMailbox(app.mailboxes, mailbox);
  };
  const reply = tokenSuccess(ctx, req.form, undefined, { allows });
  delete reply.body.scope;
  reply.user = clientId;
  return reply;
}

/**
 * While no client is registered: any client_id with any secret or assertion. An email client_id
 * makes a token for that user only; any other (an Azure app GUID) an application token valid for
 * every user whose grant has not been withdrawn (how the simulator always behaved).
 */
function unregisteredClientCredentials(ctx: OAuthContext, form: URLSearchParams): TokenReply {
  const { style, state } = ctx;
  const clientId = form.get('client_id');
  if (!clientId) return missing(style, 'client_id');
  const user = clientId.includes('@') ? clientId.toLowerCase() : undefined;
  if (!form.get('client_secret') && !form.get('client_assertion')) {
    return oauthError(
      401,
      'invalid_client',
      "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
      user ?? clientId,
    );
  }
  if (user && state.userRevoked(user))
    return oauthError(400, 'invalid_grant', 'The user grant was revoked.', user);
  return tokenSuccess(ctx, form, user, {});
}
