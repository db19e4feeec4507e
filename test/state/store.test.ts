import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import {
  AUTHORIZATION_SIGNAL_FILE,
  readStoredAccountsSummary,
  signalAuthorization,
} from '../../src/state/store.js';
import { storeFixture } from './store-fixture.js';

const { tmpDir, open } = storeFixture('xo2-state-');

/** a pino logger that keeps its lines */
function captureLogger() {
  const lines: any[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines };
}

/** the emails with a row in state.db, read by a connection of the test's own */
function rowEmails(dir: string): string[] {
  const db = new Database(path.join(dir, 'state.db'), { readonly: true });
  try {
    return db
      .prepare<[], { email: string }>('SELECT email FROM accounts ORDER BY email')
      .all()
      .map((r) => r.email);
  } finally {
    db.close();
  }
}

function rawDbBytes(dir: string): Buffer {
  return Buffer.concat(
    ['state.db', 'state.db-wal']
      .filter((f) => fs.existsSync(path.join(dir, f)))
      .map((f) => fs.readFileSync(path.join(dir, f))),
  );
}

describe('state store', () => {
  it('stores access tokens and deletes accounts; creates the dir 0700', () => {
    const dir = tmpDir();
    const s = open(dir);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(s.getAccessToken('a@x.com')).toBeUndefined();
    s.putAccessToken('a@x.com', 'tok-1', 1234);
    expect(s.getAccessToken('a@x.com')).toEqual({ token: 'tok-1', expiresAt: 1234 });
    s.deleteAccessToken('a@x.com');
    expect(s.getAccessToken('a@x.com')).toBeUndefined();
    s.putAccessToken('a@x.com', 'tok-2', 1234);
    s.putRotatedRefreshToken('a@x.com', 'rt-1', 'rt-2');
    s.deleteAccount('a@x.com');
    expect(s.getAccessToken('a@x.com')).toBeUndefined();
    expect(s.getRotatedRefreshToken('a@x.com', 'rt-1')).toBeUndefined();
    expect(rowEmails(dir)).toEqual([]);
  });

  it('retainAccounts deletes every row of an account not kept, and says which', () => {
    const dir = tmpDir();
    const s = open(dir);
    for (const e of ['a@x.com', 'b@x.com', 'c@x.com']) {
      s.putAccessToken(e, `tok-${e}`, 5);
      s.putRotatedRefreshToken(e, `rt-${e}`, `rotated-${e}`);
    }
    expect(s.retainAccounts(['a@x.com', 'c@x.com', 'never-stored@x.com'])).toEqual(['b@x.com']);
    expect(rowEmails(dir)).toEqual(['a@x.com', 'c@x.com']);
    expect(s.getRotatedRefreshToken('a@x.com', 'rt-a@x.com')).toBe('rotated-a@x.com');
    expect(s.retainAccounts(['a@x.com', 'c@x.com'])).toEqual([]);
    expect(s.retainAccounts([]).sort()).toEqual(['a@x.com', 'c@x.com']);
    expect(rowEmails(dir)).toEqual([]);
  });

  it('opens a version 1 state.db: keeps its secrets, drops the account state it kept', () => {
    const dir = tmpDir();
    const s = open(dir);
    s.putAccessToken('a@x.com', 'tok-a', 5, 'lineage-a');
    s.putRotatedRefreshToken('a@x.com', 'rt-a', 'rotated-a');
    s.putAccessToken('b@x.com', 'tok-b', 6);
    s.close();
    // what version 1 wrote: state columns beside the secrets, and rows holding only a state
    const raw = new Database(path.join(dir, 'state.db'));
    raw.exec(`
      ALTER TABLE accounts ADD COLUMN state TEXT;
      ALTER TABLE accounts ADD COLUMN last_error TEXT;
      ALTER TABLE accounts ADD COLUMN state_updated_at INTEGER;
      UPDATE accounts SET state = 'ok', state_updated_at = 1 WHERE email = 'a@x.com';
      INSERT INTO accounts (email, state, last_error, state_updated_at)
        VALUES ('dead@x.com', 'needs_reauth', 'invalid_grant', 2);
    `);
    raw.pragma('user_version = 1');
    raw.close();

    const s2 = open(dir);
    expect(s2.getAccessToken('a@x.com', 'lineage-a')).toEqual({ token: 'tok-a', expiresAt: 5 });
    expect(s2.getRotatedRefreshToken('a@x.com', 'rt-a')).toBe('rotated-a');
    expect(s2.getAccessToken('b@x.com')?.token).toBe('tok-b');
    s2.close();
    const db = new Database(path.join(dir, 'state.db'), { readonly: true });
    try {
      const columns = db
        .prepare<[], { name: string }>('PRAGMA table_info(accounts)')
        .all()
        .map((c) => c.name);
      expect(columns).not.toContain('state');
      expect(columns).not.toContain('last_error');
      expect(columns).not.toContain('state_updated_at');
      expect(db.pragma('user_version', { simple: true })).toBe(2);
    } finally {
      db.close();
    }
    expect(rowEmails(dir)).toEqual(['a@x.com', 'b@x.com']);
    // and it opens again as it is
    expect(open(dir).getAccessToken('b@x.com')?.token).toBe('tok-b');
  });

  it('persists across reopen and keeps secrets encrypted at rest', () => {
    const dir = tmpDir();
    const s = open(dir);
    s.putAccessToken('a@x.com', 'ya29.ACCESS-TOKEN-PLAINTEXT', 99);
    s.putRotatedRefreshToken('a@x.com', 'configured-rt', '1//ROTATED-REFRESH-PLAINTEXT');
    s.close();
    const raw = rawDbBytes(dir);
    expect(raw.length).toBeGreaterThan(0);
    expect(raw.includes(Buffer.from('ACCESS-TOKEN-PLAINTEXT'))).toBe(false);
    expect(raw.includes(Buffer.from('ROTATED-REFRESH-PLAINTEXT'))).toBe(false);
    expect(raw.includes(Buffer.from('configured-rt'))).toBe(false);
    const s2 = open(dir);
    expect(s2.getAccessToken('a@x.com')?.token).toBe('ya29.ACCESS-TOKEN-PLAINTEXT');
    expect(s2.getRotatedRefreshToken('a@x.com', 'configured-rt')).toBe('1//ROTATED-REFRESH-PLAINTEXT');
  });

  it('reads an access token stored under another credential lineage as absent', () => {
    const s = open(tmpDir());
    s.putAccessToken('a@x.com', 'tok', 5, 'lineage-1');
    expect(s.getAccessToken('a@x.com', 'lineage-1')?.token).toBe('tok');
    expect(s.getAccessToken('a@x.com', 'lineage-2')).toBeUndefined();
    expect(s.getAccessToken('a@x.com')?.token).toBe('tok');
  });

  it('returns a rotated refresh token only for the lineage of the configured one', () => {
    const s = open(tmpDir());
    s.putRotatedRefreshToken('a@x.com', 'rt-1', 'rt-2');
    s.putRotatedRefreshToken('a@x.com', 'rt-1', 'rt-3'); // second rotation, same lineage
    expect(s.getRotatedRefreshToken('a@x.com', 'rt-1')).toBe('rt-3');
    // the operator configured a new refresh token: the stale rotation does not override it
    expect(s.getRotatedRefreshToken('a@x.com', 'rt-new')).toBeUndefined();
    expect(s.getRotatedRefreshToken('b@x.com', 'rt-1')).toBeUndefined();
  });

  it('without secretKey: generates secret.key 0600, warns without the key, and reuses it', () => {
    const dir = tmpDir();
    const { log, lines } = captureLogger();
    const s = open(dir, null, log);
    const keyFile = path.join(dir, 'secret.key');
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    const key = fs.readFileSync(keyFile, 'utf8').trim();
    expect(key.length).toBeGreaterThanOrEqual(32);
    expect(lines.some((l) => l.level === 40 && /secretKey is not set/.test(l.msg))).toBe(true);
    expect(JSON.stringify(lines)).not.toContain(key);
    s.putAccessToken('a@x.com', 'tok', 5);
    s.close();
    const s2 = open(dir, null, log);
    expect(fs.readFileSync(keyFile, 'utf8').trim()).toBe(key);
    expect(s2.getAccessToken('a@x.com')?.token).toBe('tok');
  });

  it('a wrong key does not crash: rows read as absent, one warning', () => {
    const dir = tmpDir();
    const s = open(dir);
    s.putAccessToken('a@x.com', 'tok-a', 5);
    s.putAccessToken('b@x.com', 'tok-b', 5);
    s.putRotatedRefreshToken('a@x.com', 'rt-1', 'rt-2');
    s.close();
    const { log, lines } = captureLogger();
    const s2 = open(dir, 'another-secret-key-of-32-characters-or-more', log);
    expect(s2.getAccessToken('a@x.com')).toBeUndefined();
    expect(s2.getAccessToken('b@x.com')).toBeUndefined();
    expect(s2.getRotatedRefreshToken('a@x.com', 'rt-1')).toBeUndefined();
    expect(lines.filter((l) => /cannot be decrypted/.test(l.msg))).toHaveLength(1);
    // new writes under the new key work
    s2.putAccessToken('a@x.com', 'tok-new', 6);
    expect(s2.getAccessToken('a@x.com')?.token).toBe('tok-new');
  });

  it('keeps an authorization apart from the lineages of configured refresh tokens, sealed', () => {
    const dir = tmpDir();
    const s = open(dir);
    s.putAuthorizedRefreshToken('a@x.com', 'rt-authorized-secret');
    expect(s.getAuthorizedRefreshToken('a@x.com')).toBe('rt-authorized-secret');
    // a configured token's rotation lineage never reads as the authorization, nor the reverse
    expect(s.getRotatedRefreshToken('a@x.com', 'authorized')).toBeUndefined();
    s.putRotatedRefreshToken('b@x.com', 'rt-configured', 'rt-rotated');
    expect(s.getAuthorizedRefreshToken('b@x.com')).toBeUndefined();
    s.putAccessToken('a@x.com', 'at-1', 1_700_000_000_000);
    const raw = fs.readdirSync(dir).map((f) => fs.readFileSync(path.join(dir, f)));
    for (const b of raw) expect(b.includes('rt-authorized-secret')).toBe(false);
    // what can be told without the key: who is authorized, when access tokens expire
    expect(readStoredAccountsSummary(dir)).toEqual({
      authorized: new Set(['a@x.com']),
      accessExpiresAt: new Map([['a@x.com', 1_700_000_000_000]]),
    });
    expect(readStoredAccountsSummary(path.join(dir, 'nowhere'))).toBeUndefined();
  });

  it('signalAuthorization rewrites the signal file (0600) in the state dir', () => {
    const dir = tmpDir();
    open(dir);
    signalAuthorization(dir);
    const file = path.join(dir, AUTHORIZATION_SIGNAL_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, 'utf8')).toMatch(/^\d{4}-\d\d-\d\dT/);
  });
});
