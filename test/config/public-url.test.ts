// http.publicUrl: the external base URL of the HTTP listener (the web onboarding flow's redirect URI).
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { issuesOf } from './helpers.js';

const parse = (http: unknown) => parseConfig({ http }, { baseDir: '/srv/proxy', env: {} });

describe('http.publicUrl', () => {
  it('is absent by default (the web flow is off)', async () => {
    const { config } = await parse({});
    expect(config.http.publicUrl).toBeUndefined();
  });

  it('keeps origin and path, without a trailing slash', async () => {
    expect((await parse({ publicUrl: 'https://relay.example.com/' })).config.http.publicUrl).toBe(
      'https://relay.example.com',
    );
    expect((await parse({ publicUrl: 'http://127.0.0.1:9090' })).config.http.publicUrl).toBe(
      'http://127.0.0.1:9090',
    );
    expect((await parse({ publicUrl: 'https://example.com/xoauth2//' })).config.http.publicUrl).toBe(
      'https://example.com/xoauth2',
    );
  });

  it.each([
    ['relay.example.com', 'expected an http(s) URL'],
    ['ftp://relay.example.com', 'expected an http(s) URL'],
    ['https://relay.example.com/?a=1', 'without query'],
    ['https://relay.example.com/#x', 'without query, fragment'],
    ['https://user:pw@relay.example.com', 'credentials'],
  ])('refuses %s, naming the field', async (publicUrl, message) => {
    const issues = await issuesOf(parse({ publicUrl }));
    expect(issues).toHaveLength(1);
    expect(issues[0]!.path).toBe('http.publicUrl');
    expect(issues[0]!.message).toContain(message);
  });
});
