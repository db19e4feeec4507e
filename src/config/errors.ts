// Config errors carry every problem found, each named by its path in the user's file, so `check`
// and the admin API can list them all at once instead of making the user fix them one by one.
import { formatIssue, type Issue } from '../shared/issue.js';

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly issues: Issue[];
  /** warnings gathered before the errors were found (e.g. unset environment variables) */
  readonly warnings: string[];
  constructor(issues: Issue[], warnings: string[] = []) {
    super(
      issues.length === 1
        ? `invalid configuration: ${formatIssue(issues[0]!)}`
        : `invalid configuration (${issues.length} problems):\n` + issues.map(formatIssue).join('\n'),
    );
    this.name = 'ConfigError';
    this.issues = issues;
    this.warnings = warnings;
  }
}

const IDENT = /^[A-Za-z_$][\w$-]*$/;

/** ['accounts', 3, 'provider'] -> `accounts[3].provider`; odd keys are quoted: `providers["my sim"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else {
      const key = String(seg);
      if (IDENT.test(key)) out += out ? `.${key}` : key;
      else out += `[${JSON.stringify(key)}]`;
    }
  }
  return out;
}

/** Join a prefix such as `accounts[2]` (or `accounts.yaml: accounts[2]`) with a relative path. */
export function joinPath(prefix: string, rel: string): string {
  if (!prefix) return rel;
  if (!rel) return prefix;
  return rel.startsWith('[') ? prefix + rel : `${prefix}.${rel}`;
}

/** Short description of a value for "expected X, got Y" messages (never echoes long strings). */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return v.length > 40 ? `a string "${v.slice(0, 37)}..."` : `"${v}"`;
  return `${typeof v} ${String(v)}`;
}
