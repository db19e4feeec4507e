import { describe, expect, it } from 'vitest';
import { interpolateEnv } from '../../src/config/interpolate.js';

describe('interpolateEnv', () => {
  const env = { TOKEN: 'secret', EMPTY: '' };

  it('replaces ${VAR} in nested string values, not in keys or non-strings', () => {
    const { value, unset } = interpolateEnv(
      {
        http: { adminToken: '${TOKEN}', listen: 'x-${TOKEN}-y' },
        list: ['${TOKEN}', 5, true],
        '${TOKEN}': 1,
      },
      env,
    );
    expect(value).toEqual({
      http: { adminToken: 'secret', listen: 'x-secret-y' },
      list: ['secret', 5, true],
      '${TOKEN}': 1,
    });
    expect(unset).toEqual([]);
  });

  it('uses an empty string for unset variables and reports name and path', () => {
    const { value, unset } = interpolateEnv({ accounts: [{ clientSecret: 'a${NOPE}b' }] }, env);
    expect(value).toEqual({ accounts: [{ clientSecret: 'ab' }] });
    expect(unset).toEqual([{ name: 'NOPE', path: 'accounts[0].clientSecret' }]);
  });

  it('applies ${VAR:-default} when the variable is unset or empty, without a warning', () => {
    const { value, unset } = interpolateEnv(
      ['${NOPE:-dflt}', '${EMPTY:-d2}', '${TOKEN:-x}', '${NOPE:-}'],
      env,
    );
    expect(value).toEqual(['dflt', 'd2', 'secret', '']);
    expect(unset).toEqual([]);
  });

  it('keeps $${ as a literal ${ and leaves other dollars alone', () => {
    const { value } = interpolateEnv(['pa$${TOKEN}ss', '$scrypt$ln=14', 'a$b'], env);
    expect(value).toEqual(['pa${TOKEN}ss', '$scrypt$ln=14', 'a$b']);
  });
});
