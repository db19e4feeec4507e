// The embedded state store (docs/design.md, "State"): cached access tokens and rotated refresh
// tokens in <dir>/state.db, one row per account. Secrets are sealed with AES-256-GCM under a key
// derived once at open. Emails are given normalised (shared/email.ts).
//
// better-sqlite3 is synchronous and runs on the event loop. That is acceptable here because writes
// are tiny and rare (about one per account per token lifetime, i.e. per hour) and reads happen at
// start-up and on reload, never on the per-message path.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import type { Logger } from '../shared/log.js';
import { DecryptError, SALT_LEN, deriveKey, fingerprint, open, seal, subkey } from './crypto.js';
import { onboardingLinkStore, type OnboardingLinkStore } from './onboarding-links.js';

export interface StoredAccessToken {
  token: string;
  /** epoch ms */
  expiresAt: number;
}

export interface StateStore {
  /**
   * `lineage` (optional): an opaque fingerprint of the credentials the token was issued for; when
   * given, a token stored under another lineage reads as absent (credentials changed while down).
   */
  getAccessToken(email: string, lineage?: string): StoredAccessToken | undefined;
  putAccessToken(email: string, token: string, expiresAt: number, lineage?: string): void;
  /** forget a cached access token (rejected upstream, or the account's credentials changed) */
  deleteAccessToken(email: string): void;
  /**
   * The latest rotated refresh token, only if its lineage started at `configuredRefreshToken`:
   * an operator who configures a new refresh token is never overridden by a stale rotated one.
   */
  getRotatedRefreshToken(email: string, configuredRefreshToken: string): string | undefined;
  putRotatedRefreshToken(email: string, configuredRefreshToken: string, newRefreshToken: string): void;
  /**
   * The refresh token of an account that has none in the config: the one `accounts authorize` (or
   * the web onboarding) obtained, or its latest rotation. A refresh token configured in the file is
   * a lineage of its own and never reads as this.
   */
  getAuthorizedRefreshToken(email: string): string | undefined;
  /** store (sealed, synced to disk) a new authorization, or the rotation of one */
  putAuthorizedRefreshToken(email: string, refreshToken: string): void;
  /** forget everything stored for the account */
  deleteAccount(email: string): void;
  /** delete the rows of every account not in `emails` (the configured ones); returns those deleted */
  retainAccounts(emails: Iterable<string>): string[];
  /** the web onboarding links (state/onboarding-links.ts); kept whatever the configured accounts */
  readonly onboardingLinks: OnboardingLinkStore;
  close(): void;
}

export interface OpenStateStoreOptions {
  dir: string;
  /** the operator's secret (32+ characters); absent: a generated key in <dir>/secret.key */
  secretKey?: string;
  log: Logger;
}

const KEY_FILE = 'secret.key';
const DB_FILE = 'state.db';
const KEY_CHECK_PLAINTEXT = 'xoauth2-proxy key check';
/**
 * refresh_origin of a refresh token that came from an authorization rather than from the config
 * (the origin of a rotation is the configured token's SHA-256 hex, which this never equals)
 */
const AUTHORIZED_ORIGIN = 'authorized';
/** 2: the account state columns of version 1 (written, never read) are gone */
const SCHEMA_VERSION = 2;
const DROPPED_COLUMNS = ['state', 'last_error', 'state_updated_at'];

interface AccountRow {
  access_token: Buffer | null;
  access_expires_at: number | null;
  access_origin: string | null;
  refresh_token: Buffer | null;
  refresh_origin: string | null;
}

function readOrCreateKeyFile(dir: string, log: Logger): string {
  const file = path.join(dir, KEY_FILE);
  const generated = randomBytes(32).toString('base64url');
  let created = false;
  try {
    // 'wx': exclusive create, so two processes starting at once cannot overwrite each other's key
    fs.writeFileSync(file, generated + '\n', { mode: 0o600, flag: 'wx' });
    created = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if (!created) {
    const st = fs.statSync(file);
    if ((st.mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
  }
  log.warn(
    { keyFile: file },
    created
      ? 'state.secretKey is not set: generated a random key for secrets at rest; back it up with the state dir or set state.secretKey'
      : 'state.secretKey is not set: using the generated key for secrets at rest',
  );
  const key = fs.readFileSync(file, 'utf8').trim();
  if (!key) throw new Error(`${file} is empty; delete it to generate a new key or set state.secretKey`);
  return key;
}

/**
 * Version 1 kept each account's token state (ok, error, needs_reauth) beside its secrets; nothing
 * read it. Drop those columns, and the rows that held nothing else.
 */
function migrate(db: Database.Database): void {
  const columns = new Set(
    db
      .prepare<[], { name: string }>('PRAGMA table_info(accounts)')
      .all()
      .map((c) => c.name),
  );
  const drop = DROPPED_COLUMNS.filter((c) => columns.has(c));
  if (drop.length) {
    db.transaction(() => {
      for (const c of drop) db.exec(`ALTER TABLE accounts DROP COLUMN ${c}`);
      db.exec('DELETE FROM accounts WHERE access_token IS NULL AND refresh_token IS NULL');
    })();
  }
  db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

export function openStateStore(opts: OpenStateStoreOptions): StateStore {
  const { dir, log } = opts;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const secret = opts.secretKey ?? readOrCreateKeyFile(dir, log);
  if (opts.secretKey !== undefined && opts.secretKey.length < 32) {
    log.warn('state.secretKey is shorter than 32 characters; use a longer secret');
  }

  const dbPath = path.join(dir, DB_FILE);
  const db = new Database(dbPath);
  try {
    fs.chmodSync(dbPath, 0o600);
  } catch {}
  db.pragma('journal_mode = WAL');
  // NORMAL (WAL): commits survive a crash of the process, and cost no fsync on the event loop, which
  // matters for warm-up writes of thousands of cached tokens. Rotated refresh tokens are the one
  // thing that must also survive a power loss: that write alone runs with FULL (below).
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 2000');
  db.exec(`
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS accounts (
      email TEXT PRIMARY KEY,
      access_token BLOB,
      access_expires_at INTEGER,
      access_origin TEXT,
      refresh_token BLOB,
      refresh_origin TEXT
    );
  `);
  migrate(db);

  const getMeta = db.prepare<[string], { value: Buffer }>('SELECT value FROM meta WHERE key = ?');
  const putMeta = db.prepare<[string, Buffer]>(
    'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
  );

  let salt = getMeta.get('kdf_salt')?.value;
  if (!salt) {
    salt = randomBytes(SALT_LEN);
    putMeta.run('kdf_salt', salt);
  }
  const key = deriveKey(secret, salt);

  let warnedUndecryptable = false;
  const warnUndecryptable = () => {
    if (warnedUndecryptable) return;
    warnedUndecryptable = true;
    log.warn(
      { stateDir: dir },
      'stored secrets cannot be decrypted with the current key (state.secretKey changed?); they are ignored and tokens will be fetched again',
    );
  };

  // Detect a changed key at open, then adopt the current key so the warning is not repeated forever.
  const check = getMeta.get('key_check')?.value;
  if (check) {
    try {
      open(key, check, 'key_check');
    } catch {
      warnUndecryptable();
      putMeta.run('key_check', seal(key, KEY_CHECK_PLAINTEXT, 'key_check'));
    }
  } else {
    putMeta.run('key_check', seal(key, KEY_CHECK_PLAINTEXT, 'key_check'));
  }

  const aad = (email: string, column: string) => `${email}\0${column}`;
  const decrypt = (email: string, column: string, value: Buffer): string | undefined => {
    try {
      return open(key, value, aad(email, column));
    } catch (err) {
      if (!(err instanceof DecryptError)) throw err;
      warnUndecryptable();
      return undefined;
    }
  };

  const getRow = db.prepare<[string], AccountRow>('SELECT * FROM accounts WHERE email = ?');
  const putAccess = db.prepare<[string, Buffer, number, string | null]>(`
    INSERT INTO accounts (email, access_token, access_expires_at, access_origin) VALUES (?, ?, ?, ?)
    ON CONFLICT(email) DO UPDATE SET access_token = excluded.access_token,
      access_expires_at = excluded.access_expires_at, access_origin = excluded.access_origin`);
  const deleteAccess = db.prepare<[string]>(
    'UPDATE accounts SET access_token = NULL, access_expires_at = NULL, access_origin = NULL WHERE email = ?',
  );
  const putRefresh = db.prepare<[string, Buffer, string]>(`
    INSERT INTO accounts (email, refresh_token, refresh_origin) VALUES (?, ?, ?)
    ON CONFLICT(email) DO UPDATE SET refresh_token = excluded.refresh_token, refresh_origin = excluded.refresh_origin`);
  const deleteRow = db.prepare<[string]>('DELETE FROM accounts WHERE email = ?');
  const allEmails = db.prepare<[], { email: string }>('SELECT email FROM accounts');
  const retain = db.transaction((keep: ReadonlySet<string>): string[] => {
    const gone = allEmails
      .all()
      .map((r) => r.email)
      .filter((e) => !keep.has(e));
    for (const e of gone) deleteRow.run(e);
    return gone;
  });

  const onboardingLinks = onboardingLinkStore(db, subkey(key, 'onboarding-link'));

  let closed = false;
  return {
    onboardingLinks,
    getAccessToken(email, lineage) {
      const row = getRow.get(email);
      if (!row?.access_token || row.access_expires_at == null) return undefined;
      if (lineage !== undefined && row.access_origin !== lineage) return undefined;
      const token = decrypt(email, 'access_token', row.access_token);
      return token === undefined ? undefined : { token, expiresAt: row.access_expires_at };
    },
    putAccessToken(email, token, expiresAt, lineage) {
      putAccess.run(
        email,
        seal(key, token, aad(email, 'access_token')),
        Math.floor(expiresAt),
        lineage ?? null,
      );
    },
    deleteAccessToken(email) {
      deleteAccess.run(email);
    },
    getRotatedRefreshToken(email, configuredRefreshToken) {
      const row = getRow.get(email);
      if (!row?.refresh_token || row.refresh_origin !== fingerprint(configuredRefreshToken)) return undefined;
      return decrypt(email, 'refresh_token', row.refresh_token);
    },
    putRotatedRefreshToken(email, configuredRefreshToken, newRefreshToken) {
      db.pragma('synchronous = FULL');
      try {
        putRefresh.run(
          email,
          seal(key, newRefreshToken, aad(email, 'refresh_token')),
          fingerprint(configuredRefreshToken),
        );
      } finally {
        db.pragma('synchronous = NORMAL');
      }
    },
    getAuthorizedRefreshToken(email) {
      const row = getRow.get(email);
      if (!row?.refresh_token || row.refresh_origin !== AUTHORIZED_ORIGIN) return undefined;
      return decrypt(email, 'refresh_token', row.refresh_token);
    },
    putAuthorizedRefreshToken(email, refreshToken) {
      db.pragma('synchronous = FULL');
      try {
        putRefresh.run(email, seal(key, refreshToken, aad(email, 'refresh_token')), AUTHORIZED_ORIGIN);
      } finally {
        db.pragma('synchronous = NORMAL');
      }
    },
    deleteAccount(email) {
      deleteRow.run(email);
    },
    retainAccounts(emails) {
      return retain(new Set(emails));
    },
    close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}

/** What can be told about the stored accounts without the key (nothing secret): for `check`, `accounts list`. */
export interface StoredAccountsSummary {
  /** accounts holding a refresh token from an authorization (`accounts authorize`, the web flow) */
  authorized: ReadonlySet<string>;
  /** epoch ms the cached access token of each account expires */
  accessExpiresAt: ReadonlyMap<string, number>;
}

/**
 * Reads <dir>/state.db read-only, if it exists (undefined otherwise): creates nothing, needs no
 * key, decrypts nothing. A running proxy may hold the database open meanwhile (WAL).
 */
export function readStoredAccountsSummary(dir: string): StoredAccountsSummary | undefined {
  const dbPath = path.join(dir, DB_FILE);
  if (!fs.existsSync(dbPath)) return undefined;
  let db: Database.Database;
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true });
  } catch {
    return undefined;
  }
  try {
    db.pragma('busy_timeout = 2000');
    const rows = db
      .prepare<
        [],
        {
          email: string;
          has_refresh: number;
          refresh_origin: string | null;
          access_expires_at: number | null;
        }
      >(
        'SELECT email, refresh_token IS NOT NULL AS has_refresh, refresh_origin, access_expires_at FROM accounts',
      )
      .all();
    const authorized = new Set<string>();
    const accessExpiresAt = new Map<string, number>();
    for (const r of rows) {
      if (r.has_refresh && r.refresh_origin === AUTHORIZED_ORIGIN) authorized.add(r.email);
      if (r.access_expires_at != null) accessExpiresAt.set(r.email, r.access_expires_at);
    }
    return { authorized, accessExpiresAt };
  } catch {
    return undefined; // no accounts table yet
  } finally {
    db.close();
  }
}

/**
 * A file in the state dir that a process which stored an authorization rewrites, so a proxy running
 * on the same state dir adopts it at once (it watches the dir; Proxy in app/proxy.ts). It holds only
 * the time of the last authorization.
 */
export const AUTHORIZATION_SIGNAL_FILE = 'authorizations.signal';

export function signalAuthorization(dir: string): void {
  const file = path.join(dir, AUTHORIZATION_SIGNAL_FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${new Date().toISOString()}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}
