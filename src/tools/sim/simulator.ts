import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { HostPort } from '../../config/types.js';
import { formatHostPort } from '../../shared/net.js';
import { AuthorizationCodes } from './authorization-codes.js';
import { RefreshBindings } from './bindings.js';
import { DeviceCodes } from './device-codes.js';
import { Directory } from './directory.js';
import { mergeFaults, NO_FAULTS } from './faults.js';
import { DEFAULT_FLOWS, mergeFlows } from './flows.js';
import { createHttpServer } from './http.js';
import type { OAuthContext } from './oauth-context.js';
import { registerClient, registerServiceAccount } from './registration.js';
import { SmtpSession, type SessionContext } from './session.js';
import { SimState } from './state.js';
import type { SimEndpoints, SimOptions, Simulator, SimStyle } from './types.js';

export const SIM_DEFAULTS = {
  smtp: { host: '127.0.0.1', port: 2626 },
  http: { host: '127.0.0.1', port: 8089 },
  tokenLifetimeSec: 3600,
  /** Gmail tolerates a handful of parallel SMTP sessions per mailbox; Microsoft 365 documents 3. */
  maxConnectionsPerUser: { google: 10, microsoft: 3 } as Record<SimStyle, number>,
  idleTimeoutMs: 300_000,
  hostname: 'localhost',
} as const;

const certCache = new Map<string, Promise<{ key: string; cert: string }>>();

/** One certificate per hostname per process: generation costs ~100 ms and tests start many simulators. */
function certificateFor(hostname: string): Promise<{ key: string; cert: string }> {
  let p = certCache.get(hostname);
  if (!p) {
    p = (async () => {
      const { generate } = await import('selfsigned');
      const names = [...new Set(['localhost', hostname])];
      const pems = await generate([{ name: 'commonName', value: hostname }], {
        keyType: 'ec',
        algorithm: 'sha256',
        notAfterDate: new Date(Date.now() + 5 * 365 * 86400_000),
        extensions: [
          { name: 'basicConstraints', cA: true },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: true },
          { name: 'extKeyUsage', serverAuth: true },
          {
            name: 'subjectAltName',
            altNames: [
              ...names.map((value) => ({ type: 2 as const, value })),
              { type: 7 as const, ip: '127.0.0.1' },
              { type: 7 as const, ip: '::1' },
            ],
          },
        ],
      });
      return { key: pems.private, cert: pems.cert };
    })();
    certCache.set(hostname, p);
    p.catch(() => certCache.delete(hostname));
  }
  return p;
}

function positiveInt(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min)
    throw new Error(`${name}: must be an integer >= ${min}, got ${value}`);
  return value;
}

async function listen(server: net.Server, hp: HostPort, what: string): Promise<HostPort> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`simulator ${what} cannot listen on ${formatHostPort(hp)}: ${err.message}`));
    server.once('error', onError);
    server.listen(hp.port, hp.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const addr = server.address() as net.AddressInfo;
  return { host: hp.host, port: addr.port };
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
}

/** The provider-shaped URLs: Google's tenant-less ones, Microsoft's with `{tenant}` in the path. */
function endpointsFor(style: SimStyle, base: string): SimEndpoints {
  const verification = `${base}/devicelogin`;
  if (style === 'google')
    return {
      authorize: `${base}/authorize`,
      token: `${base}/token`,
      deviceAuthorization: `${base}/device/code`,
      verification,
    };
  const t = `${base}/{tenant}/oauth2/v2.0`;
  return {
    authorize: `${t}/authorize`,
    token: `${t}/token`,
    deviceAuthorization: `${t}/devicecode`,
    verification,
  };
}

export async function startSimulator(opts: SimOptions = {}): Promise<Simulator> {
  const style: SimStyle = opts.style ?? 'google';
  if (style !== 'google' && style !== 'microsoft')
    throw new Error(`style: must be google or microsoft, got ${style}`);
  const hostname = opts.hostname ?? SIM_DEFAULTS.hostname;
  const state = new SimState(
    mergeFaults({ ...NO_FAULTS }, opts.faults ?? {}),
    positiveInt('tokenLifetimeSec', opts.tokenLifetimeSec ?? SIM_DEFAULTS.tokenLifetimeSec, 1),
    positiveInt(
      'maxConnectionsPerUser',
      opts.maxConnectionsPerUser ?? SIM_DEFAULTS.maxConnectionsPerUser[style],
      0,
    ),
    positiveInt('messagesPerMinutePerUser', opts.messagesPerMinutePerUser ?? 0, 0),
  );
  state.rotateRefresh = opts.rotateRefreshTokens ?? false;
  // Reuse means presenting a token rotation replaced: without rotation there is nothing to detect,
  // and a grace without detection would silently do nothing. Both are refused rather than implied.
  if (opts.detectRefreshReuse && !state.rotateRefresh)
    throw new Error('detectRefreshReuse: needs rotateRefreshTokens');
  if (opts.refreshReuseGraceSec !== undefined) {
    const grace = opts.refreshReuseGraceSec;
    if (!Number.isFinite(grace) || grace < 0)
      throw new Error(`refreshReuseGraceSec: must be a number >= 0, got ${grace}`);
    if (grace > 0 && !opts.detectRefreshReuse)
      throw new Error('refreshReuseGraceSec: needs detectRefreshReuse');
    state.refreshReuseGraceMs = grace * 1000;
  }
  state.detectRefreshReuse = opts.detectRefreshReuse ?? false;
  const oauth: OAuthContext = {
    state,
    style,
    directory: new Directory(),
    codes: new AuthorizationCodes(),
    devices: new DeviceCodes(),
    bindings: new RefreshBindings(),
    flows: mergeFlows({ ...DEFAULT_FLOWS }, opts.flows ?? {}),
    baseUrl: '',
  };
  (opts.redirectUris ?? []).forEach((u, i) => oauth.directory.addRedirectUri(u, `redirectUris[${i}]`));
  for (const [i, c] of (opts.clients ?? []).entries()) {
    if (c.generateCertificate)
      throw new Error(`clients[${i}].generateCertificate: use registerClient() for that`);
    oauth.directory.registerClient(c, `clients[${i}]`);
  }
  const { key, cert } = opts.tls ?? (await certificateFor(hostname));
  const ctx: SessionContext = {
    state,
    style,
    hostname,
    requireTls: opts.requireTls ?? false,
    chunking: opts.chunking ?? true,
    secureContext: tls.createSecureContext({ key, cert }),
    idleTimeoutMs: positiveInt('idleTimeoutMs', opts.idleTimeoutMs ?? SIM_DEFAULTS.idleTimeoutMs, 1),
    sockets: new Set(),
    sessions: new Set(),
  };
  // Idle timeouts: one sweep for all sessions, precise to a tenth of the timeout (at most 1 s).
  const tickMs = Math.max(10, Math.min(1000, Math.floor(ctx.idleTimeoutMs / 10)));
  const idleSweep = setInterval(() => {
    for (const session of ctx.sessions) session.idleTick(tickMs);
  }, tickMs);
  idleSweep.unref();

  const servers: net.Server[] = [];
  let httpServer: http.Server | undefined;
  const closeAll = async () => {
    state.dispose();
    clearInterval(idleSweep);
    for (const s of ctx.sockets) s.destroy();
    httpServer?.closeAllConnections();
    await Promise.all([...servers, ...(httpServer ? [httpServer] : [])].map(closeServer));
  };

  const sim: Simulator = {
    smtp: { host: '', port: 0 },
    http: { host: '', port: 0 },
    tokenUrl: '',
    endpoints: { authorize: '', token: '', deviceAuthorization: '', verification: '' },
    caPem: cert,
    style,
    faults: () => ({ ...state.faults }),
    setFaults: (f) => {
      state.faults = mergeFaults(state.faults, f);
    },
    revoke: (t) => {
      state.revoke(t);
      if (t.includes('@') && !t.startsWith('simrt.')) oauth.bindings.forgetConsents(t.trim().toLowerCase());
    },
    revokeGrants: (email) => {
      state.revokeGrants(email);
      oauth.bindings.forgetConsents(email.trim().toLowerCase());
    },
    stats: () => state.stats(),
    registerClient: (c) => registerClient(oauth.directory, c),
    registerServiceAccount: (sa) =>
      registerServiceAccount(oauth.directory, sa ?? {}, {
        tokenUri: sim.tokenUrl,
        authUri: sim.endpoints.authorize,
      }),
    setPermission: (p) => oauth.directory.setPermission(p),
    addRedirectUri: (uri) => oauth.directory.addRedirectUri(uri),
    flows: () => ({ ...oauth.flows }),
    setFlows: (f) => {
      oauth.flows = mergeFlows(oauth.flows, f);
    },
    reset: () => state.reset(),
    close: closeAll,
  };

  try {
    const plain = net.createServer({ noDelay: true }, (socket) => new SmtpSession(ctx, socket, false));
    servers.push(plain);
    sim.smtp = await listen(plain, opts.smtp ?? SIM_DEFAULTS.smtp, 'SMTP');
    if (opts.smtpTls) {
      const secure = tls.createServer({ key, cert }, (socket) => new SmtpSession(ctx, socket, true));
      secure.on('tlsClientError', () => {}); // a failed handshake only concerns that client
      servers.push(secure);
      sim.smtpTls = await listen(secure, opts.smtpTls, 'SMTP TLS');
    }
    httpServer = createHttpServer(oauth, {
      setFaults: (f) => sim.setFaults(f as object),
      faults: () => sim.faults(),
      revoke: (t) => sim.revoke(t),
      revokeGrants: (email) => sim.revokeGrants(email),
      reset: () => sim.reset(),
      registerClient: (body) => sim.registerClient(body as never),
      registerServiceAccount: (body) => sim.registerServiceAccount(body as never),
      setPermission: (body) => sim.setPermission(body as never),
      addRedirectUri: (uri) => oauth.directory.addRedirectUri(uri, 'uri'),
      directory: () => ({ ...oauth.directory.describe(), flows: sim.flows(), endpoints: sim.endpoints }),
      flows: () => sim.flows(),
      setFlows: (body) => sim.setFlows(body as never),
    });
    sim.http = await listen(httpServer, opts.http ?? SIM_DEFAULTS.http, 'HTTP');
    oauth.baseUrl = `http://${formatHostPort(sim.http)}`;
    sim.tokenUrl = `${oauth.baseUrl}/token`;
    sim.endpoints = endpointsFor(style, oauth.baseUrl);
  } catch (err) {
    await closeAll();
    throw err;
  }
  return sim;
}
