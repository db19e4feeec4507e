// Changes to the accounts file made by the admin API and the `accounts` CLI. Every change is
// serialized (one promise chain: concurrent calls never lose an update), re-reads the file, keeps
// its format (YAML with its comments, or JSON; a list or `{accounts: [...]}`), writes atomically
// (temp file in the same directory, fsync, rename; the file's mode is kept minus world access, new files get 0600)
// and then calls `apply()` so the running proxy picks the change up. The `email` arguments are
// normalised by the caller (shared/email.ts), at the admin API or the command line.

import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import YAML, { isMap, isSeq, type Document, type YAMLMap, type YAMLSeq } from 'yaml';
import type { AccountValidation } from '../config/accounts.js';
import type { AccountConfig } from '../config/types.js';
import { adminFailure, type AdminResult } from '../shared/admin-result.js';
import { normalizeEmail } from '../shared/email.js';
import { formatIssue, type Issue } from '../shared/issue.js';

export interface AccountsFileEditorOptions {
  /** validate one raw account: config's `validateAccount(raw, providers)` (tests pass their own) */
  validate: (raw: unknown) => AccountValidation;
  /** make the running proxy use the new file (the same snapshot swap as SIGHUP); no-op offline */
  apply: () => Promise<void>;
  /** test hook: runs after the temp file is written and synced, before the rename */
  beforeRename?: (tempFile: string) => Promise<void> | void;
}

export interface EditOptions {
  /**
   * Runs inside the serialized chain after validation and the duplicate/missing checks, before the
   * file is written (e.g. a token refresh for `?verify=true`). Return a failure to abort.
   */
  check?: (
    account: AccountConfig,
    previous?: Readonly<Record<string, unknown>>,
  ) => Promise<AdminResult | undefined | void>;
}

export interface ImportEntry {
  raw: unknown;
  /** where it came from, for messages (`line 3`, `accounts[2]`) */
  source?: string;
}

export interface ImportOutcome {
  added: string[];
  replaced: string[];
  /** already present and `replace` not set */
  skipped: string[];
  invalid: { source: string; issues: Issue[] }[];
}

/** An accounts file held as a YAML document so a rewrite keeps comments and layout. */
class AccountsDocument {
  private constructor(
    readonly doc: Document,
    readonly seq: YAMLSeq,
    readonly json: boolean,
  ) {}

  static parse(text: string, file: string): AccountsDocument {
    const json = file.endsWith('.json') || /^\s*[[{]/.test(text);
    const doc = YAML.parseDocument(text, { uniqueKeys: true });
    if (doc.errors.length)
      throw new Error(`${file} is not valid YAML/JSON: ${doc.errors[0]!.message.split('\n')[0]}`);
    let seq: unknown;
    if (doc.contents === null || doc.contents === undefined) {
      doc.contents = doc.createNode({ accounts: [] }) as never;
      seq = (doc.contents as unknown as { get(k: string, keep: true): unknown }).get('accounts', true);
    } else if (isSeq(doc.contents)) {
      seq = doc.contents;
    } else if (isMap(doc.contents)) {
      const map = doc.contents as YAMLMap<unknown, unknown>;
      seq = map.get('accounts', true);
      if (seq === undefined || seq === null || (YAML.isScalar(seq) && seq.value === null)) {
        seq = doc.createNode([]);
        map.set('accounts', seq);
      }
    }
    if (!isSeq(seq)) throw new Error(`${file}: expected a list of accounts or a mapping with "accounts:"`);
    return new AccountsDocument(doc, seq, json);
  }

  static empty(file: string): AccountsDocument {
    return AccountsDocument.parse(file.endsWith('.json') ? '{"accounts": []}' : 'accounts: []\n', file);
  }

  get length(): number {
    return this.seq.items.length;
  }

  /** index of the entry for `email` (normalised; the file's entries may be written in any case), or -1 */
  indexOf(email: string): number {
    return this.seq.items.findIndex((item) => {
      const e = isMap(item) ? item.get('email') : undefined;
      return typeof e === 'string' && normalizeEmail(e) === email;
    });
  }

  entry(i: number): Record<string, unknown> {
    return (this.seq.items[i] as { toJSON(): Record<string, unknown> }).toJSON();
  }

  push(value: object): void {
    this.seq.items.push(this.doc.createNode(value) as never);
  }

  replace(i: number, value: object): void {
    this.seq.items[i] = this.doc.createNode(value) as never;
  }

  remove(i: number): void {
    this.seq.items.splice(i, 1);
  }

  toString(): string {
    if (this.json) return JSON.stringify(this.doc.toJS(), null, 2) + '\n';
    // flow style for an emptied list, so it reads `accounts: []` rather than a bare key
    if (this.seq.items.length === 0) this.seq.flow = true;
    else this.seq.flow = false;
    return this.doc.toString({ lineWidth: 0 });
  }
}

/** The account as it is written to the file: only the keys that have values. */
function fileEntry(account: AccountConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(account)) if (v !== undefined) out[k] = v;
  return out;
}

export class AccountsFileEditor {
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly file: string,
    private readonly opts: AccountsFileEditorOptions,
  ) {}

  /** Add a new account; `duplicate` when the email exists. */
  add(raw: unknown, edit: EditOptions = {}): Promise<AdminResult> {
    return this.serialize(async () => {
      const v = this.validate(raw);
      if ('issues' in v) return v.failure;
      const doc = await this.read();
      if (doc.indexOf(v.account.email) >= 0) {
        return adminFailure('duplicate', `an account "${v.account.email}" already exists`);
      }
      const stop = await edit.check?.(v.account);
      if (stop && !stop.ok) return stop;
      doc.push(fileEntry(v.account));
      return this.commit(doc, v.account, v.warnings);
    });
  }

  /**
   * Change an existing account: the fields of `patch` replace the stored ones (`null` removes a
   * field), so changing a password does not need the refresh token again. `email` in the patch
   * must be absent or name the same account.
   */
  update(email: string, patch: unknown, edit: EditOptions = {}): Promise<AdminResult> {
    return this.serialize(async () => {
      if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
        return adminFailure('invalid', 'expected a JSON object with the fields to change', [
          { path: '', message: 'expected an object' },
        ]);
      }
      const doc = await this.read();
      const i = doc.indexOf(email);
      if (i < 0) return adminFailure('not_found', `no account "${email}"`);
      const merged: Record<string, unknown> = { ...doc.entry(i) };
      for (const [k, val] of Object.entries(patch)) {
        if (val === null) delete merged[k];
        else merged[k] = val;
      }
      if (typeof merged.email !== 'string' || normalizeEmail(merged.email) !== email) {
        return adminFailure('invalid', 'email cannot be changed: delete the account and add a new one', [
          { path: 'email', message: `must be "${email}" (the account being changed)` },
        ]);
      }
      const v = this.validate(merged);
      if ('issues' in v) return v.failure;
      const stop = await edit.check?.(v.account, doc.entry(i));
      if (stop && !stop.ok) return stop;
      doc.replace(i, fileEntry(v.account));
      return this.commit(doc, v.account, v.warnings);
    });
  }

  remove(email: string): Promise<AdminResult> {
    return this.serialize(async () => {
      const doc = await this.read();
      const i = doc.indexOf(email);
      if (i < 0) return adminFailure('not_found', `no account "${email}"`);
      doc.remove(i);
      return this.commit(doc, undefined, []);
    });
  }

  /** Add many accounts with one write (the `import` command). Invalid entries are reported, not written. */
  importMany(
    entries: readonly ImportEntry[],
    opts: { replace?: boolean; dryRun?: boolean } = {},
  ): Promise<ImportOutcome & { result: AdminResult }> {
    return this.serialize(async () => {
      const out: ImportOutcome = { added: [], replaced: [], skipped: [], invalid: [] };
      const doc = await this.read();
      entries.forEach((e, n) => {
        const v = this.validate(e.raw);
        if ('issues' in v) {
          out.invalid.push({ source: e.source ?? `entry ${n + 1}`, issues: v.failure.issues ?? [] });
          return;
        }
        const i = doc.indexOf(v.account.email);
        if (i >= 0 && !opts.replace) out.skipped.push(v.account.email);
        else if (i >= 0) {
          doc.replace(i, fileEntry(v.account));
          out.replaced.push(v.account.email);
        } else {
          doc.push(fileEntry(v.account));
          out.added.push(v.account.email);
        }
      });
      const changed = out.added.length + out.replaced.length > 0;
      const result: AdminResult =
        opts.dryRun || !changed ? { ok: true } : await this.commit(doc, undefined, []);
      return { ...out, result };
    });
  }

  /** The raw entries as stored (for `accounts list`). */
  async entries(): Promise<Record<string, unknown>[]> {
    const doc = await this.read();
    return Array.from({ length: doc.length }, (_, i) => doc.entry(i));
  }

  private serialize<T>(op: () => Promise<T>): Promise<T> {
    const run = this.tail.then(op, op);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private validate(
    raw: unknown,
  ): { account: AccountConfig; warnings: string[] } | { issues: true; failure: AdminResult & { ok: false } } {
    const r = this.opts.validate(raw);
    if (!r.ok) {
      const issues = [...r.issues];
      const first = issues[0];
      const error = first ? `invalid account: ${formatIssue(first)}` : 'invalid account';
      return { issues: true, failure: adminFailure('invalid', error, issues) };
    }
    return { account: r.account, warnings: r.warnings.map(formatIssue) };
  }

  private async read(): Promise<AccountsDocument> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return AccountsDocument.empty(this.file);
      throw err;
    }
    return AccountsDocument.parse(text, this.file);
  }

  private async commit(
    doc: AccountsDocument,
    account: AccountConfig | undefined,
    warnings: string[],
  ): Promise<AdminResult> {
    try {
      await writeFileAtomic(this.file, doc.toString(), this.opts.beforeRename);
    } catch (err) {
      return adminFailure('failed', `cannot write ${this.file}: ${(err as Error).message}`);
    }
    try {
      await this.opts.apply();
    } catch (err) {
      return adminFailure(
        'failed',
        `${this.file} was written but the change was not applied: ${(err as Error).message}`,
      );
    }
    return {
      ok: true,
      ...(account ? { body: publicAccount(account) } : {}),
      ...(warnings.length ? { warnings } : {}),
    };
  }
}

/** The fields of an account that may be shown (no secrets, no password hash). */
export function publicAccount(a: AccountConfig): Record<string, unknown> {
  return {
    email: a.email,
    provider: a.provider,
    hasPassword: a.passwordHash !== undefined || a.password !== undefined,
    ...(a.tenant !== undefined ? { tenant: a.tenant } : {}),
    ...(a.sourceAddress !== undefined ? { sourceAddress: a.sourceAddress } : {}),
    ...(a.maxConnections !== undefined ? { maxConnections: a.maxConnections } : {}),
    ...(a.messagesPerMinute !== undefined ? { messagesPerMinute: a.messagesPerMinute } : {}),
  };
}

/**
 * Replace `file` with `text` so a reader (or a crash) only ever sees the old or the new content:
 * write a temp file in the same directory, fsync it, rename it over the file, fsync the directory.
 * The file's owner and group permission bits are kept, never world access: it holds refresh
 * tokens and client secrets. A new file gets 0600.
 */
export async function writeFileAtomic(
  file: string,
  text: string,
  beforeRename?: (tempFile: string) => Promise<void> | void,
): Promise<void> {
  let mode = 0o600;
  try {
    mode = (await stat(file)).mode & 0o770;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let renamed = false;
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.chmod(mode); // the umask may have narrowed or the open may have widened it
      await fh.sync();
    } finally {
      await fh.close();
    }
    await beforeRename?.(tmp);
    await rename(tmp, file);
    renamed = true;
    try {
      const d = await open(dir, 'r');
      try {
        await d.sync();
      } finally {
        await d.close();
      }
    } catch {
      // directories cannot be fsynced on every platform; the rename is still atomic
    }
  } finally {
    if (!renamed) await rm(tmp, { force: true });
  }
}
