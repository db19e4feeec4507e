// Micro-benchmark of an upstream connection's setup (issue 14): the CPU this process spends per
// UpstreamConnection from TCP connect to QUIT (greeting, EHLO, STARTTLS, TLS handshake, EHLO,
// AUTH XOAUTH2, QUIT) against the simulator in a child process, so process.cpuUsage() is the
// proxy's side alone. A pool retires a connection every `maxMessagesPerConnection` messages, so
// this cost over that count is what the setups add to each message (docs/performance.md).
//
//   node dist/tools/bench/setup-cost.js [--n 200] [--rounds 3] [--security starttls|none]
//                                       [--no-session-reuse]
//
// --no-session-reuse: every connection gets a TLS state of its own (a full handshake, the
// certificate chain verified) instead of the pool's (the last session ticket, resumed). The secure
// context is the shared one either way (clientContext); before the sixth session of 2026-12-03 this
// mode also built a context per connection (~0.26 ms), which its older figures in the docs include.
import type { OptionValues } from 'commander';
import { startBenchEnv, fetchTokens } from '../harness/env.js';
import {
  choiceOption,
  numberOption,
  parseToolArgs,
  runTool,
  toolCommand,
  type Tool,
} from '../harness/tool-cli.js';
import { TlsReuse, UpstreamConnection } from '../../upstream/connection.js';
import type { UpstreamSmtpConfig } from '../../config/types.js';
import { sampleMachineCpu } from './machine-cpu.js';
import { BENCH_DEFAULTS } from './options.js';

interface Opts {
  n: number;
  rounds: number;
  security: 'starttls' | 'none';
  reuse: boolean;
}

const tool: Tool<Opts> = {
  program: () =>
    toolCommand(
      'node dist/tools/bench/setup-cost.js',
      'CPU of one upstream connection setup, connect to QUIT',
    )
      .option('--n <count>', 'connections per round', '200')
      .option('--rounds <count>', 'measured rounds', '3')
      .option('--security <mode>', 'starttls or none', 'starttls')
      .option('--no-session-reuse', 'a full TLS handshake for every connection'),
  check: (v: OptionValues): Opts => ({
    n: numberOption('n', v.n, 1, true),
    rounds: numberOption('rounds', v.rounds, 1, true),
    security: choiceOption('security', v.security as string, ['starttls', 'none'] as const),
    reuse: v.sessionReuse as boolean,
  }),
};

export const parseSetupCostArgs = (argv: string[]): Opts => parseToolArgs(tool, argv);

async function run(o: Opts): Promise<number> {
  const env = await startBenchEnv({
    mailboxes: 1,
    connections: 1,
    tls: o.security === 'starttls',
    userPrefix: BENCH_DEFAULTS.userPrefix,
    userDomain: BENCH_DEFAULTS.userDomain,
    recipients: 1,
  });
  try {
    const user = env.users[0]!;
    const token = (await fetchTokens(env.sim.tokenUrl, [user])).get(user) ?? '';
    const smtp: UpstreamSmtpConfig = {
      host: env.simHost,
      port: env.simPort,
      security: o.security,
      ca: env.caPem,
      rejectUnauthorized: true,
    };
    const shared = new TlsReuse(smtp);
    const one = async () => {
      const c = new UpstreamConnection({
        smtp,
        ehloName: 'bench.localhost',
        commandTimeoutMs: 10_000,
        tls: o.reuse ? shared : new TlsReuse(smtp),
      });
      await c.connect();
      const a = await c.authenticate(user, token);
      if (a.kind !== 'ok') throw new Error(`AUTH: ${a.kind}`);
      await c.quit();
    };
    // warm-up: the JIT, the first full handshake
    for (let i = 0; i < Math.min(o.n, 100); i++) await one();
    for (let r = 0; r < o.rounds; r++) {
      const machine = sampleMachineCpu();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < o.n; i++) await one();
      const c = process.cpuUsage(c0);
      // on a VM the host's stealing makes the same work cost more: say how much it took
      const m = await machine.stop();
      const us = (x: number) => Math.round(x / o.n);
      console.log(
        JSON.stringify({
          security: o.security,
          sessionReuse: o.reuse,
          connections: o.n,
          cpuUsPerConnection: us(c.user + c.system),
          userUs: us(c.user),
          systemUs: us(c.system),
          wallMsPerConnection: Math.round(((performance.now() - t0) / o.n) * 100) / 100,
          stolenPercentOfACore: m ? m.stealPercent : null,
        }),
      );
    }
  } finally {
    await env.close();
  }
  return 0;
}

runTool(import.meta.url, 'setup-cost', tool, run);
