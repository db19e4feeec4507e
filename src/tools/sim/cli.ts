import { writeFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { formatHostPort, parseHostPort } from '../../shared/net.js';
import { SIM_DEFAULTS, startSimulator } from './simulator.js';
import type { SimFaults, SimOptions, SimStyle, Simulator } from './types.js';

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
  maxConnectionsPerUser?: number;
  messagesPerMinutePerUser?: number;
  requireTls?: boolean;
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
  return {
    smtp: f.smtp,
    smtpTls: f.smtpTls,
    http: f.http,
    style: f.style,
    tokenLifetimeSec: f.tokenLifetime,
    rotateRefreshTokens: f.rotateRefreshTokens,
    maxConnectionsPerUser: f.maxConnectionsPerUser,
    messagesPerMinutePerUser: f.messagesPerMinutePerUser,
    requireTls: f.requireTls,
    hostname: f.hostname,
    faults,
  };
}

/** The one line other tools parse to find the simulator. */
export function listeningEvent(sim: Simulator): string {
  return JSON.stringify({
    event: 'listening',
    smtp: formatHostPort(sim.smtp),
    smtpTls: sim.smtpTls ? formatHostPort(sim.smtpTls) : null,
    http: formatHostPort(sim.http),
    tokenUrl: sim.tokenUrl,
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
    .option('--latency <ms>', 'delay before the reply to the end of DATA', number(0))
    .option('--fail-4xx <rate>', 'probability of 451 4.3.0 at end of DATA', rate)
    .option('--fail-5xx <rate>', 'probability of 550 5.7.1 at end of DATA', rate)
    .option('--drop <rate>', 'probability of closing the connection at end of DATA without a reply', rate)
    .option('--token-error-rate <rate>', 'probability that the token endpoint answers 500', rate)
    .option(
      '--token-reset-rate <rate>',
      'probability that the token endpoint resets the connection, no answer',
      rate,
    )
    .option('--token-latency <ms>', 'delay before every token endpoint answer', number(0))
    .option('--expire-early <sec>', 'access tokens stop validating this many seconds after issue', number(0))
    .option('--ca-out <file>', 'write the generated certificate (PEM) here, for clients to trust')
    .action(async (flags: SimulateFlags, cmd: Command) => {
      let sim: Simulator;
      try {
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
      const out = (line: string) => process.stdout.write(line + '\n');
      out(`simulator (${sim.style}): SMTP with STARTTLS on ${formatHostPort(sim.smtp)}`);
      if (sim.smtpTls)
        out(`simulator (${sim.style}): SMTP with implicit TLS on ${formatHostPort(sim.smtpTls)}`);
      out(
        `simulator (${sim.style}): token endpoint ${sim.tokenUrl}, stats http://${formatHostPort(sim.http)}/stats`,
      );
      if (flags.caOut) out(`simulator: certificate written to ${flags.caOut}`);
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
