import { describe, expect, it } from 'vitest';
import {
  bucketOf,
  formatSummary,
  parsePerfSummaryArgs,
  summarizePerfScript,
} from '../../../src/tools/bench/perf-summary.js';

// stacks as `perf script -F tid,ip,sym,dso` prints them, leaf first
const write = [
  'ffffffff8206e8cb tcp_sendmsg ([kernel.kallsyms])',
  'fde9d __GI___writev (/usr/lib/x86_64-linux-gnu/libc.so.6)',
  '9dd4a6 non-virtual thunk to node::LibuvStreamWrap::DoTryWrite(uv_buf_t**, unsigned long*) (/usr/bin/node)',
  '7fa1681cd674 JS:*writevGeneric node:internal/stream_base_commons:123:23 (/tmp/perf-1.map)',
  '7fa168224208 JS:*flush file:///opt/x/dist/smtp/reply-patch.js:8:15 (/tmp/perf-1.map)',
];
const tlsWrite = [
  write[0]!,
  write[1]!,
  write[2]!,
  '9e0000 node::crypto::TLSWrap::EncOut (/usr/bin/node)',
  write[3]!,
];
const smtpServer = [
  '14d1546 Builtins_KeyedLoadIC_Megamorphic (/usr/bin/node)',
  '7fa1 JS:*_parseAddressCommand file:///opt/x/node_modules/smtp-server/dist/esm/smtp-connection.js:1111:25 (/tmp/perf-1.map)',
];
const session = ['7fa1 JS:*process file:///opt/x/dist/smtp/session.js:200:10 (/tmp/perf-1.map)'];
const glue = ['7fa1 JS:*deliver file:///opt/x/dist/upstream/pool.js:96:18 (/tmp/perf-1.map)'];
const wait = [
  'ffffffff81 finish_task_switch.isra.0 ([kernel.kallsyms])',
  'ffffffff82 schedule ([kernel.kallsyms])',
  'abc epoll_pwait (/usr/lib/x86_64-linux-gnu/libc.so.6)',
  '14ac92c uv__io_poll (/usr/bin/node)',
];
const gc = [
  'c1 v8::internal::Scavenger::Process (/usr/bin/node)',
  'c2 v8::internal::Heap::Scavenge (/usr/bin/node)',
];

describe('perf-summary', () => {
  it('puts a sample in the bucket of its syscall, else of its innermost JavaScript module', () => {
    expect(bucketOf(write)).toBe('socket writes (syscalls, TCP loopback processing)');
    expect(bucketOf(tlsWrite)).toBe('socket writes through TLS (encryption + syscalls)');
    expect(bucketOf(smtpServer)).toBe('smtp-server (parsing, command dispatch, its streams)');
    expect(bucketOf(session)).toBe('client SMTP side (src/smtp: session, parser, DATA reader)');
    expect(bucketOf(glue)).toBe('relay glue (our code)');
    expect(bucketOf(wait)).toBe('event loop: epoll, sleeping and waking (kernel)');
    expect(bucketOf(gc)).toBe('GC');
    expect(bucketOf(['7f JS:*write file:///opt/x/node_modules/pino/lib/proto.js:1:1 (m)'])).toBe('logging');
  });

  it('sums a perf script into shares and µs per message', () => {
    const block = (tid: string, frames: string[]) => `${tid} \n\t${frames.join('\n\t')}\n`;
    const text = [block('7', write), block('7', write), block('7', glue), block('9', gc)].join('\n');
    const s = summarizePerfScript(text);
    expect(s.samples).toBe(4);
    expect(s.threads).toEqual(
      new Map([
        ['7', 3],
        ['9', 1],
      ]),
    );
    expect(s.buckets.get('socket writes (syscalls, TCP loopback processing)')).toBe(2);
    const md = formatSummary(s, 400);
    expect(md).toContain('| socket writes (syscalls, TCP loopback processing) | 50.0 % | 200 |');
    expect(md).toContain('| GC | 25.0 % | 100 |');
  });

  it('names a bad option', () => {
    expect(() => parsePerfSummaryArgs([])).toThrow(/--data/);
    expect(() => parsePerfSummaryArgs(['--data', 'p.data', '--us-per-message', 'x'])).toThrow(
      /--us-per-message/,
    );
    expect(parsePerfSummaryArgs(['--data', 'p.data', '--us-per-message', '350'])).toEqual({
      data: 'p.data',
      usPerMessage: 350,
    });
  });
});
