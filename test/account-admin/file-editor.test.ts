import { mkdtemp, readdir, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AccountsFileEditor, writeFileAtomic } from '../../src/account-admin/file-editor.js';
import type { AccountValidation } from '../../src/config/accounts.js';
import type { AccountConfig } from '../../src/config/types.js';

// A small validator of our own, so these tests do not depend on the config module's progress.
function validate(raw: unknown): AccountValidation {
  const r = raw as Record<string, unknown>;
  const issues = [];
  if (typeof r?.email !== 'string' || !r.email.includes('@'))
    issues.push({ path: 'email', message: 'expected an email' });
  if (r?.provider !== 'google' && r?.provider !== 'microsoft')
    issues.push({ path: 'provider', message: `unknown provider "${String(r?.provider)}"` });
  if (typeof r?.refreshToken !== 'string') issues.push({ path: 'refreshToken', message: 'required' });
  if (issues.length) return { ok: false, issues };
  const account = { ...r, email: (r.email as string).toLowerCase(), clientId: String(r.clientId ?? 'cid') };
  return { ok: true, account: account as unknown as AccountConfig, warnings: [] };
}

const acct = (email: string, extra: Record<string, unknown> = {}) => ({
  email,
  provider: 'google',
  clientId: 'cid',
  refreshToken: 'rt-' + email,
  ...extra,
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'xo-editor-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function emailsIn(file: string): Promise<string[]> {
  const doc = YAML.parse(await readFile(file, 'utf8'));
  const list = Array.isArray(doc) ? doc : doc.accounts;
  return list.map((a: { email: string }) => a.email);
}

describe('AccountsFileEditor', () => {
  it('50 concurrent adds are all present afterwards, and apply ran after each write', async () => {
    const file = path.join(dir, 'accounts.yaml');
    await writeFile(
      file,
      '# operators keep notes here\naccounts:\n  - email: first@example.com\n    provider: google\n    clientId: c\n    refreshToken: r\n',
    );
    let applied = 0;
    const editor = new AccountsFileEditor(file, { validate, apply: async () => void applied++ });
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => editor.add(acct(`user${i}@example.com`))),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    const emails = await emailsIn(file);
    expect(emails).toHaveLength(51);
    for (let i = 0; i < 50; i++) expect(emails).toContain(`user${i}@example.com`);
    expect(applied).toBe(50);
    // the YAML comment survives rewrites
    expect(await readFile(file, 'utf8')).toMatch(/^# operators keep notes here/);
  });

  it('mixed concurrent add/update/remove never lose an update', async () => {
    const file = path.join(dir, 'accounts.json');
    await writeFile(file, JSON.stringify([acct('a@x.io'), acct('b@x.io')]));
    const editor = new AccountsFileEditor(file, { validate, apply: async () => {} });
    const ops = await Promise.all([
      editor.update('a@x.io', { maxConnections: 7 }),
      editor.add(acct('c@x.io')),
      editor.remove('b@x.io'),
      editor.add(acct('d@x.io')),
      editor.update('a@x.io', { messagesPerMinute: 5 }),
    ]);
    expect(ops.map((r) => r.ok)).toEqual([true, true, true, true, true]);
    const text = await readFile(file, 'utf8');
    const doc = JSON.parse(text); // still JSON, still a bare list
    expect(Array.isArray(doc)).toBe(true);
    expect(doc.map((a: { email: string }) => a.email)).toEqual(['a@x.io', 'c@x.io', 'd@x.io']);
    expect(doc[0]).toMatchObject({ maxConnections: 7, messagesPerMinute: 5, refreshToken: 'rt-a@x.io' });
  });

  it('duplicate -> duplicate (409), missing -> not_found (404), invalid -> issues naming the field', async () => {
    const file = path.join(dir, 'accounts.yaml');
    const editor = new AccountsFileEditor(file, { validate, apply: async () => {} });
    expect((await editor.add(acct('Dup@Example.com'))).ok).toBe(true);
    const dup = await editor.add(acct('dup@example.COM'));
    expect(dup).toMatchObject({ ok: false, code: 'duplicate' });
    expect(await editor.remove('nobody@example.com')).toMatchObject({ ok: false, code: 'not_found' });
    expect(await editor.update('nobody@example.com', { maxConnections: 1 })).toMatchObject({
      ok: false,
      code: 'not_found',
    });
    const bad = await editor.add({ ...acct('x@example.com'), provider: 'gmial' });
    expect(bad).toMatchObject({ ok: false, code: 'invalid', issues: [{ path: 'provider' }] });
    const rename = await editor.update('dup@example.com', { email: 'other@example.com' });
    expect(rename).toMatchObject({ ok: false, code: 'invalid', issues: [{ path: 'email' }] });
    // a new file is created wrapped, with mode 0600
    expect(YAML.parse(await readFile(file, 'utf8'))).toEqual({
      accounts: [{ ...acct('Dup@Example.com'), email: 'dup@example.com' }],
    });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('update removes fields set to null; the check hook can veto inside the chain', async () => {
    const file = path.join(dir, 'accounts.yaml');
    const editor = new AccountsFileEditor(file, { validate, apply: async () => {} });
    await editor.add(acct('p@example.com', { password: 'plain' }));
    await editor.update('p@example.com', { password: null, passwordHash: 'h' });
    expect(YAML.parse(await readFile(file, 'utf8')).accounts[0]).toEqual(
      acct('p@example.com', { passwordHash: 'h' }),
    );
    const vetoed = await editor.add(acct('q@example.com'), {
      check: async () => ({ ok: false, code: 'verify_failed', error: 'token refresh failed: invalid_grant' }),
    });
    expect(vetoed).toMatchObject({ ok: false, code: 'verify_failed' });
    expect(await emailsIn(file)).toEqual(['p@example.com']);
  });

  it('keeps the existing file mode', async () => {
    const file = path.join(dir, 'accounts.yaml');
    await writeFile(file, 'accounts: []\n');
    await chmod(file, 0o640);
    const editor = new AccountsFileEditor(file, { validate, apply: async () => {} });
    await editor.add(acct('m@example.com'));
    expect((await stat(file)).mode & 0o777).toBe(0o640);
  });

  it('never leaves the file world-readable: it holds refresh tokens and client secrets', async () => {
    const file = path.join(dir, 'accounts.yaml');
    await writeFile(file, 'accounts: []\n');
    await chmod(file, 0o644);
    const editor = new AccountsFileEditor(file, { validate, apply: async () => {} });
    await editor.add(acct('w@example.com'));
    expect((await stat(file)).mode & 0o777).toBe(0o640);
  });

  it('a failure mid-write leaves the old file whole and no temp file behind', async () => {
    const file = path.join(dir, 'accounts.yaml');
    const original = YAML.stringify({ accounts: [acct('keep@example.com')] });
    await writeFile(file, original, { mode: 0o600 });
    let tempSeen = '';
    const editor = new AccountsFileEditor(file, {
      validate,
      apply: async () => {
        throw new Error('must not be applied');
      },
      beforeRename: async (tmp) => {
        tempSeen = tmp;
        // the temp file is complete and in the same directory before the rename...
        expect(path.dirname(tmp)).toBe(dir);
        expect(await emailsIn(tmp)).toEqual(['keep@example.com', 'new@example.com']);
        throw new Error('simulated crash before rename');
      },
    });
    const r = await editor.add(acct('new@example.com'));
    expect(r).toMatchObject({ ok: false, code: 'failed' });
    expect(r.ok || r.error).toMatch(/simulated crash/);
    expect(tempSeen).not.toBe('');
    // ...and the real file was never touched
    expect(await readFile(file, 'utf8')).toBe(original);
    expect(await readdir(dir)).toEqual(['accounts.yaml']);
  });

  it('a concurrent reader never sees a partial file while writes happen', async () => {
    const file = path.join(dir, 'accounts.yaml');
    // big entries so a non-atomic write would be observable mid-way
    const pad = 'x'.repeat(4000);
    await writeFile(file, YAML.stringify({ accounts: [acct('seed@example.com', { refreshToken: pad })] }));
    const editor = new AccountsFileEditor(file, { validate, apply: async () => {} });
    let stop = false;
    let reads = 0;
    const reader = (async () => {
      while (!stop) {
        const text = await readFile(file, 'utf8');
        const doc = YAML.parse(text);
        expect(Array.isArray(doc.accounts)).toBe(true);
        expect(text.endsWith('\n')).toBe(true);
        reads++;
      }
    })();
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => editor.add(acct(`r${i}@example.com`, { refreshToken: pad }))),
    );
    stop = true;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(await emailsIn(file)).toHaveLength(41);
  });

  it('apply failure is reported as failed, saying the file was written', async () => {
    const file = path.join(dir, 'accounts.yaml');
    const editor = new AccountsFileEditor(file, {
      validate,
      apply: async () => {
        throw new Error('reload rejected: accounts[0].provider: unknown provider');
      },
    });
    const r = await editor.add(acct('z@example.com'));
    expect(r).toMatchObject({ ok: false, code: 'failed' });
    expect(r.ok || r.error).toMatch(/written but the change was not applied: reload rejected/);
  });

  it('importMany writes once, skips existing unless replace, reports invalid entries', async () => {
    const file = path.join(dir, 'accounts.yaml');
    const editor = new AccountsFileEditor(file, { validate, apply: async () => {} });
    await editor.add(acct('old@example.com', { clientId: 'old' }));
    const entries = [
      { raw: acct('old@example.com', { clientId: 'new' }), source: 'line 1' },
      { raw: acct('n1@example.com'), source: 'line 2' },
      { raw: { email: 'bad' }, source: 'line 3' },
    ];
    const dry = await editor.importMany(entries, { dryRun: true });
    expect(dry.added).toEqual(['n1@example.com']);
    expect(await emailsIn(file)).toEqual(['old@example.com']);
    const r = await editor.importMany(entries);
    expect(r).toMatchObject({ added: ['n1@example.com'], skipped: ['old@example.com'], replaced: [] });
    expect(r.invalid[0]!.source).toBe('line 3');
    const r2 = await editor.importMany(entries, { replace: true });
    expect(r2.replaced).toEqual(['old@example.com', 'n1@example.com']);
    expect(YAML.parse(await readFile(file, 'utf8')).accounts[0].clientId).toBe('new');
  });
});

describe('writeFileAtomic', () => {
  it('creates new files 0600 regardless of umask-friendly defaults', async () => {
    const file = path.join(dir, 'new.yaml');
    await writeFileAtomic(file, 'a: 1\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).toBe('a: 1\n');
  });
});
