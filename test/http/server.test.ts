import { readFile } from 'node:fs/promises';
import http from 'node:http';
import YAML from 'yaml';
import { afterEach, describe, expect, it } from 'vitest';
import { startHttpServer, type RunningHttpServer } from '../../src/http/server.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { silentLogger } from '../../src/shared/log.js';
import { fakeBackend, type FakeBackend } from './fake-backend.js';

const TOKEN = 'test-admin-token-0123456789';

let server: RunningHttpServer | undefined;
let backend: FakeBackend | undefined;
afterEach(async () => {
  await server?.close();
  await backend?.cleanup();
  server = backend = undefined;
});

async function start(adminToken: string | null = TOKEN) {
  backend = await fakeBackend([
    {
      email: 'a@example.com',
      provider: 'google',
      state: 'ok',
      pool: { idle: 1, busy: 2, connecting: 0, waiting: 0 },
    },
  ]);
  const metrics = new Metrics({ defaultMetrics: false });
  metrics.messagesTotal.inc({ provider: 'google', result: 'delivered' }, 3);
  server = await startHttpServer({
    listen: { host: '127.0.0.1', port: 0 },
    ...(adminToken !== null ? { adminToken } : {}),
    metrics,
    backend,
    log: silentLogger,
  });
  const base = `http://127.0.0.1:${server.address.port}`;
  const call = async (method: string, p: string, body?: unknown, token: string | null = TOKEN) => {
    const headers: Record<string, string> = {};
    if (token !== null) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(base + p, {
      method,
      headers,
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {}
    return { status: res.status, text, json, headers: res.headers };
  };
  return { base, call, backend };
}

const account = (email: string, extra: Record<string, unknown> = {}) => ({
  email,
  provider: 'google',
  clientId: 'cid.apps.googleusercontent.com',
  clientSecret: 'SECRET-client',
  refreshToken: 'SECRET-refresh',
  ...extra,
});

describe('health and metrics', () => {
  it('healthz, readyz (503 while not ready), metrics in Prometheus text', async () => {
    const { call, backend } = await start();
    expect((await call('GET', '/healthz', undefined, null)).status).toBe(200);
    expect((await call('GET', '/readyz', undefined, null)).status).toBe(200);
    backend.ready = false;
    expect((await call('GET', '/readyz', undefined, null)).status).toBe(503);
    const m = await call('GET', '/metrics', undefined, null);
    expect(m.status).toBe(200);
    expect(m.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(m.text).toContain('xoauth2_proxy_messages_total{provider="google",result="delivered"} 3');
    expect((await call('POST', '/healthz', '{}', null)).status).toBe(405);
    expect((await call('GET', '/nope', undefined, null)).status).toBe(404);
  });
});

describe('admin authentication', () => {
  it('401 without, with a wrong, or with a longer/shorter token; 200 with the right one', async () => {
    const { call } = await start();
    for (const t of [null, 'wrong', TOKEN + 'x', TOKEN.slice(0, -1), '']) {
      const r = await call('GET', '/admin/accounts', undefined, t);
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    }
    expect((await call('GET', '/admin/accounts')).status).toBe(200);
  });

  it('without an admin token, /admin/* is 404 "admin API disabled" and / says it needs http.adminToken', async () => {
    const { call } = await start(null);
    const r = await call('GET', '/admin/accounts', undefined, 'anything');
    expect(r.status).toBe(404);
    expect(r.json.error).toMatch(/admin API disabled/);
    const page = await call('GET', '/', undefined, null);
    expect(page.status).toBe(404);
    expect(page.text).toContain('http.adminToken');
    expect((await call('GET', '/healthz', undefined, null)).status).toBe(200);
  });
});

describe('admin accounts API', () => {
  it('POST 201 / 400 naming the field / 409 / 422 when verification fails; the file is written', async () => {
    const { call, backend } = await start();
    const created = await call('POST', '/admin/accounts', account('New@Example.com'));
    expect(created.status).toBe(201);
    expect(created.json.account).toMatchObject({
      email: 'new@example.com',
      provider: 'google',
      hasPassword: false,
    });
    expect(created.text).not.toContain('SECRET');

    const dup = await call('POST', '/admin/accounts', account('new@example.com'));
    expect(dup.status).toBe(409);

    const bad = await call('POST', '/admin/accounts', account('b@example.com', { provider: 'gmial' }));
    expect(bad.status).toBe(400);
    expect(bad.json.issues).toEqual([{ path: 'provider', message: 'unknown provider "gmial"' }]);
    expect(bad.json.error).toMatch(/provider/);

    const revoked = await call(
      'POST',
      '/admin/accounts',
      account('r@example.com', { refreshToken: 'revoked' }),
    );
    expect(revoked.status).toBe(422);
    expect(revoked.json.error).toMatch(/invalid_grant/);
    // verify=false skips the token refresh
    const unverified = await call(
      'POST',
      '/admin/accounts?verify=false',
      account('r@example.com', { refreshToken: 'revoked' }),
    );
    expect(unverified.status).toBe(201);
    expect((await call('POST', '/admin/accounts?verify=maybe', account('s@example.com'))).status).toBe(400);

    const doc = YAML.parse(await readFile(backend.file, 'utf8'));
    expect(doc.accounts.map((a: { email: string }) => a.email)).toEqual(['new@example.com', 'r@example.com']);

    const list = await call('GET', '/admin/accounts');
    expect(list.json.accounts.map((a: { email: string }) => a.email)).toEqual([
      'a@example.com',
      'new@example.com',
      'r@example.com',
    ]);
    expect(list.text).not.toContain('SECRET');
  });

  it('invalid JSON 400, empty body 400, body over 64 KiB 413', async () => {
    const { call } = await start();
    const r = await call('POST', '/admin/accounts', '{"email": ');
    expect(r.status).toBe(400);
    expect(r.json.error).toMatch(/invalid JSON/);
    expect((await call('POST', '/admin/accounts', '')).status).toBe(400);
    const big = await call(
      'POST',
      '/admin/accounts',
      JSON.stringify(account('big@example.com', { pad: 'x'.repeat(70_000) })),
    );
    expect(big.status).toBe(413);
  });

  it('413 also for a chunked body without Content-Length', async () => {
    const { base } = await start();
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(
        `${base}/admin/accounts`,
        { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'transfer-encoding': 'chunked' } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write('x'.repeat(8192));
      req.end();
    });
    expect(status).toBe(413);
  });

  it('PUT 200 / 400 / 404, DELETE 204 / 404, GET one', async () => {
    const { call, backend } = await start();
    expect((await call('POST', '/admin/accounts', account('p@example.com'))).status).toBe(201);
    const put = await call('PUT', '/admin/accounts/P%40example.com', { maxConnections: 2 });
    expect(put.status).toBe(200);
    expect(put.json.account).toMatchObject({ email: 'p@example.com', maxConnections: 2 });
    const bad = await call('PUT', '/admin/accounts/p@example.com', { provider: 'nope' });
    expect(bad.status).toBe(400);
    expect(bad.json.issues[0].path).toBe('provider');
    // a change of non-credential fields does not refresh; a new refresh token is verified
    expect(backend.refreshed).toEqual(['p@example.com']);
    const revoked = await call('PUT', '/admin/accounts/p@example.com', { refreshToken: 'revoked' });
    expect(revoked.status).toBe(422);
    expect(revoked.json.error).toMatch(/token refresh for p@example.com failed: invalid_grant/);
    expect(backend.refreshed).toEqual(['p@example.com', 'p@example.com']);
    expect((await call('PUT', '/admin/accounts/zz@example.com', { maxConnections: 2 })).status).toBe(404);
    expect((await call('GET', '/admin/accounts/p@example.com')).json).toMatchObject({
      email: 'p@example.com',
    });
    const del = await call('DELETE', '/admin/accounts/p@example.com');
    expect(del.status).toBe(204);
    expect(del.text).toBe('');
    expect((await call('DELETE', '/admin/accounts/p@example.com')).status).toBe(404);
    expect((await call('GET', '/admin/accounts/p@example.com')).status).toBe(404);
  });

  it('POST /admin/reload: 200 {ok:true}, or 500 with the reason', async () => {
    const { call, backend } = await start();
    const ok = await call('POST', '/admin/reload');
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ ok: true });
    backend.reloadError = 'accounts.yaml: accounts[2].provider: unknown provider "gmial"';
    const fail = await call('POST', '/admin/reload');
    expect(fail.status).toBe(500);
    expect(fail.json.error).toContain('unknown provider "gmial"');
    expect((await call('GET', '/admin/reload')).status).toBe(405);
  });

  it('a backend that throws gives 500 with the message, and the server keeps serving', async () => {
    const { call, backend } = await start();
    backend.deleteAccount = async () => {
      throw new Error('disk on fire');
    };
    const r = await call('DELETE', '/admin/accounts/a@example.com');
    expect(r.status).toBe(500);
    expect(r.json.error).toMatch(/disk on fire/);
    expect((await call('GET', '/healthz')).status).toBe(200);
  });
});

describe('status page over HTTP', () => {
  it('needs the token (header or ?token=), escapes data, sends a strict CSP', async () => {
    const { call, backend } = await start();
    backend.views.push({
      email: '<img src=x onerror=alert(1)>@evil',
      provider: 'google',
      state: 'needs_reauth',
      lastError: '"</script><b>x',
    });
    backend.stats.recordError('e@example.com', '451 4.4.1 <oops>');
    expect((await call('GET', '/', undefined, null)).status).toBe(401);
    expect((await call('GET', '/?token=wrong', undefined, null)).status).toBe(401);
    const page = await call('GET', `/?token=${TOKEN}`, undefined, null);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'nonce-[^']+'/);
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    expect(page.text).toContain('&lt;img src=x onerror=alert(1)&gt;@evil');
    expect(page.text).not.toContain('<img src=x');
    expect(page.text).not.toContain('"</script><b>x');
    expect(page.text).toContain('needs re-authorization');
    expect(page.text).toContain('451 4.4.1 &lt;oops&gt;');
    expect((await call('GET', '/')).status).toBe(200); // Bearer header works too
  });

  it('GET /admin/live returns accounts and the live snapshot', async () => {
    const { call, backend } = await start();
    backend.stats.record(12, 'delivered');
    const r = await call('GET', '/admin/live');
    expect(r.status).toBe(200);
    expect(r.json.ready).toBe(true);
    expect(r.json.accounts[0].email).toBe('a@example.com');
    expect(r.json.live.series).toHaveLength(300);
    expect(r.json.live.series.at(-1).delivered).toBe(1);
  });
});
