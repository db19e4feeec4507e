// A backend for the HTTP tests: a real AccountsFileEditor on a temp file, a fake token check, and
// LiveStats. It is also the shape the proxy's backend takes.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AccountsFileEditor } from '../../src/account-admin/file-editor.js';
import { accountAdminOps } from '../../src/account-admin/admin-ops.js';
import type { AccountView, AdminBackend } from '../../src/http/server.js';
import { LiveStats } from '../../src/metrics/live.js';
import type { AccountValidation } from '../../src/config/accounts.js';
import type { AccountConfig } from '../../src/config/types.js';

export function validate(raw: unknown): AccountValidation {
  const r = raw as Record<string, unknown> | null;
  if (!r || typeof r !== 'object' || Array.isArray(r))
    return { ok: false, issues: [{ path: '', message: 'expected an object' }] };
  const issues = [];
  if (typeof r.email !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(r.email))
    issues.push({ path: 'email', message: 'expected an email address' });
  if (!['google', 'microsoft', 'sim'].includes(String(r.provider)))
    issues.push({ path: 'provider', message: `unknown provider "${String(r.provider)}"` });
  if (typeof r.clientId !== 'string') issues.push({ path: 'clientId', message: 'required' });
  if (typeof r.refreshToken !== 'string') issues.push({ path: 'refreshToken', message: 'required' });
  if (issues.length) return { ok: false, issues };
  const account = { ...r, email: (r.email as string).toLowerCase() } as unknown as AccountConfig;
  return { ok: true, account, warnings: [] };
}

export interface FakeBackend extends AdminBackend {
  ready: boolean;
  stats: LiveStats;
  views: AccountView[];
  reloadError?: string;
  /** emails a verification refresh ran for */
  refreshed: string[];
  dir: string;
  file: string;
  editor: AccountsFileEditor;
  cleanup(): Promise<void>;
}

export async function fakeBackend(initial: AccountView[] = []): Promise<FakeBackend> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xo-http-'));
  const file = path.join(dir, 'accounts.yaml');
  const stats = new LiveStats();
  // "apply" re-derives the views from the file, like the proxy's snapshot swap
  const editor: AccountsFileEditor = new AccountsFileEditor(file, {
    validate,
    apply: async () => {
      const entries = await editor.entries();
      b.views = [
        ...initial.filter((v) => !entries.some((e) => e.email === v.email)),
        ...entries.map((e) => ({
          email: String(e.email),
          provider: String(e.provider),
          state: 'ok' as const,
        })),
      ];
    },
  });
  // a token refresh that fails for the refresh token "revoked"
  const refreshed: string[] = [];
  const ops = accountAdminOps(editor, async (a) => {
    refreshed.push(a.email);
    if (a.refreshToken === 'revoked') throw new Error('invalid_grant (Token has been expired or revoked.)');
  });
  const b: FakeBackend = {
    ready: true,
    stats,
    views: [...initial],
    dir,
    file,
    editor,
    isReady: () => b.ready,
    listAccounts: () => b.views,
    refreshed,
    ...ops,
    reload: async () => (b.reloadError ? { ok: false, code: 'failed', error: b.reloadError } : { ok: true }),
    live: () => stats.snapshot(),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
  return b;
}
