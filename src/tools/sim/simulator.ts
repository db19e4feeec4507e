import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { HostPort } from '../../config/types.js';
import { formatHostPort } from '../../shared/net.js';
import { mergeFaults, NO_FAULTS } from './faults.js';
import { createHttpServer } from './http.js';
import { SmtpSession, type SessionContext } from './session.js';
import { SimState } from './state.js';
import type { SimOptions, Simulator, SimStyle } from './types.js';

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
  const { key, cert } = opts.tls ?? (await certificateFor(hostname));
  const ctx: SessionContext = {
    state,
    style,
    hostname,
    requireTls: opts.requireTls ?? false,
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
    caPem: cert,
    style,
    faults: () => ({ ...state.faults }),
    setFaults: (f) => {
      state.faults = mergeFaults(state.faults, f);
    },
    revoke: (t) => state.revoke(t),
    revokeGrants: (email) => state.revokeGrants(email),
    stats: () => state.stats(),
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
    httpServer = createHttpServer(state, style, {
      setFaults: (f) => sim.setFaults(f as object),
      faults: () => sim.faults(),
      revoke: (t) => sim.revoke(t),
      revokeGrants: (email) => sim.revokeGrants(email),
      reset: () => sim.reset(),
    });
    sim.http = await listen(httpServer, opts.http ?? SIM_DEFAULTS.http, 'HTTP');
    sim.tokenUrl = `http://${formatHostPort(sim.http)}/token`;
  } catch (err) {
    await closeAll();
    throw err;
  }
  return sim;
}
