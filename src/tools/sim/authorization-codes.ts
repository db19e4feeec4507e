// Authorization requests waiting on the consent page, and the codes issued when the user allows
// (RFC 6749 section 4.1.2): single use, short-lived, bound to the client, the redirect URI and the
// PKCE challenge (RFC 7636 section 4.4).
import { randomBytes } from 'node:crypto';

export interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  scope: string;
  state?: string;
  codeChallenge: string;
  /** the tenant of the authorize URL (microsoft), lower-cased */
  tenant?: string;
  loginHint?: string;
  /** Google: access_type=offline (a refresh token is issued only then) */
  offline: boolean;
  /** Google: prompt=consent (a refresh token is issued again for a client the user already allowed) */
  promptConsent: boolean;
}

export interface IssuedCode extends AuthorizationRequest {
  user: string;
  expiresAt: number;
  /** every token issued from this code shares it, so a replay can revoke them all */
  family: string;
  /** the user had not allowed this client before (Google issues a refresh token then) */
  firstConsent: boolean;
  used: boolean;
}

export type Redemption =
  | { kind: 'ok'; code: IssuedCode }
  | { kind: 'unknown' }
  | { kind: 'expired'; code: IssuedCode }
  | { kind: 'replayed'; code: IssuedCode };

/** How long a consent page stays usable. */
const CONSENT_TTL_MS = 10 * 60_000;
/** How long a code is remembered after it expires, so a late replay is still recognised. */
const REMEMBER_MS = 60 * 60_000;

export class AuthorizationCodes {
  private readonly pending = new Map<string, { req: AuthorizationRequest; expiresAt: number }>();
  private readonly codes = new Map<string, IssuedCode>();
  issued = 0;

  /** A consent page for this request; its id travels in the page's form. */
  startConsent(req: AuthorizationRequest): string {
    this.sweep();
    const id = randomBytes(16).toString('base64url');
    this.pending.set(id, { req, expiresAt: Date.now() + CONSENT_TTL_MS });
    return id;
  }

  consent(id: string): AuthorizationRequest | undefined {
    const p = this.pending.get(id);
    if (!p || p.expiresAt <= Date.now()) return undefined;
    return p.req;
  }

  /** The user answered: the page cannot be submitted again. */
  endConsent(id: string): void {
    this.pending.delete(id);
  }

  issue(req: AuthorizationRequest, user: string, lifetimeMs: number, firstConsent: boolean): string {
    const code = 'simac.' + randomBytes(32).toString('base64url');
    this.codes.set(code, {
      ...req,
      user,
      firstConsent,
      expiresAt: Date.now() + lifetimeMs,
      family: 'fam.' + randomBytes(12).toString('base64url'),
      used: false,
    });
    this.issued++;
    return code;
  }

  /** Presenting a code uses it up, whatever the outcome of the rest of the request. */
  redeem(code: string): Redemption {
    const rec = this.codes.get(code);
    if (!rec) return { kind: 'unknown' };
    if (rec.used) return { kind: 'replayed', code: rec };
    rec.used = true;
    if (rec.expiresAt <= Date.now()) return { kind: 'expired', code: rec };
    return { kind: 'ok', code: rec };
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) if (p.expiresAt <= now) this.pending.delete(id);
    for (const [code, rec] of this.codes) if (rec.expiresAt + REMEMBER_MS <= now) this.codes.delete(code);
  }
}
