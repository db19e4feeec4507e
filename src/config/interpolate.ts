// `${VAR}` and `${VAR:-default}` in string values (never in keys). `$${` is a literal `${`, so a
// password containing "${" can still be written.

import { formatPath } from './errors.js';

export interface UnsetVariable {
  name: string;
  /** where it was used, e.g. `http.adminToken` */
  path: string;
}

const PATTERN = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export function interpolateString(
  s: string,
  env: NodeJS.ProcessEnv,
  onUnset: (name: string) => void,
): string {
  if (!s.includes('${')) return s;
  return s.replace(PATTERN, (match, name: string | undefined, fallback: string | undefined) => {
    if (match === '$${') return '${';
    const value = env[name!];
    // `:-` follows the shell: the default also applies when the variable is set but empty.
    if (fallback !== undefined) return value ? value : fallback;
    if (value === undefined) {
      onUnset(name!);
      return '';
    }
    return value;
  });
}

/** A copy of `value` with every string interpolated; reports each unset variable with its path. */
export function interpolateEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  pathPrefix: PropertyKey[] = [],
): { value: unknown; unset: UnsetVariable[] } {
  const unset: UnsetVariable[] = [];
  const walk = (v: unknown, path: PropertyKey[]): unknown => {
    if (typeof v === 'string') {
      return interpolateString(v, env, (name) => unset.push({ name, path: formatPath(path) }));
    }
    if (Array.isArray(v)) return v.map((item, i) => walk(item, [...path, i]));
    if (v !== null && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(v)) out[k] = walk(item, [...path, k]);
      return out;
    }
    return v;
  };
  return { value: walk(value, pathPrefix), unset };
}

export function unsetWarning(u: UnsetVariable): string {
  return `${u.path}: environment variable ${u.name} is not set; using an empty string`;
}
