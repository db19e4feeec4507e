// File access for the loader: config/accounts documents, PEM files, path resolution. Only used at
// start-up, on reload and by offline commands, so plain async fs is fine.

import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';

/** Relative paths are relative to the config file's directory; "~/" is the home directory. */
export function resolvePath(baseDir: string, p: string): string {
  if (p === '~' || p.startsWith('~/')) return path.join(os.homedir(), p.slice(1));
  return path.resolve(baseDir, p);
}

/** How to name a file in messages: relative to baseDir when inside it, else absolute. */
export function displayPath(baseDir: string, abs: string): string {
  const rel = path.relative(baseDir, abs);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
}

export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e?.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'is a directory, expected a file';
    default:
      return e?.message ?? String(err);
  }
}

/** Thrown by readDocument; `message` is ready to show after the file's path. */
export class DocumentError extends Error {
  override name = 'DocumentError';
}

/**
 * Parse a YAML or JSON document (YAML 1.2 is a superset of JSON, so one parser serves both and
 * gives line numbers for either). An empty file is `null`.
 */
export function parseDocument(text: string): unknown {
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '';
    throw new DocumentError(
      `not valid YAML/JSON${where}: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
    );
  }
  return doc.toJS({ maxAliasCount: 100 });
}

export async function readDocument(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new DocumentError(`cannot read ${file}: ${describeFsError(err)}`);
  }
  return parseDocument(text);
}

/** PEM text of a certificate/key file, or a message naming the file. */
export async function readPem(file: string, what: string): Promise<{ pem: string } | { error: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    return { error: `cannot read ${what} file ${file}: ${describeFsError(err)}` };
  }
  if (!text.includes('-----BEGIN ')) return { error: `${file} is not a PEM file (no "-----BEGIN" line)` };
  return { pem: text };
}
