#!/usr/bin/env node
// `npm run chaos [-- --quick] [--only a,b] [--rate N] [--mailboxes N] [--out FILE.md] [--json FILE]`
// Exit 0 when every scenario passes, 1 when one fails, 2 on bad options.
import type { OptionValues } from 'commander';
import { renderChaosMarkdown } from './report.js';
import { runChaos, type ChaosOptions } from './run.js';
import { SCENARIOS } from './scenarios.js';
import {
  checkReportOptions,
  checkUpstreamOptions,
  listOption,
  numberOption,
  parseToolArgs,
  reportOptions,
  runTool,
  toolCommand,
  upstreamOptions,
  writeReports,
  type ReportFiles,
  type Tool,
} from '../harness/tool-cli.js';

type ChaosCliOptions = ChaosOptions & ReportFiles;

const SCENARIO_NAMES = SCENARIOS.map((s) => s.name);

const chaosTool: Tool<ChaosCliOptions> = {
  program: () =>
    reportOptions(
      upstreamOptions(
        toolCommand(
          'npm run chaos --',
          'every chaos scenario under a fixed-rate load against a simulator and a proxy; exit 0 when all pass',
        )
          .option('--quick', 'short lead-in, faults and tail (CI), lower rate and fewer mailboxes')
          .option('--only <names>', `comma-separated scenarios: ${SCENARIO_NAMES.join(',')}`)
          .option('--rate <msg/s>', 'background load (default 200, 100 with --quick)')
          .option('--mailboxes <n>', 'mailboxes, one client connection each (default 20, 10 with --quick)'),
      ),
    ),
  check(v: OptionValues): ChaosCliOptions {
    const quick = v.quick === true;
    const int = (name: 'rate' | 'mailboxes', dflt: number, min: number) =>
      v[name] === undefined ? dflt : numberOption(name, v[name], min, true);
    const only = listOption('only', v.only, SCENARIO_NAMES, 'scenario');
    return {
      quick,
      rate: int('rate', quick ? 100 : 200, 1),
      mailboxes: int('mailboxes', quick ? 10 : 20, 4),
      ...checkUpstreamOptions(v),
      ...(only ? { only } : {}),
      ...checkReportOptions(v),
    };
  },
};

export const parseChaosArgs = (argv: string[]): ChaosCliOptions => parseToolArgs(chaosTool, argv);

runTool(import.meta.url, 'chaos', chaosTool, async (opts, argv) => {
  const { out, json, ...chaos } = opts;
  const report = await runChaos(chaos);
  const md = renderChaosMarkdown(report, `npm run chaos -- ${argv.join(' ')}`.trim());
  process.stdout.write(md);
  writeReports({ out, json }, md, report);
  return report.pass ? 0 : 1;
});
