// providers.<name>.smtp.chunking: absent = use BDAT when offered (the built-ins set nothing), false
// kept through the field-by-field smtp merge, anything but a boolean refused naming the key.
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { issuesOf } from './helpers.js';

const parse = (raw: unknown) => parseConfig(raw, { baseDir: '/srv/proxy', env: {} });

describe('providers.*.smtp.chunking', () => {
  it('is absent by default and kept when set, on a built-in and on a new provider', async () => {
    const { config } = await parse({
      providers: {
        google: { smtp: { chunking: false } },
        sim: {
          tokenUrl: 'http://127.0.0.1:8089/token',
          smtp: { host: '127.0.0.1', port: 2626, chunking: true },
        },
      },
    });
    expect(config.providers.google!.smtp).toEqual({
      host: 'smtp.gmail.com',
      port: 587,
      security: 'starttls',
      rejectUnauthorized: true,
      chunking: false,
    });
    expect(config.providers.sim!.smtp.chunking).toBe(true);
    expect(config.providers.microsoft!.smtp.chunking).toBeUndefined();
  });

  it('refuses a value that is not a boolean', async () => {
    const issues = await issuesOf(parse({ providers: { google: { smtp: { chunking: 'sometimes' } } } }));
    expect(issues.map((i) => i.path)).toEqual(['providers.google.smtp.chunking']);
  });
});
