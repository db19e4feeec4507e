// setup-cost.js's command line: every bad value is refused naming its option.
import { describe, expect, it } from 'vitest';
import { parseSetupCostArgs } from '../../../src/tools/bench/setup-cost.js';

describe('setup-cost options', () => {
  it('defaults to 3 rounds of 200 resumed STARTTLS setups', () => {
    expect(parseSetupCostArgs([])).toEqual({ n: 200, rounds: 3, security: 'starttls', reuse: true });
    expect(parseSetupCostArgs(['--n', '50', '--security', 'none', '--no-session-reuse'])).toEqual({
      n: 50,
      rounds: 3,
      security: 'none',
      reuse: false,
    });
  });

  it('names the bad option', () => {
    expect(() => parseSetupCostArgs(['--n', '0'])).toThrow(/--n: must be a whole number >= 1/);
    expect(() => parseSetupCostArgs(['--rounds', '1.5'])).toThrow(/--rounds/);
    expect(() => parseSetupCostArgs(['--security', 'tls'])).toThrow(/--security: expected starttls or none/);
    expect(() => parseSetupCostArgs(['--bogus'])).toThrow(/unknown option/);
  });
});
