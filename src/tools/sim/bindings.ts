// Refresh tokens issued by the interactive flows are bound to the client they were issued to
// (RFC 6749 section 6) and to the grant they came from, so a replayed authorization code can revoke
// every token issued from it (section 10.5). The stateless `simrt.` tokens tests make up have none.
export interface Binding {
  clientId: string;
  user: string;
  /** the scope granted */
  scope: string;
  family: string;
}

export class RefreshBindings {
  private readonly bindings = new Map<string, Binding>();
  private readonly families = new Map<string, Set<string>>();
  /** `clientId \n user` pairs the user has consented to (Google: no new refresh token without prompt=consent) */
  private readonly consents = new Set<string>();

  bind(refreshToken: string, b: Binding): void {
    this.bindings.set(refreshToken, b);
    let f = this.families.get(b.family);
    if (!f) this.families.set(b.family, (f = new Set()));
    f.add(refreshToken);
  }

  get(refreshToken: string): Binding | undefined {
    return this.bindings.get(refreshToken);
  }

  /** Rotation: the fresh token inherits the binding; the old one is already revoked. */
  move(old: string, fresh: string): void {
    const b = this.bindings.get(old);
    if (!b) return;
    this.bindings.delete(old);
    this.families.get(b.family)?.delete(old);
    this.bind(fresh, b);
  }

  familyTokens(family: string): string[] {
    return [...(this.families.get(family) ?? [])];
  }

  hasConsent(clientId: string, user: string): boolean {
    return this.consents.has(`${clientId}\n${user}`);
  }

  recordConsent(clientId: string, user: string): void {
    this.consents.add(`${clientId}\n${user}`);
  }

  /** The user withdrew access: the next consent is a first one again. */
  forgetConsents(user: string): void {
    for (const key of this.consents) if (key.endsWith(`\n${user}`)) this.consents.delete(key);
  }
}
