import { describe, expect, it } from 'vitest';
import { parseSoakArgs } from '../../../src/tools/soak/cli.js';
import { runFailures } from '../../../src/tools/soak/run.js';
import type { TrendVerdict } from '../../../src/tools/soak/trend.js';

const ok: TrendVerdict = {
  series: 'rssBytes',
  unit: 'bytes',
  samples: 300,
  median: 1,
  slopePerHour: 0,
  limitPerHour: 1,
  verdict: 'ok',
};
const clean = {
  lost: 0,
  lostExamples: [],
  proxyAliveAtEnd: true,
  notReadySamples: 0,
  verdicts: [ok],
  totals: { error: 0 },
};

describe('soak verdict', () => {
  it('passes a clean run', () => {
    expect(runFailures(clean)).toEqual([]);
  });

  it('fails on a message without a reply, even when nothing was lost', () => {
    expect(runFailures({ ...clean, totals: { error: 3 } })).toEqual([
      '3 messages got no reply (connection lost, reply timeout or failed connect)',
    ]);
  });

  it('fails on loss, readiness, a dead proxy and a growing series, saying each', () => {
    const growing: TrendVerdict = { ...ok, verdict: 'growing', why: 'rssBytes grows 60 bytes/h' };
    expect(
      runFailures({
        ...clean,
        lost: 2,
        lostExamples: ['<a@b>'],
        proxyAliveAtEnd: false,
        notReadySamples: 1,
        verdicts: [ok, growing],
      }),
    ).toEqual([
      '2 messages got 250 but never reached the upstream (e.g. <a@b>)',
      'the proxy was not alive and healthy at the end',
      '/readyz was not 200 in 1 samples',
      'rssBytes grows 60 bytes/h',
    ]);
  });
});

describe('soak options', () => {
  it('takes the upstream leg over STARTTLS and a microsoft-style provider on request, and names a bad style', () => {
    expect(parseSoakArgs([])).not.toHaveProperty('upstreamTls');
    const o = parseSoakArgs(['--upstream-tls', '--style', 'microsoft']);
    expect([o.upstreamTls, o.style]).toEqual([true, 'microsoft']);
    expect(() => parseSoakArgs(['--style', 'yahoo'])).toThrow(
      '--style: expected google or microsoft, got "yahoo"',
    );
  });

  it('refuses a segment whose ids would not fit in the simulator list', () => {
    expect(parseSoakArgs(['--segment-sec', '2400']).segmentSec).toBe(2400); // 2.0 M ids at 833/s
    expect(() => parseSoakArgs(['--segment-sec', '2401'])).toThrow(
      /^--segment-sec: 2401 s at 833 msg\/s exceeds the simulator's 2000000 stored ids$/,
    );
  });
});
