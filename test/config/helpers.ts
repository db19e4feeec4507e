import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import type { Issue } from '../../src/shared/issue.js';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

/** A temp directory holding `files` (name -> content); removed after the test. */
export async function tempDir(files: Record<string, string> = {}): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'xoauth2-config-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content);
  return dir;
}

/** The issues of the ConfigError `p` rejects with (fails the test if it resolves). */
export async function issuesOf(p: Promise<unknown>): Promise<Issue[]> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
}

export const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

export const HASH1 =
  '$scrypt$ln=14,r=8,p=1$cbbVr58WmVDL+kfrDMPrPA$mM+k73xXx+FRhr6La5pR0Fcoz1hRA5KbRpqM1Ud+NFo'; // demo-password-1

export function account(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    email: 'a@example.com',
    provider: 'google',
    clientId: 'cid',
    refreshToken: 'rt',
    passwordHash: HASH1,
    ...overrides,
  };
}
