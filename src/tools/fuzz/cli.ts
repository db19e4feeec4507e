#!/usr/bin/env node
// `npm run fuzz -- [--cases N | --minutes M] [--seed S] [--concurrency C] [--only family,...]
//   [--no-connection-attacks] [--json FILE]`. Exit 0 without findings, 1 with, 2 on bad options.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { FAMILIES, type Family } from './cases.js';
import { runFuzz, type FuzzOptions } from './run.js';
import { numberOption, runTool } from '../harness/tool-cli.js';

const USAGE = `usage: npm run fuzz -- [--cases 2000 | --minutes M] [--seed S] [--concurrency 8]
  [--only ${FAMILIES.join(',')}] [--no-connection-attacks] [--json FILE]`;

export function parseFuzzArgs(argv: string[]): FuzzOptions & { json?: string } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      cases: { type: 'string', default: '2000' },
      minutes: { type: 'string' },
      seed: { type: 'string' },
      concurrency: { type: 'string', default: '8' },
      only: { type: 'string' },
      'no-connection-attacks': { type: 'boolean', default: false },
      json: { type: 'string' },
    },
  });
  const num = (name: string, raw: string | undefined, min: number, integer: boolean) =>
    numberOption(name, raw, min, integer);
  const only = values.only
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = (only ?? []).filter((f) => !(FAMILIES as readonly string[]).includes(f));
  if (unknown.length)
    throw new Error(`--only: unknown family ${unknown.join(', ')} (known: ${FAMILIES.join(', ')})`);
  return {
    cases: num('cases', values.cases, 1, true),
    ...(values.minutes !== undefined ? { minutes: num('minutes', values.minutes, 0.01, false) } : {}),
    seed: values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : num('seed', values.seed, 0, true),
    concurrency: num('concurrency', values.concurrency, 1, true),
    ...(only ? { only: only as Family[] } : {}),
    connectionAttacks: !values['no-connection-attacks'],
    ...(values.json ? { json: values.json } : {}),
  };
}

runTool(import.meta.url, 'fuzz', USAGE, parseFuzzArgs, async (opts) => {
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
  if (json) fs.writeFileSync(json, JSON.stringify(r, null, 2) + '\n');
  return r.ok ? 0 : 1;
});
