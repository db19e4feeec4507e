// The onboarding links an administrator created (table `onboarding_links` of state.db): what each
// link grants and whether it was used or revoked. The link itself is signed (app/onboarding-link.ts);
// this table is what makes it single-use and revocable. No secret is stored here: a link is a MAC
// over these fields, and the MAC key is derived from the data key, never stored.
import type Database from 'better-sqlite3';

export interface OnboardingLinkRecord {
  /** random, base64url */
  id: string;
  /** the mailbox the link is for; undefined: any mailbox (the owner types it) */
  email?: string;
  provider: string;
  /** epoch ms */
  createdAt: number;
  expiresAt: number;
  /** set when a flow claimed the link (cleared again if that flow failed) */
  usedAt?: number;
  /** the mailbox a finished flow authorized with it */
  usedBy?: string;
  revokedAt?: number;
}

export interface OnboardingLinkStore {
  /** the HMAC-SHA256 key of the links (derived from the data key with its own label) */
  readonly macKey: Buffer;
  add(link: OnboardingLinkRecord): void;
  get(id: string): OnboardingLinkRecord | undefined;
  /**
   * Marks the link used, atomically: true for exactly one caller, false when it is unknown, already
   * used or revoked. The flow that claimed it either finishes (finish) or gives it back (release).
   */
  claim(id: string, at: number): boolean;
  /** the mailbox the claiming flow authorized */
  finish(id: string, email: string): void;
  /** a claimed link whose flow failed before authorizing anything: usable again */
  release(id: string): void;
  /** false when unknown or already revoked */
  revoke(id: string, at: number): boolean;
  /** newest first */
  list(): OnboardingLinkRecord[];
  /** forget links that expired before `before` (epoch ms); returns how many */
  prune(before: number): number;
}

interface LinkRow {
  id: string;
  email: string | null;
  provider: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  used_by: string | null;
  revoked_at: number | null;
}

function record(r: LinkRow): OnboardingLinkRecord {
  return {
    id: r.id,
    ...(r.email !== null ? { email: r.email } : {}),
    provider: r.provider,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    ...(r.used_at !== null ? { usedAt: r.used_at } : {}),
    ...(r.used_by !== null ? { usedBy: r.used_by } : {}),
    ...(r.revoked_at !== null ? { revokedAt: r.revoked_at } : {}),
  };
}

export function onboardingLinkStore(db: Database.Database, macKey: Buffer): OnboardingLinkStore {
  db.exec(`
    CREATE TABLE IF NOT EXISTS onboarding_links (
      id TEXT PRIMARY KEY,
      email TEXT,
      provider TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      expires_at INTEGER NOT NULL,
      used_at INTEGER,
      used_by TEXT,
      revoked_at INTEGER
    );
  `);
  const insert = db.prepare<[string, string | null, string, number, number]>(
    'INSERT INTO onboarding_links (id, email, provider, created_at, expires_at) VALUES (?, ?, ?, ?, ?)',
  );
  const get = db.prepare<[string], LinkRow>('SELECT * FROM onboarding_links WHERE id = ?');
  const claim = db.prepare<[number, string]>(
    'UPDATE onboarding_links SET used_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL',
  );
  const finish = db.prepare<[string, string]>('UPDATE onboarding_links SET used_by = ? WHERE id = ?');
  const release = db.prepare<[string]>(
    'UPDATE onboarding_links SET used_at = NULL WHERE id = ? AND used_by IS NULL',
  );
  const revoke = db.prepare<[number, string]>(
    'UPDATE onboarding_links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL',
  );
  const list = db.prepare<[], LinkRow>('SELECT * FROM onboarding_links ORDER BY created_at DESC, id');
  const prune = db.prepare<[number]>('DELETE FROM onboarding_links WHERE expires_at < ?');

  return {
    macKey,
    add(l) {
      insert.run(l.id, l.email ?? null, l.provider, Math.floor(l.createdAt), Math.floor(l.expiresAt));
    },
    get(id) {
      const row = get.get(id);
      return row ? record(row) : undefined;
    },
    claim: (id, at) => claim.run(Math.floor(at), id).changes === 1,
    finish(id, email) {
      finish.run(email, id);
    },
    release(id) {
      release.run(id);
    },
    revoke: (id, at) => revoke.run(Math.floor(at), id).changes === 1,
    list: () => list.all().map(record),
    prune: (before) => prune.run(Math.floor(before)).changes,
  };
}
