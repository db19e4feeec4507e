// The Node flags the `xoauth2-proxy` executable starts Node with: those on its shebang line
// (`#!/usr/bin/env -S node FLAGS`). The bench starts `serve` with exactly these, as a user's
// `xoauth2-proxy serve` runs, so it measures the product's own settings and no others.
import fs from 'node:fs';

/** The flags after `node` on a shebang line; none when the line has no `node` or no flags. */
export function shebangNodeFlags(firstLine: string): string[] {
  if (!firstLine.startsWith('#!')) return [];
  const words = firstLine.slice(2).trim().split(/\s+/);
  const node = words.findIndex((w) => w === 'node' || w.endsWith('/node'));
  return node < 0 ? [] : words.slice(node + 1).filter((w) => w.startsWith('--'));
}

export function binNodeFlags(cliPath: string): string[] {
  const fd = fs.openSync(cliPath, 'r');
  try {
    const buf = Buffer.alloc(256);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    return shebangNodeFlags(buf.subarray(0, n).toString('utf8').split('\n')[0] ?? '');
  } finally {
    fs.closeSync(fd);
  }
}
