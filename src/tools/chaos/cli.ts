#!/usr/bin/env node
// `npm run chaos [-- --quick] [--only a,b] [--rate N] [--mailboxes N] [--out FILE.md] [--json FILE]`
// Exit 0 when every scenario passes, 1 when one fails, 2 on bad options.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { renderChaosMarkdown } from './report.js';
import { runChaos, type ChaosOptions } from './run.js';
import { SCENARIOS } from './scenarios.js';
import { STYLES } from '../harness/env.js';
import { choiceOption, numberOption, runTool } from '../harness/tool-cli.js';

const USAGE = `usage: npm run chaos -- [--quick] [--only ${SCENARIOS.map((s) => s.name).join(',')}]
  [--rate 200] [--mailboxes 20] [--upstream-tls] [--style google|microsoft] [--out FILE.md] [--json FILE]`;

export function parseChaosArgs(argv: string[]): ChaosOptions & { out?: string; json?: string } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      rate: { type: 'string' },
      mailboxes: { type: 'string' },
      'upstream-tls': { type: 'boolean', default: false },
      style: { type: 'string' },
      out: { type: 'string' },
      json: { type: 'string' },
    },
  });
  const int = (name: 'rate' | 'mailboxes', dflt: number, min: number) =>
    values[name] === undefined ? dflt : numberOption(name, values[name], min, true);
  const only = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = (only ?? []).filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`--only: unknown scenario ${unknown.join(', ')}`);
  const style = values.style === undefined ? undefined : choiceOption('style', values.style, STYLES);
  return {
    quick: values.quick ?? false,
    rate: int('rate', values.quick ? 100 : 200, 1),
    mailboxes: int('mailboxes', values.quick ? 10 : 20, 4),
    ...(values['upstream-tls'] ? { upstreamTls: true } : {}),
    ...(style ? { style } : {}),
    ...(only ? { only } : {}),
    ...(values.out ? { out: values.out } : {}),
    ...(values.json ? { json: values.json } : {}),
  };
}

runTool(import.meta.url, 'chaos', USAGE, parseChaosArgs, async (opts, argv) => {
  const { out, json, ...chaos } = opts;
  const report = await runChaos(chaos);
  const md = renderChaosMarkdown(report, `npm run chaos -- ${argv.join(' ')}`.trim());
  process.stdout.write(md);
  if (out) fs.writeFileSync(out, md);
  if (json) fs.writeFileSync(json, JSON.stringify(report, null, 2) + '\n');
  return report.pass ? 0 : 1;
});
