import { readFile, writeFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { formatHostPort, parseHostPort } from '../../shared/net.js';
import { SIM_DEFAULTS, startSimulator } from './simulator.js';
import type { SimClientInput, SimFaults, SimFlowSettings, SimOptions, SimStyle, Simulator } from './types.js';

// Parsers throw InvalidArgumentError, which commander reports naming the option:
//   error: option '--drop <rate>' argument '2' is invalid. must be a probability between 0 and 1
const hostPort = (v: string) => {
  try {
    return parseHostPort(v);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};
const number =
  (min: number, max = Infinity, integer = false) =>
  (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      const what = integer ? 'an integer' : 'a number';
      throw new InvalidArgumentError(
        max === Infinity ? `must be ${what} >= ${min}` : `must be ${what} between ${min} and ${max}`,
      );
    }
    return n;
  };
const rate = number(0, 1);
/** A repeatable option: every occurrence parsed and collected. */
const many =
  <T>(parse: (v: string) => T) =>
  (v: string, prev: T[] = []): T[] => [...prev, parse(v)];

/** `ID[:SECRET]` (client ids have no colon) */
const clientSpec = (v: string): SimClientInput => {
  const colon = v.indexOf(':');
  const clientId = colon < 0 ? v : v.slice(0, colon);
  if (clientId === '' || colon === v.length - 1) throw new InvalidArgumentError('must be ID or ID:SECRET');
  return colon < 0 ? { clientId } : { clientId, clientSecret: v.slice(colon + 1) };
};
/** `TENANT/ID[:SECRET]` */
const appSpec = (v: string): SimClientInput => {
  const slash = v.indexOf('/');
  if (slash <= 0) throw new InvalidArgumentError('must be TENANT/ID or TENANT/ID:SECRET');
  return { ...clientSpec(v.slice(slash + 1)), tenant: v.slice(0, slash) };
};
/** `KEY=VALUE` where KEY has no `=` */
const pair = (what: string) => (v: string) => {
  const eq = v.indexOf('=');
  if (eq <= 0 || eq === v.length - 1) throw new InvalidArgumentError(`must be ${what}`);
  return { key: v.slice(0, eq), value: v.slice(eq + 1) };
};

const style = (v: string): SimStyle => {
  if (v !== 'google' && v !== 'microsoft') throw new InvalidArgumentError('must be google or microsoft');
  return v;
};

interface SimulateFlags {
  smtp: { host: string; port: number };
  smtpTls?: { host: string; port: number };
  http: { host: string; port: number };
  style: SimStyle;
  tokenLifetime?: number;
  rotateRefreshTokens?: boolean;
  detectRefreshReuse?: boolean;
  refreshReuseGrace?: number;
  maxConnectionsPerUser?: number;
  messagesPerMinutePerUser?: number;
  requireTls?: boolean;
  /** false with --no-chunking */
  chunking?: boolean;
  hostname?: string;
  latency?: number;
  fail4xx?: number;
  fail5xx?: number;
  drop?: number;
  tokenErrorRate?: number;
  tokenResetRate?: number;
  tokenLatency?: number;
  expireEarly?: number;
  caOut?: string;
  client?: SimClientInput[];
  app?: SimClientInput[];
  appCertificate?: { key: string; value: string }[];
  permission?: { key: string; value: string }[];
  redirectUri?: string[];
  serviceAccount?: { key: string; value: string }[];
  codeLifetime?: number;
  deviceCodeLifetime?: number;
  deviceInterval?: number;
}

/** Combinations the parsers cannot see one option at a time; the message names the flags. */
export function checkFlagCombinations(f: SimulateFlags): void {
  if (f.detectRefreshReuse && !f.rotateRefreshTokens)
    throw new Error(
      '--detect-refresh-reuse needs --rotate-refresh-tokens (reuse is presenting a refresh token rotation replaced)',
    );
  if (f.refreshReuseGrace !== undefined && !f.detectRefreshReuse)
    throw new Error('--refresh-reuse-grace needs --detect-refresh-reuse');
}

export function simOptionsFromFlags(f: SimulateFlags): SimOptions {
  const faults: Partial<SimFaults> = {};
  if (f.latency !== undefined) faults.latencyMs = f.latency;
  if (f.fail4xx !== undefined) faults.fail4xxRate = f.fail4xx;
  if (f.fail5xx !== undefined) faults.fail5xxRate = f.fail5xx;
  if (f.drop !== undefined) faults.dropRate = f.drop;
  if (f.tokenErrorRate !== undefined) faults.tokenErrorRate = f.tokenErrorRate;
  if (f.tokenResetRate !== undefined) faults.tokenResetRate = f.tokenResetRate;
  if (f.tokenLatency !== undefined) faults.tokenLatencyMs = f.tokenLatency;
  if (f.expireEarly !== undefined) faults.expireEarlySec = f.expireEarly;
  const flows: Partial<SimFlowSettings> = {};
  if (f.codeLifetime !== undefined) flows.codeLifetimeSec = f.codeLifetime;
  if (f.deviceCodeLifetime !== undefined) flows.deviceCodeLifetimeSec = f.deviceCodeLifetime;
  if (f.deviceInterval !== undefined) flows.deviceIntervalMs = f.deviceInterval;
  return {
    smtp: f.smtp,
    smtpTls: f.smtpTls,
    http: f.http,
    style: f.style,
    tokenLifetimeSec: f.tokenLifetime,
    rotateRefreshTokens: f.rotateRefreshTokens,
    detectRefreshReuse: f.detectRefreshReuse,
    refreshReuseGraceSec: f.refreshReuseGrace,
    maxConnectionsPerUser: f.maxConnectionsPerUser,
    messagesPerMinutePerUser: f.messagesPerMinutePerUser,
    requireTls: f.requireTls,
    chunking: f.chunking,
    hostname: f.hostname,
    faults,
    clients: [...(f.client ?? []), ...(f.app ?? [])],
    redirectUris: f.redirectUri,
    flows,
  };
}

/**
 * What the options register beyond SimOptions, once the simulator runs: app certificates, mailbox
 * permissions, and service accounts whose generated key files are written where asked.
 * Returns the lines to print.
 */
export async function applyRegistrations(sim: Simulator, f: SimulateFlags): Promise<string[]> {
  const lines: string[] = [];
  const declared = new Map([...(f.client ?? []), ...(f.app ?? [])].map((c) => [c.clientId, c]));
  for (const { key: clientId, value: file } of f.appCertificate ?? []) {
    const c = declared.get(clientId);
    if (!c) throw new Error(`--app-certificate: "${clientId}" is not given by --client or --app`);
    const certificate = await readFile(file, 'utf8').catch((err: Error) => {
      throw new Error(`--app-certificate: ${err.message}`);
    });
    const reg = await sim.registerClient({ ...c, certificate }).catch((err: Error) => {
      throw new Error(`--app-certificate ${clientId}: ${err.message}`);
    });
    lines.push(`simulator: app ${clientId} certificate registered${reg.x5t ? ` (x5t ${reg.x5t})` : ''}`);
  }
  const keyFiles: { email: string; file: string }[] = [];
  for (const { key: email, value: file } of f.serviceAccount ?? []) {
    // Delegation: every mailbox unless --permission names some for this account.
    const mailboxes = (f.permission ?? []).filter((p) => p.key.toLowerCase() === email.toLowerCase());
    const reg = await sim
      .registerServiceAccount({
        clientEmail: email,
        ...(mailboxes.length ? { mailboxes: mailboxes.map((p) => p.value) } : {}),
      })
      .catch((err: Error) => {
        throw new Error(`--service-account ${email}: ${err.message}`);
      });
    keyFiles.push({ email: reg.clientEmail, file });
    await writeFile(file, JSON.stringify(reg.keyFile, null, 2) + '\n', { mode: 0o600 }).catch(
      (err: Error) => {
        throw new Error(`--service-account: ${err.message}`);
      },
    );
    lines.push(`simulator: service account ${reg.clientEmail} key file written to ${file}`);
  }
  const accounts = new Set(keyFiles.map((k) => k.email.toLowerCase()));
  for (const { key, value } of f.permission ?? []) {
    if (accounts.has(key.toLowerCase())) continue;
    try {
      sim.setPermission({ clientId: key, mailbox: value });
    } catch (err) {
      throw new Error(`--permission ${key}=${value}: ${(err as Error).message}`);
    }
  }
  return lines;
}

/** The one line other tools parse to find the simulator. */
export function listeningEvent(sim: Simulator): string {
  return JSON.stringify({
    event: 'listening',
    smtp: formatHostPort(sim.smtp),
    smtpTls: sim.smtpTls ? formatHostPort(sim.smtpTls) : null,
    http: formatHostPort(sim.http),
    tokenUrl: sim.tokenUrl,
    endpoints: sim.endpoints,
  });
}

export function registerSimulateCommand(program: Command): void {
  program
    .command('simulate')
    .description('run the simulated provider: a local stand-in for Gmail / Microsoft 365 SMTP and OAuth2')
    .option('--smtp <host:port>', 'plain SMTP listener (offers STARTTLS)', hostPort, SIM_DEFAULTS.smtp)
    .option('--smtp-tls <host:port>', 'implicit-TLS SMTP listener (off unless given)', hostPort)
    .option('--http <host:port>', 'token endpoint, /stats and /control', hostPort, SIM_DEFAULTS.http)
    .option('--style <style>', 'google | microsoft', style, 'google')
    .option('--hostname <name>', 'name in the greeting and the certificate')
    .option('--token-lifetime <sec>', 'access token expires_in (default 3600)', number(1, Infinity, true))
    .option('--rotate-refresh-tokens', 'each refresh returns a new refresh token and revokes the old one')
    .option(
      '--detect-refresh-reuse',
      'a rotated-away refresh token presented again revokes the whole grant (needs --rotate-refresh-tokens)',
    )
    .option(
      '--refresh-reuse-grace <sec>',
      'the token just rotated away may be retried this long, getting the same successor (default 0)',
      number(0),
    )
    .option(
      '--max-connections-per-user <n>',
      'authenticated connections per user, 0 = unlimited (default 10 google, 3 microsoft)',
      number(0, Infinity, true),
    )
    .option(
      '--messages-per-minute-per-user <n>',
      'per-user rate limit, 0 = unlimited (default)',
      number(0, Infinity, true),
    )
    .option('--require-tls', 'AUTH only after STARTTLS on the plain listener')
    .option('--no-chunking', 'do not offer CHUNKING (BDAT, RFC 3030): clients must use DATA')
    .option('--latency <ms>', 'delay before the reply to the end of DATA (or BDAT LAST)', number(0))
    .option('--fail-4xx <rate>', 'probability of 451 4.3.0 at end of DATA (or BDAT LAST)', rate)
    .option('--fail-5xx <rate>', 'probability of 550 5.7.1 at end of DATA (or BDAT LAST)', rate)
    .option(
      '--drop <rate>',
      'probability of closing the connection at end of DATA (or BDAT LAST) without a reply',
      rate,
    )
    .option('--token-error-rate <rate>', 'probability that the token endpoint answers 500', rate)
    .option(
      '--token-reset-rate <rate>',
      'probability that the token endpoint resets the connection, no answer',
      rate,
    )
    .option('--token-latency <ms>', 'delay before every token endpoint answer', number(0))
    .option('--expire-early <sec>', 'access tokens stop validating this many seconds after issue', number(0))
    .option('--ca-out <file>', 'write the generated certificate (PEM) here, for clients to trust')
    .option(
      '--client <id[:secret]>',
      'register an OAuth client (repeatable; none = any client_id)',
      many(clientSpec),
    )
    .option('--app <tenant/id[:secret]>', 'register an app in a tenant (repeatable)', many(appSpec))
    .option(
      '--app-certificate <id=file>',
      'register a PEM certificate (or public key) for private_key_jwt (repeatable)',
      many(pair('ID=FILE')),
    )
    .option(
      '--permission <id=mailbox>',
      'app or service account may use this mailbox: address, @domain or * (repeatable)',
      many(pair('ID=MAILBOX')),
    )
    .option('--redirect-uri <uri>', 'allowed redirect URI besides loopback ones (repeatable)', many(String))
    .option(
      '--service-account <email=file>',
      'register a service account and write its generated JSON key file (repeatable)',
      many(pair('EMAIL=FILE')),
    )
    .option('--code-lifetime <sec>', 'authorization codes expire after this (default 60)', number(0.001))
    .option('--device-code-lifetime <sec>', 'device codes expire after this (default 900)', number(0.001))
    .option('--device-interval <ms>', 'device polling interval and slow_down step (default 5000)', number(1))
    .action(async (flags: SimulateFlags, cmd: Command) => {
      let sim: Simulator;
      try {
        checkFlagCombinations(flags);
        sim = await startSimulator(simOptionsFromFlags(flags));
      } catch (err) {
        return cmd.error(`error: ${(err as Error).message}`); // exits 1 (or throws under exitOverride)
      }
      if (flags.caOut) {
        try {
          await writeFile(flags.caOut, sim.caPem);
        } catch (err) {
          await sim.close();
          return cmd.error(`error: --ca-out: ${(err as Error).message}`);
        }
      }
      let registered: string[];
      try {
        registered = await applyRegistrations(sim, flags);
      } catch (err) {
        await sim.close();
        return cmd.error(`error: ${(err as Error).message}`);
      }
      const out = (line: string) => process.stdout.write(line + '\n');
      out(`simulator (${sim.style}): SMTP with STARTTLS on ${formatHostPort(sim.smtp)}`);
      if (sim.smtpTls)
        out(`simulator (${sim.style}): SMTP with implicit TLS on ${formatHostPort(sim.smtpTls)}`);
      out(
        `simulator (${sim.style}): token endpoint ${sim.tokenUrl}, stats http://${formatHostPort(sim.http)}/stats`,
      );
      if (flags.caOut) out(`simulator: certificate written to ${flags.caOut}`);
      registered.forEach(out);
      out(listeningEvent(sim));
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        const onSignal = (sig: NodeJS.Signals) => {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          resolve(sig);
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
      });
      await sim.close();
      out(`simulator: ${signal}, stopped`);
      process.exitCode = 0;
    });
}
