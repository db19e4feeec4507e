// The HTTP grant: what is sent, and how answers map to errors.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { generate } from 'selfsigned';
import { afterEach, describe, expect, it } from 'vitest';
import { DIST } from '../helpers/procs.js';
import { TokenClient, TokenGrantError } from '../../src/oauth/token-client.js';
import { expectRejection } from '../helpers/expect-rejection.js';
import { useTokenServer, type TokenServer } from '../helpers/token-server.js';

const startTokenServer = useTokenServer();
let srv: TokenServer | undefined;
let client: TokenClient | undefined;
afterEach(() => {
  client?.close(); // before the token servers close (hooks run last-registered first)
  client = undefined;
});

const base = { clientId: 'cid', refreshToken: 'rt-secret', scope: 'scope-a scope-b' };

const grantError = (p: Promise<unknown>) => expectRejection(p, TokenGrantError);

describe('TokenClient', () => {
  it('posts the refresh_token grant form and parses the answer', async () => {
    srv = await startTokenServer(() => ({
      body: { access_token: 'at', expires_in: '120', refresh_token: 'rt-2' },
    }));
    client = new TokenClient({ timeoutMs: 2000 });
    const r = await client.refresh({ tokenUrl: srv.url, ...base, clientSecret: 'shh' });
    expect(r).toEqual({ accessToken: 'at', expiresInSec: 120, refreshToken: 'rt-2' });
    const p = srv.requests[0]!.params;
    expect(Object.fromEntries(p)).toEqual({
      grant_type: 'refresh_token',
      client_id: 'cid',
      refresh_token: 'rt-secret',
      scope: 'scope-a scope-b',
      client_secret: 'shh',
    });
  });

  it('omits client_secret and scope when not configured; defaults expires_in to 3600', async () => {
    srv = await startTokenServer(() => ({ body: { access_token: 'at' } }));
    client = new TokenClient({ timeoutMs: 2000 });
    const r = await client.refresh({ tokenUrl: srv.url, ...base, scope: '' });
    expect(r.expiresInSec).toBe(3600);
    expect(r.refreshToken).toBeUndefined();
    const p = srv.requests[0]!.params;
    expect(p.has('client_secret')).toBe(false);
    expect(p.has('scope')).toBe(false);
  });

  it('classifies invalid_grant / invalid_client / unauthorized_client as permanent', async () => {
    for (const [status, error] of [
      [400, 'invalid_grant'],
      [401, 'invalid_client'],
      [400, 'unauthorized_client'],
    ] as const) {
      srv = await startTokenServer(() => ({
        status,
        body: { error, error_description: 'Token has been revoked' },
      }));
      client = new TokenClient({ timeoutMs: 2000 });
      const e = await grantError(client.refresh({ tokenUrl: srv.url, ...base }));
      expect(e.kind).toBe('permanent');
      expect(e.reason).toBe(error);
      client.close();
      await srv.close();
    }
  });

  it('classifies 5xx, 429, other 4xx, bad JSON and missing access_token as transient', async () => {
    const cases: [Parameters<typeof startTokenServer>[0], RegExp][] = [
      [() => ({ status: 503, raw: '<html>down</html>' }), /^HTTP 503$/],
      [() => ({ status: 429, body: { error: 'rate_limited' } }), /^HTTP 429 rate_limited$/],
      [() => ({ status: 400, body: { error: 'invalid_request' } }), /^HTTP 400 invalid_request$/],
      [() => ({ status: 200, raw: 'not json' }), /invalid JSON/],
      [() => ({ status: 200, body: { token_type: 'Bearer' } }), /no access_token/],
    ];
    for (const [handler, reason] of cases) {
      srv = await startTokenServer(handler);
      client = new TokenClient({ timeoutMs: 2000 });
      const e = await grantError(client.refresh({ tokenUrl: srv.url, ...base }));
      expect(e.kind).toBe('transient');
      expect(e.reason).toMatch(reason);
      client.close();
      await srv.close();
    }
  });

  it('times out a hanging endpoint', async () => {
    srv = await startTokenServer(() => ({ hang: true }));
    client = new TokenClient({ timeoutMs: 200 });
    const t0 = Date.now();
    const e = await grantError(client.refresh({ tokenUrl: srv.url, ...base }));
    expect(e.reason).toBe('timeout after 200ms');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('close() ends a request in flight at once', async () => {
    srv = await startTokenServer(() => ({ hang: true }));
    client = new TokenClient({ timeoutMs: 10_000 });
    const t0 = Date.now();
    const pending = grantError(client.refresh({ tokenUrl: srv.url, ...base }));
    await new Promise((r) => setTimeout(r, 100));
    client.close();
    const e = await pending;
    expect(e.kind).toBe('transient');
    expect(e.reason).toBe('token client closed');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('does not follow a redirect: a token endpoint that moved is reported with its status', async () => {
    srv = await startTokenServer((req) =>
      req.path === '/elsewhere'
        ? { body: { access_token: 'at' } }
        : { status: 302, headers: { location: '/elsewhere' } },
    );
    client = new TokenClient({ timeoutMs: 2000 });
    const e = await grantError(client.refresh({ tokenUrl: srv.url, ...base }));
    expect(e.reason).toBe('HTTP 302');
    expect(srv.requests).toHaveLength(1);
  });

  it('reports a refused connection as a network error', async () => {
    srv = await startTokenServer();
    const url = srv.url;
    await srv.close();
    srv = undefined;
    client = new TokenClient({ timeoutMs: 2000 });
    const e = await grantError(client.refresh({ tokenUrl: url, ...base }));
    expect(e.kind).toBe('transient');
    expect(e.reason).toBe('network error ECONNREFUSED');
  });

  it('refuses an answer larger than 64 KiB', async () => {
    srv = await startTokenServer(() => ({ raw: JSON.stringify({ access_token: 'x'.repeat(70_000) }) }));
    client = new TokenClient({ timeoutMs: 2000 });
    const e = await grantError(client.refresh({ tokenUrl: srv.url, ...base }));
    expect(e.reason).toBe('token response too large');
  });

  it('keeps the connection to a token endpoint alive between requests', async () => {
    srv = await startTokenServer();
    client = new TokenClient({ timeoutMs: 2000 });
    for (let i = 0; i < 3; i++) await client.refresh({ tokenUrl: srv.url, ...base });
    expect(srv.requests).toHaveLength(3);
    expect(srv.connections).toBe(1);
  });

  it('sends again on a fresh connection when a kept-alive one was closed under it', async () => {
    // the race a keep-alive client always has: the server closes an idle connection just as the
    // next request goes out on it. Here the server drops every connection's second request unanswered.
    const served = new WeakSet<import('node:net').Socket>();
    let dropped = 0;
    const server = http.createServer((req, res) => {
      if (served.has(req.socket)) {
        dropped++;
        req.socket.destroy();
        return;
      }
      served.add(req.socket);
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ access_token: 'fake-access-token', expires_in: 600 }));
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
      client = new TokenClient({ timeoutMs: 2000 });
      await client.refresh({ tokenUrl: url, ...base });
      const r = await client.refresh({ tokenUrl: url, ...base });
      expect(r.accessToken).toBe('fake-access-token');
      expect(dropped).toBe(1);
    } finally {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    }
  });

  it('times out an endpoint that stops in the middle of its answer', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"access_token":"fake-');
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
      client = new TokenClient({ timeoutMs: 300 });
      const t0 = Date.now();
      const e = await grantError(client.refresh({ tokenUrl: url, ...base }));
      expect(e.reason).toBe('timeout after 300ms');
      expect(Date.now() - t0).toBeLessThan(2000);
    } finally {
      server.closeAllConnections();
      await new Promise((ok) => server.close(ok));
    }
  });

  it('refuses a URL that is neither http nor https', async () => {
    client = new TokenClient({ timeoutMs: 2000 });
    const e = await grantError(client.refresh({ tokenUrl: 'ftp://127.0.0.1/token', ...base }));
    expect(e.reason).toBe('unsupported URL scheme ftp:');
  });
});

describe('TokenClient over https', () => {
  const servers: https.Server[] = [];
  afterEach(async () => {
    await Promise.all(
      servers.splice(0).map((s) => new Promise((ok) => (s.closeAllConnections(), s.close(ok)))),
    );
  });

  /** a token endpoint with a certificate of its own for 127.0.0.1, and that certificate's PEM */
  async function httpsTokenServer(): Promise<{ url: string; certPem: string }> {
    const pems = await generate([{ name: 'commonName', value: '127.0.0.1' }], {
      keySize: 2048,
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }],
    });
    const server = https.createServer({ key: pems.private, cert: pems.cert }, (req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ access_token: 'fake-access-token', expires_in: 600 }));
      });
    });
    servers.push(server);
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/token`, certPem: pems.cert };
  }

  it('verifies the endpoint certificate: one no trusted CA signed is a network error', async () => {
    const { url } = await httpsTokenServer();
    client = new TokenClient({ timeoutMs: 5000 });
    const e = await grantError(client.refresh({ tokenUrl: url, ...base }));
    expect(e.kind).toBe('transient');
    expect(e.reason).toBe('network error DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('gets a token from an endpoint whose CA the process trusts (NODE_EXTRA_CA_CERTS)', async () => {
    const { url, certPem } = await httpsTokenServer();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xo-token-ca-'));
    const caFile = path.join(dir, 'ca.pem');
    fs.writeFileSync(caFile, certPem);
    const script = `
      const { TokenClient } = await import(${JSON.stringify(path.join(DIST, 'oauth/token-client.js'))});
      const c = new TokenClient({ timeoutMs: 5000 });
      const r = await c.refresh({ tokenUrl: ${JSON.stringify(url)}, clientId: 'cid', refreshToken: 'rt-fake', scope: '' });
      c.close();
      console.log(JSON.stringify(r));`;
    // the server runs in this process, so the child must not block it: spawn, then await its exit
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d));
      child.stderr.on('data', (d: Buffer) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(stderr))));
    });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(JSON.parse(out)).toEqual({ accessToken: 'fake-access-token', expiresInSec: 600 });
  });
});
