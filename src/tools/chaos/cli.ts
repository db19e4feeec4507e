#!/usr/bin/env node
// `npm run chaos [-- --quick] [--only a,b] [--rate N] [--mailboxes N] [--out FILE.md] [--json FILE]`
// Exit 0 when every scenario passes, 1 when one fails, 2 on bad options.
import fs from 'node:fs';
import type { OptionValues } from 'commander';
import { renderChaosMarkdown } from './report.js';
import { runChaos, type ChaosOptions } from './run.js';
import { SCENARIOS } from './scenarios.js';
import { STYLES } from '../harness/env.js';
import {
  choiceOption,
  numberOption,
  parseToolArgs,
  runTool,
  toolCommand,
  type Tool,
} from '../harness/tool-cli.js';

type ChaosCliOptions = ChaosOptions & { out?: string; json?: string };

const chaosTool: Tool<ChaosCliOptions> = {
  program: () =>
    toolCommand(
      'npm run chaos --',
      'every chaos scenario under a fixed-rate load against a simulator and a proxy; exit 0 when all pass',
    )
      .option('--quick', 'short lead-in, faults and tail (CI), lower rate and fewer mailboxes')
      .option('--only <names>', `comma-separated scenarios: ${SCENARIOS.map((s) => s.name).join(',')}`)
      .option('--rate <msg/s>', 'background load (default 200, 100 with --quick)')
      .option('--mailboxes <n>', 'mailboxes, one client connection each (default 20, 10 with --quick)')
      .option('--upstream-tls', "the proxy's upstream leg over STARTTLS")
      .option(
        '--style <style>',
        'the provider the simulator plays: google or microsoft (rotating refresh tokens)',
      )
      .option('--out <file.md>', 'also write the markdown report here')
      .option('--json <file>', 'also write the JSON report here'),
  check(v: OptionValues): ChaosCliOptions {
    const quick = v.quick === true;
    const int = (name: 'rate' | 'mailboxes', dflt: number, min: number) =>
      v[name] === undefined ? dflt : numberOption(name, v[name], min, true);
    const only = (v.only as string | undefined)
      ?.split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const unknown = (only ?? []).filter((n) => !SCENARIOS.some((s) => s.name === n));
    if (unknown.length) throw new Error(`--only: unknown scenario ${unknown.join(', ')}`);
    const style = v.style === undefined ? undefined : choiceOption('style', v.style as string, STYLES);
    return {
      quick,
      rate: int('rate', quick ? 100 : 200, 1),
      mailboxes: int('mailboxes', quick ? 10 : 20, 4),
      ...(v.upstreamTls ? { upstreamTls: true } : {}),
      ...(style ? { style } : {}),
      ...(only ? { only } : {}),
      ...(v.out ? { out: v.out as string } : {}),
      ...(v.json ? { json: v.json as string } : {}),
    };
  },
};

export const parseChaosArgs = (argv: string[]): ChaosCliOptions => parseToolArgs(chaosTool, argv);

runTool(import.meta.url, 'chaos', chaosTool, async (opts, argv) => {
  const { out, json, ...chaos } = opts;
  const report = await runChaos(chaos);
  const md = renderChaosMarkdown(report, `npm run chaos -- ${argv.join(' ')}`.trim());
  process.stdout.write(md);
  if (out) fs.writeFileSync(out, md);
  if (json) fs.writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  return report.pass ? 0 : 1;
});
