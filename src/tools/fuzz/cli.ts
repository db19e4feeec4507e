#!/usr/bin/env node
// `npm run fuzz -- [--cases N | --minutes M] [--seed S] [--concurrency C] [--only family,...]
//   [--no-connection-attacks] [--json FILE]`. Exit 0 without findings, 1 with, 2 on bad options.
import type { OptionValues } from 'commander';
import { FAMILIES, type Family } from './cases.js';
import { runFuzz, type FuzzOptions } from './run.js';
import {
  listOption,
  numberOption,
  parseToolArgs,
  runTool,
  seedOption,
  toolCommand,
  writeReports,
  type Tool,
} from '../harness/tool-cli.js';

type FuzzCliOptions = FuzzOptions & { json?: string };

const fuzzTool: Tool<FuzzCliOptions> = {
  program: () =>
    toolCommand(
      'npm run fuzz --',
      'seeded malformed and hostile SMTP sessions against a real proxy; exit 0 without findings',
    )
      .option('--cases <n>', 'how many cases', '2000')
      .option('--minutes <m>', 'run for this long instead of a number of cases')
      .option('--seed <s>', 'replay the cases of this seed (default: a random one, printed)')
      .option('--concurrency <n>', 'cases at once', '8')
      .option('--only <families>', `comma-separated case families: ${FAMILIES.join(',')}`)
      .option('--no-connection-attacks', 'skip slowloris and the idle-connection flood')
      .option('--json <file>', 'also write the JSON report here'),
  check(v: OptionValues): FuzzCliOptions {
    const only = listOption<Family>('only', v.only, FAMILIES, 'family');
    return {
      cases: numberOption('cases', v.cases, 1, true),
      ...(v.minutes !== undefined ? { minutes: numberOption('minutes', v.minutes, 0.01, false) } : {}),
      seed: seedOption(v.seed),
      concurrency: numberOption('concurrency', v.concurrency, 1, true),
      ...(only ? { only } : {}),
      connectionAttacks: v.connectionAttacks !== false,
      ...(v.json ? { json: v.json as string } : {}),
    };
  },
};

export const parseFuzzArgs = (argv: string[]): FuzzCliOptions => parseToolArgs(fuzzTool, argv);

runTool(import.meta.url, 'fuzz', fuzzTool, async (opts) => {
  const { json, ...fuzz } = opts;
  process.stderr.write(`fuzz: seed ${fuzz.seed} (--seed ${fuzz.seed} replays these cases)\n`);
  const r = await runFuzz(fuzz);
  const mib = (b: number) => (b / 2 ** 20).toFixed(0);
  process.stdout.write(
    `fuzz: ${r.cases} cases in ${r.durationSec} s (${r.casesPerSec}/s), seed ${r.seed}; ${r.replies} replies, all checked; ` +
      `${r.deliveredClaims} delivered, all upstream; RSS ${mib(r.rssStartBytes)} -> max ${mib(r.rssMaxBytes)} MiB; ` +
      `fds ${r.fdsBefore} -> ${r.fdsAfter}\n` +
      `per family: ${Object.entries(r.perFamily)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}\n` +
      Object.entries(r.attacks)
        .map(([k, v]) => `${k}: ${v}\n`)
        .join('') +
      (r.findings.length
        ? `FINDINGS (${r.findings.length}):\n` +
          r.findings
            .map(
              (f) => `  case ${f.case} (${f.family}): ${f.problem}${f.sample ? ` -- sent ${f.sample}` : ''}`,
            )
            .join('\n') +
          '\n'
        : 'no findings\n'),
  );
  writeReports({ json }, undefined, r);
  return r.ok ? 0 : 1;
});
