import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { ProviderConfig } from '../../src/config/types.js';
import { detachedMetrics, type Metrics } from '../../src/metrics/metrics.js';
import { TokenManager, type TokenAccount, type TokenManagerOptions } from '../../src/oauth/token-manager.js';
import { openStateStore, type StateStore } from '../../src/state/store.js';
import { silentLogger, type Logger } from '../../src/shared/log.js';
import type { Handler } from '../helpers/token-server.js';

export const SECRET = 'test-secret-key-with-at-least-32-chars';

export function provider(tokenUrl: string, over: Partial<ProviderConfig> = {}): ProviderConfig {
  return {
    name: 'sim',
    tokenUrl,
    tenant: 'common',
    scope: 'https://mail.google.com/',
    smtp: { host: '127.0.0.1', port: 1, security: 'none', rejectUnauthorized: true },
    maxConnectionsPerAccount: 3,
    maxMessagesPerConnection: 100,
    messagesPerMinute: 0,
    connectionIdleTimeoutMs: 60_000,
    connectionMaxAgeMs: 600_000,
    acquireTimeoutMs: 10_000,
    commandTimeoutMs: 30_000,
    ...over,
  };
}

export function account(email: string, p: ProviderConfig, over: Partial<TokenAccount> = {}): TokenAccount {
  return { email, provider: p, clientId: 'cid', refreshToken: `rt.${email}`, ...over };
}

export function captureLogger(): { log: Logger; lines: any[]; text: () => string } {
  const lines: any[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { log, lines, text: () => JSON.stringify(lines) };
}

/** Tracks temp dirs, stores and managers and closes them all in cleanup(). */
export class Harness {
  readonly dirs: string[] = [];
  readonly closers: (() => void)[] = [];

  tmpDir(): string {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'xo2-oauth-'));
    this.dirs.push(d);
    return d;
  }

  store(dir = this.tmpDir(), log: Logger = silentLogger): StateStore {
    const s = openStateStore({ dir, secretKey: SECRET, log });
    this.closers.push(() => s.close());
    return s;
  }

  manager(opts: Partial<TokenManagerOptions> & { store: StateStore }): {
    tm: TokenManager;
    metrics: Metrics;
  } {
    const metrics = opts.metrics ?? detachedMetrics();
    const tm = new TokenManager({
      log: silentLogger,
      refreshAheadMs: 300_000,
      requestTimeoutMs: 2000,
      warmupConcurrency: 4,
      ...opts,
      metrics,
    });
    this.closers.unshift(() => tm.close()); // managers close before their stores
    return { tm, metrics };
  }

  cleanup(): void {
    for (const c of this.closers.splice(0)) c();
    for (const d of this.dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  }
}

export async function gauge(metrics: Metrics, state: string): Promise<number> {
  const m = await metrics.accounts.get();
  return m.values.find((v) => v.labels.state === state)?.value ?? 0;
}

export async function counter(metrics: Metrics, result: string): Promise<number> {
  const m = await metrics.tokenRefreshTotal.get();
  return m.values.filter((v) => v.labels.result === result).reduce((a, v) => a + v.value, 0);
}

/** Like Microsoft with rotation: every grant retires the refresh token it used and issues a new one. */
export function rotatingProvider(valid: Set<string>): Handler {
  let n = 0;
  return (req) => {
    const rt = req.params.get('refresh_token') ?? '';
    if (!valid.delete(rt)) return { status: 400, body: { error: 'invalid_grant' } };
    const next = `${rt.split('~')[0]}~${++n}`;
    valid.add(next);
    return { body: { access_token: `at-${n}`, expires_in: 3600, refresh_token: next } };
  };
}
