// The chaos results as a Markdown table.
import { describeUpstream } from '../harness/env.js';
import type { ChaosReport } from './run.js';

export function renderChaosMarkdown(r: ChaosReport, command: string): string {
  const out: string[] = [];
  out.push(`Command: \`${command}\``);
  out.push('');
  out.push(
    `${r.startedAt}, ${r.durationSec} s: load ${r.options.rate} msg/s over ${r.options.mailboxes} mailboxes ` +
      `(one client connection each), ${describeUpstream(r.options.style, r.options.upstreamTls)}, ${r.options.quick ? 'quick' : 'full'} timings. Verdict: **${r.pass ? 'pass' : 'FAIL'}**.`,
  );
  out.push('');
  out.push(
    '| scenario | messages | 250 | 4xx | 5xx | no reply | abandoned | lost | recovery s | /readyz failures | fds before → after (keep-alive to the token endpoint) | upstream conns before → after (proxy / upstream) | result |',
  );
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|');
  for (const x of r.results) {
    const c = x.counts;
    const a = x.after;
    out.push(
      `| ${x.name} | ${c.messages} | ${c.accepted} | ${c.deferred} | ${c.rejected} | ${c.noReply} | ${c.abandoned} | ` +
        `${x.lost + x.abandonedDelivered} | ${x.recoverySec ?? 'n/a'} | ${x.notReady}/${x.readyPolls}${x.readySlow ? ` (${x.readySlow} slow)` : ''} | ` +
        `${x.before.fds} → ${a ? `${a.fds} (${x.before.tokenSockets} → ${a.tokenSockets})` : 'exited'} | ${x.before.upstream}/${x.before.simOpen} → ${a ? `${a.upstream}/${a.simOpen}` : 'exited'} | ` +
        `${x.pass ? 'pass' : `**FAIL**: ${x.failures.join('; ')}`} |`,
    );
  }
  out.push('');
  for (const x of r.results) out.push(`- **${x.name}**: ${x.fault}.`);
  return out.join('\n') + '\n';
}
