// The accounts of one config snapshot, by email (normalised: shared/email.ts), with client password
// checks.
// A registry is immutable like the snapshot it was built from; reload builds a new one.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AccountConfig, Config, ProviderConfig } from '../config/types.js';
import { verifyPassword, DUMMY_PASSWORD_HASH } from './password.js';

export interface Account {
  readonly email: string;
  readonly config: AccountConfig;
  readonly provider: ProviderConfig;
  /** why upstream connections for this account cannot be made (e.g. unusable sourceAddress) */
  readonly unusable?: string;
}

/** Verified (email, password) pairs, so clients that AUTH on every connection don't pay the KDF each time. */
class VerifiedCache {
  private readonly map = new Map<string, true>();
  /** KDF runs in flight, by the same key */
  readonly pending = new Map<string, Promise<boolean>>();
  constructor(private readonly max: number) {}
  has(key: string): boolean {
    return this.map.has(key);
  }
  add(key: string): void {
    if (this.map.size >= this.max) {
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) this.map.delete(oldest);
    }
    this.map.set(key, true);
  }
}

function cacheKey(email: string, password: string, secretRef: string): string {
  // Keyed on the stored hash too: a changed passwordHash invalidates old entries by itself.
  return createHash('sha256')
    .update(email)
    .update('\0')
    .update(password)
    .update('\0')
    .update(secretRef)
    .digest('base64');
}

export class AccountRegistry {
  private readonly byEmail = new Map<string, Account>();

  constructor(
    config: Config,
    unusable: ReadonlyMap<string, string> = new Map(),
    private readonly verified = new VerifiedCache(100_000),
  ) {
    for (const a of config.accounts) {
      const provider = config.providers[a.provider];
      if (!provider) continue; // the loader guarantees it exists
      this.byEmail.set(a.email, { email: a.email, config: a, provider, unusable: unusable.get(a.email) });
    }
  }

  /** A registry for a new snapshot that keeps the verified-credentials cache. */
  next(config: Config, unusable?: ReadonlyMap<string, string>): AccountRegistry {
    return new AccountRegistry(config, unusable, this.verified);
  }

  get(email: string): Account | undefined {
    return this.byEmail.get(email);
  }

  get size(): number {
    return this.byEmail.size;
  }

  all(): IterableIterator<Account> {
    return this.byEmail.values();
  }

  /**
   * The account if the password is right, else undefined. Unknown mailboxes and wrong passwords
   * cost the same KDF time, so timing does not reveal which mailboxes exist.
   */
  async authenticate(username: string, password: string): Promise<Account | undefined> {
    const account = this.get(username);
    const hash = account?.config.passwordHash;
    const plain = account?.config.password;
    if (account && (hash || plain !== undefined)) {
      const key = cacheKey(account.email, password, hash ?? 'plain:' + plain);
      if (this.verified.has(key)) return account;
      // Connections that AUTH with the same credentials at once share one KDF run.
      let check = this.verified.pending.get(key);
      if (!check) {
        check = (async () => {
          if (hash) return verifyPassword(password, hash);
          // Plain-text passwords still pay the KDF so their timing matches the hashed path.
          await verifyPassword(password, DUMMY_PASSWORD_HASH);
          return safeEqual(password, plain!);
        })().finally(() => this.verified.pending.delete(key));
        this.verified.pending.set(key, check);
      }
      if (await check) {
        this.verified.add(key);
        return account;
      }
      return undefined;
    }
    await verifyPassword(password, DUMMY_PASSWORD_HASH);
    return undefined;
  }
}

function safeEqual(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}
