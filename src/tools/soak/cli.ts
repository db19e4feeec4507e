#!/usr/bin/env node
// `npm run soak -- --minutes M`: see run.ts. Exit 0 on pass, 1 on a failed invariant or trend, 2 on
// bad options.
import type { OptionValues } from 'commander';
import { renderSoakMarkdown } from './report.js';
import { runSoak, type SoakOptions } from './run.js';
import { MAX_MESSAGE_IDS } from '../sim/types.js';
import {
  checkReportOptions,
  checkUpstreamOptions,
  numberOption,
  parseToolArgs,
  reportOptions,
  runTool,
  seedOption,
  toolCommand,
  upstreamOptions,
  writeReports,
  type ReportFiles,
  type Tool,
} from '../harness/tool-cli.js';

type SoakCliOptions = SoakOptions & ReportFiles;

const soakTool: Tool<SoakCliOptions> = {
  program: () =>
    reportOptions(
      upstreamOptions(
        toolCommand(
          'npm run soak --',
          'hours of steady load with random faults against a simulator and a proxy: loss, leaks and trends',
        )
          .option('--minutes <m>', 'how long', '60')
          .option('--rate <msg/s>', 'offered load', '833')
          .option('--mailboxes <n>', 'mailboxes', '100')
          .option('--connections <n>', 'client connections', '50')
          .option('--sample-sec <s>', 'seconds between samples of the proxy', '10')
          .option('--fault-every-sec <s>', 'a random fault this often (0 = none)', '60')
          .option('--segment-sec <s>', 'seconds per loss-check segment', '60')
          .option('--seed <n>', 'replay the fault schedule of this seed (default: a random one, printed)')
          .option('--token-lifetime-sec <s>', "the simulator's access-token lifetime", '120')
          .option('--size <bytes>', 'message size', '2048')
          .option('--warmup-sec <s>', 'unmeasured warm-up before the first sample'),
      ),
    ),
  check(v: OptionValues): SoakCliOptions {
    const n = (name: string, min: number, integer = false) => {
      const key = name.replace(/-(\w)/g, (_, c: string) => c.toUpperCase());
      return numberOption(name, v[key], min, integer);
    };
    const opts = {
      minutes: n('minutes', 0.05),
      rate: n('rate', 1),
      mailboxes: n('mailboxes', 1, true),
      connections: n('connections', 1, true),
      sampleSec: n('sample-sec', 1),
      faultEverySec: n('fault-every-sec', 0),
      segmentSec: n('segment-sec', 5),
      seed: seedOption(v.seed),
      tokenLifetimeSec: n('token-lifetime-sec', 10, true),
      size: n('size', 256, true),
      ...(v.warmupSec !== undefined ? { warmupSec: n('warmup-sec', 0) } : {}),
      ...checkUpstreamOptions(v),
      ...checkReportOptions(v),
    };
    // A segment's ids must fit in the simulator's list, or its accepted messages would look lost.
    if (opts.rate * opts.segmentSec > MAX_MESSAGE_IDS)
      throw new Error(
        `--segment-sec: ${opts.segmentSec} s at ${opts.rate} msg/s exceeds the simulator's ${MAX_MESSAGE_IDS} stored ids`,
      );
    return opts;
  },
};

export const parseSoakArgs = (argv: string[]): SoakCliOptions => parseToolArgs(soakTool, argv);

runTool(import.meta.url, 'soak', soakTool, async (opts, argv) => {
  const { json, out, ...soak } = opts;
  const command = `npm run soak -- ${argv.join(' ')}`.trim();
  process.stderr.write(`soak: seed ${soak.seed} (pass --seed ${soak.seed} to replay the fault schedule)\n`);
  const result = await runSoak(soak);
  const md = renderSoakMarkdown(result, command);
  process.stdout.write(md);
  writeReports({ out, json }, md, result);
  if (!result.ok)
    process.stderr.write(`soak FAILED:\n${result.failures.map((f) => `  - ${f}`).join('\n')}\n`);
  return result.ok ? 0 : 1;
});
