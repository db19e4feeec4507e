import { describe, expect, it } from 'vitest';
import { passThrough } from '../../src/relay/pass-through.js';

describe('passThrough', () => {
  it('keeps code and enhanced code, prefixes upstream:, joins multi-line text', () => {
    expect(passThrough({ code: 550, enhanced: '5.1.1', text: 'No such user\nSee https://example' })).toEqual({
      code: 550,
      enhanced: '5.1.1',
      text: 'upstream: No such user / See https://example',
    });
  });
  it('fills a missing enhanced code from the class of the reply', () => {
    expect(passThrough({ code: 451, enhanced: '', text: 'later' }).enhanced).toBe('4.0.0');
    expect(passThrough({ code: 250, enhanced: '', text: 'ok' }).enhanced).toBe('2.0.0');
  });
});
