#!/usr/bin/env node
// `npm run soak -- --minutes M`: see run.ts. Exit 0 on pass, 1 on a failed invariant or trend, 2 on
// bad options.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { renderSoakMarkdown } from './report.js';
import { runSoak, type SoakOptions } from './run.js';
import { MAX_MESSAGE_IDS } from '../sim/types.js';
import { STYLES } from '../harness/env.js';
import { choiceOption, numberOption, runTool } from '../harness/tool-cli.js';

const USAGE = `usage: npm run soak -- [--minutes 60] [--rate 833] [--mailboxes 100] [--connections 50]
  [--sample-sec 10] [--fault-every-sec 60 (0 = none)] [--segment-sec 60] [--seed N]
  [--token-lifetime-sec 120] [--size 2048] [--warmup-sec S] [--upstream-tls] [--style google|microsoft] [--json FILE] [--out FILE.md]`;

export function parseSoakArgs(argv: string[]): SoakOptions & { json?: string; out?: string } {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      minutes: { type: 'string', default: '60' },
      rate: { type: 'string', default: '833' },
      mailboxes: { type: 'string', default: '100' },
      connections: { type: 'string', default: '50' },
      'sample-sec': { type: 'string', default: '10' },
      'fault-every-sec': { type: 'string', default: '60' },
      'segment-sec': { type: 'string', default: '60' },
      seed: { type: 'string' },
      'token-lifetime-sec': { type: 'string', default: '120' },
      size: { type: 'string', default: '2048' },
      'warmup-sec': { type: 'string' },
      'upstream-tls': { type: 'boolean', default: false },
      style: { type: 'string' },
      json: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    process.exit(0);
  }
  const n = (name: keyof typeof values, min: number, integer = false) =>
    numberOption(name, values[name], min, integer);
  const opts = {
    minutes: n('minutes', 0.05),
    rate: n('rate', 1),
    mailboxes: n('mailboxes', 1, true),
    connections: n('connections', 1, true),
    sampleSec: n('sample-sec', 1),
    faultEverySec: n('fault-every-sec', 0),
    segmentSec: n('segment-sec', 5),
    seed: values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : n('seed', 0, true),
    tokenLifetimeSec: n('token-lifetime-sec', 10, true),
    size: n('size', 256, true),
    ...(values['warmup-sec'] !== undefined ? { warmupSec: n('warmup-sec', 0) } : {}),
    ...(values['upstream-tls'] ? { upstreamTls: true } : {}),
    ...(values.style !== undefined ? { style: choiceOption('style', values.style, STYLES) } : {}),
    ...(values.json ? { json: values.json } : {}),
    ...(values.out ? { out: values.out } : {}),
  };
  // A segment's ids must fit in the simulator's list, or its accepted messages would look lost.
  if (opts.rate * opts.segmentSec > MAX_MESSAGE_IDS)
    throw new Error(
      `--segment-sec: ${opts.segmentSec} s at ${opts.rate} msg/s exceeds the simulator's ${MAX_MESSAGE_IDS} stored ids`,
    );
  return opts;
}

runTool(import.meta.url, 'soak', USAGE, parseSoakArgs, async (opts, argv) => {
  const { json, out, ...soak } = opts;
  const command = `npm run soak -- ${argv.join(' ')}`.trim();
  process.stderr.write(`soak: seed ${soak.seed} (pass --seed ${soak.seed} to replay the fault schedule)\n`);
  const result = await runSoak(soak);
  const md = renderSoakMarkdown(result, command);
  process.stdout.write(md);
  if (json) fs.writeFileSync(json, JSON.stringify(result, null, 2) + '\n');
  if (out) fs.writeFileSync(out, md);
  if (!result.ok)
    process.stderr.write(`soak FAILED:\n${result.failures.map((f) => `  - ${f}`).join('\n')}\n`);
  return result.ok ? 0 : 1;
});
