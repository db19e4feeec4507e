// Refresh-token reuse detection (RFC 9700 section 4.14.2) and the `violations` summary in /stats,
// against the real `simulate` process where the CLI flags matter, in-process where the clock does.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { HostPort } from '../../../src/config/types.js';
import { simRefreshToken, startSimulator, type Simulator } from '../../../src/tools/sim/index.js';
import { startSim, type SimProc } from '../../helpers/procs.js';
import { authedClient, ephemeral, postForm, RawSmtp, simulateProgram, xoauth2 } from './helpers.js';
import { consent, RFC7636_VERIFIER, tenantUrl } from './oauth-helpers.js';

const refreshAt = (tokenUrl: string, rt: string, clientId = 'cid') =>
  postForm(tokenUrl, { grant_type: 'refresh_token', client_id: clientId, refresh_token: rt });

/** The first line of the reply to AUTH XOAUTH2 on a fresh connection. */
async function authReply(smtp: HostPort, user: string, token: string): Promise<string> {
  const c = await RawSmtp.connect(smtp);
  try {
    await c.read();
    await c.cmd('EHLO client.test');
    return (await c.cmd(`AUTH XOAUTH2 ${xoauth2(user, token)}`))[0]!;
  } finally {
    c.close();
  }
}

const smtpOf = (p: SimProc): HostPort => ({ host: '127.0.0.1', port: p.smtpPort });
const REUSED = /refresh token reuse detected; the grant is revoked\.$/;

describe('simulate --rotate-refresh-tokens --detect-refresh-reuse (microsoft, real process)', () => {
  let sim: SimProc;
  beforeAll(async () => {
    sim = await startSim(['--style', 'microsoft', '--rotate-refresh-tokens', '--detect-refresh-reuse']);
  });
  afterAll(() => sim.stop());

  it('rotates; a rotated-away token presented again revokes the whole grant and is counted', async () => {
    const ann = 'ann@example.com';
    const r0 = simRefreshToken(ann, 'start');
    const first = await refreshAt(sim.tokenUrl, r0);
    expect(first.status).toBe(200);
    const r1: string = first.body.refresh_token;
    expect(r1).not.toBe(r0);
    const second = await refreshAt(sim.tokenUrl, r1);
    expect(second.status).toBe(200);
    const r2: string = second.body.refresh_token;
    expect(r2).not.toBe(r1);
    const [a1, a2] = [first.body.access_token as string, second.body.access_token as string];
    expect(await authReply(smtpOf(sim), ann, a1)).toBe('235 2.7.0 Authentication successful');
    // another user's grant, which the reuse must not touch
    const bob = await refreshAt(sim.tokenUrl, simRefreshToken('bob@example.com', 'start'));
    expect(bob.status).toBe(200);

    // a second instance still holding the configured token, two rotations behind
    const reused = await refreshAt(sim.tokenUrl, r0);
    expect(reused.status).toBe(400);
    expect(reused.body.error).toBe('invalid_grant');
    expect(reused.body.error_codes).toEqual([50173]);
    expect(reused.body.error_description).toMatch(/^AADSTS50173: The provided grant has expired/);
    expect(reused.body.error_description.split(' Trace ID:')[0]).toMatch(REUSED);

    // the newest refresh token is revoked with the grant: a plain invalid_grant, not a second reuse
    const newest = await refreshAt(sim.tokenUrl, r2);
    expect(newest.status).toBe(400);
    expect(newest.body.error_codes).toEqual([70000]);
    for (const at of [a1, a2])
      expect(await authReply(smtpOf(sim), ann, at)).toMatch(/^535 5\.7\.3 Authentication unsuccessful/);
    expect(await authReply(smtpOf(sim), 'bob@example.com', bob.body.access_token)).toBe(
      '235 2.7.0 Authentication successful',
    );
    expect((await refreshAt(sim.tokenUrl, bob.body.refresh_token)).status).toBe(200);

    const stats = await sim.stats();
    expect(stats.violations).toEqual({
      concurrentConnections: 0,
      rate: 0,
      refreshTokenReuse: 1,
      revokedForReuse: [ann],
    });
    expect(stats.refreshesPerUser).toEqual({ [ann]: 2, 'bob@example.com': 2 });
    // every request, refused ones included
    expect(stats.tokenRequestsPerUser).toEqual({ [ann]: 4, 'bob@example.com': 2 });
    expect(stats.oauth.refused).toMatchObject({ refresh_token_reused: 1 });

    // reset clears the counters, not the revocation
    await sim.control('/control/reset', {});
    const after = await sim.stats();
    expect(after.violations).toEqual({
      concurrentConnections: 0,
      rate: 0,
      refreshTokenReuse: 0,
      revokedForReuse: [],
    });
    expect(after.refreshesPerUser).toEqual({});
    expect((await refreshAt(sim.tokenUrl, r2)).status).toBe(400);
  });
});

describe('simulate --rotate-refresh-tokens without --detect-refresh-reuse (real process)', () => {
  let sim: SimProc;
  beforeAll(async () => {
    sim = await startSim(['--style', 'microsoft', '--rotate-refresh-tokens']);
  });
  afterAll(() => sim.stop());

  it('refuses only the old token; the newest one and the access tokens keep working', async () => {
    const cy = 'cy@example.com';
    const r0 = simRefreshToken(cy, 'start');
    const first = await refreshAt(sim.tokenUrl, r0);
    const r1: string = first.body.refresh_token;
    const old = await refreshAt(sim.tokenUrl, r0);
    expect(old.status).toBe(400);
    expect(old.body.error_codes).toEqual([70000]);
    expect(old.body.error_description).not.toMatch(/reuse/);
    expect((await refreshAt(sim.tokenUrl, r1)).status).toBe(200);
    expect(await authReply(smtpOf(sim), cy, first.body.access_token)).toBe(
      '235 2.7.0 Authentication successful',
    );
    const stats = await sim.stats();
    expect(stats.violations).toMatchObject({ refreshTokenReuse: 0, revokedForReuse: [] });
    expect(stats.refreshesPerUser).toEqual({ [cy]: 2 });
  });
});

describe('simulate limits as violations (microsoft, real process)', () => {
  let sim: SimProc;
  beforeAll(async () => {
    sim = await startSim([
      '--style',
      'microsoft',
      '--max-connections-per-user',
      '1',
      '--messages-per-minute-per-user',
      '1',
    ]);
  });
  afterAll(() => sim.stop());

  it('counts 432 4.3.2 and 451 4.7.0 in violations and in limitRejections alike', async () => {
    const dee = 'dee@example.com';
    const at = (await refreshAt(sim.tokenUrl, simRefreshToken(dee))).body.access_token;
    const held = await RawSmtp.connect(smtpOf(sim));
    await held.read();
    await held.cmd('EHLO client.test');
    expect((await held.cmd(`AUTH XOAUTH2 ${xoauth2(dee, at)}`))[0]).toBe(
      '235 2.7.0 Authentication successful',
    );
    expect(await authReply(smtpOf(sim), dee, at)).toBe('432 4.3.2 Concurrent connections limit exceeded');
    expect((await held.cmd(`MAIL FROM:<${dee}>`))[0]).toMatch(/^250 /);
    expect((await held.cmd('RSET'))[0]).toMatch(/^250 /);
    expect((await held.cmd(`MAIL FROM:<${dee}>`))[0]).toMatch(/^451 4\.7\.0 /);
    held.close();
    const stats = await sim.stats();
    expect(stats.violations).toMatchObject({ concurrentConnections: 1, rate: 1, refreshTokenReuse: 0 });
    expect(stats.limitRejections).toEqual({ connections: 1, rate: 1 });
    await sim.control('/control/reset', {});
    expect((await sim.stats()).violations).toMatchObject({ concurrentConnections: 0, rate: 0 });
  });
});

describe('refresh reuse detection in-process: bound grants and the grace', () => {
  afterEach(() => vi.useRealTimers());

  it('revokes an authorization-code grant family (access token from the code included)', async () => {
    const sim: Simulator = await startSimulator({
      ...ephemeral,
      style: 'microsoft',
      rotateRefreshTokens: true,
      detectRefreshReuse: true,
      clients: [{ clientId: 'app-id', tenant: 'contoso.example' }],
    });
    try {
      const scope = 'https://outlook.office.com/SMTP.Send offline_access';
      const redirectUri = 'http://127.0.0.1:53682/callback';
      const p = { clientId: 'app-id', redirectUri, scope, state: 's' };
      const code = (
        await consent(tenantUrl(sim, 'contoso.example', 'authorize'), p, 'eve@contoso.example')
      ).searchParams.get('code')!;
      const tokenUrl = tenantUrl(sim, 'contoso.example', 'token');
      const issued = await postForm(tokenUrl, {
        grant_type: 'authorization_code',
        client_id: 'app-id',
        code,
        redirect_uri: redirectUri,
        code_verifier: RFC7636_VERIFIER,
        scope,
      });
      expect(issued.status).toBe(200);
      expect(await authReply(sim.smtp, 'eve@contoso.example', issued.body.access_token)).toMatch(/^235 /);
      const rotated = await refreshAt(tokenUrl, issued.body.refresh_token, 'app-id');
      expect(rotated.status).toBe(200);
      // another client presenting the old token burns nothing
      const stranger = await refreshAt(tokenUrl, issued.body.refresh_token, 'other-app');
      expect(stranger.body.error_codes).toEqual([700016]);
      expect((await refreshAt(tokenUrl, rotated.body.refresh_token, 'app-id')).status).toBe(200);
      const latest = sim.stats().refreshesPerUser['eve@contoso.example'];
      expect(latest).toBe(2);
      const reused = await refreshAt(tokenUrl, issued.body.refresh_token, 'app-id');
      expect(reused.body.error_description).toMatch(/^AADSTS50173: /);
      expect(await authReply(sim.smtp, 'eve@contoso.example', issued.body.access_token)).toMatch(
        /^535 5\.7\.3 Authentication unsuccessful/,
      );
      expect(sim.stats().violations.revokedForReuse).toEqual(['eve@contoso.example']);
    } finally {
      await sim.close();
    }
  });

  it('with a grace, a retry of the token just replaced gets the same successor; later, reuse', async () => {
    const sim = await startSimulator({
      ...ephemeral,
      rotateRefreshTokens: true,
      detectRefreshReuse: true,
      refreshReuseGraceSec: 30,
    });
    try {
      vi.useFakeTimers({ toFake: ['Date'] });
      const fay = 'fay@example.com';
      const r0 = simRefreshToken(fay, 'start');
      const first = await refreshAt(sim.tokenUrl, r0);
      const r1: string = first.body.refresh_token;
      const retry = await refreshAt(sim.tokenUrl, r0);
      expect(retry.status).toBe(200);
      expect(retry.body.refresh_token).toBe(r1);
      expect(retry.body.access_token).not.toBe(first.body.access_token);
      // past the grace the same presentation is reuse (google wording)
      vi.setSystemTime(Date.now() + 31_000);
      const late = await refreshAt(sim.tokenUrl, r0);
      expect(late.body).toEqual({
        error: 'invalid_grant',
        error_description:
          'Token has been expired or revoked: refresh token reuse detected; the grant is revoked.',
      });
      expect((await refreshAt(sim.tokenUrl, r1)).status).toBe(400);
      for (const at of [first.body.access_token, retry.body.access_token])
        await expect(authedClient(sim, fay, at)).rejects.toThrow(/AUTH failed/);
      expect(sim.stats().violations.refreshTokenReuse).toBe(1);
      expect(sim.stats().refreshesPerUser).toEqual({ [fay]: 2 });

      // within the grace but no longer the immediate predecessor: reuse
      const g0 = simRefreshToken('gus@example.com', 'start');
      const g1: string = (await refreshAt(sim.tokenUrl, g0)).body.refresh_token;
      const g2: string = (await refreshAt(sim.tokenUrl, g1)).body.refresh_token;
      expect((await refreshAt(sim.tokenUrl, g0)).body.error_description).toMatch(REUSED);
      expect((await refreshAt(sim.tokenUrl, g2)).status).toBe(400);
      expect(sim.stats().violations.revokedForReuse).toEqual([fay, 'gus@example.com']);
    } finally {
      await sim.close();
    }
  });

  it('refuses the options without what they need', async () => {
    await expect(startSimulator({ ...ephemeral, detectRefreshReuse: true })).rejects.toThrow(
      'detectRefreshReuse: needs rotateRefreshTokens',
    );
    await expect(
      startSimulator({ ...ephemeral, rotateRefreshTokens: true, refreshReuseGraceSec: 5 }),
    ).rejects.toThrow('refreshReuseGraceSec: needs detectRefreshReuse');
    for (const [args, text] of [
      [['--detect-refresh-reuse'], '--detect-refresh-reuse needs --rotate-refresh-tokens'],
      [
        ['--rotate-refresh-tokens', '--refresh-reuse-grace', '5'],
        '--refresh-reuse-grace needs --detect-refresh-reuse',
      ],
      [['--refresh-reuse-grace', '-1'], "option '--refresh-reuse-grace <sec>' argument '-1' is invalid"],
    ] as const) {
      const { cmd, errors } = simulateProgram();
      await expect(
        cmd.parseAsync(['simulate', '--smtp', '127.0.0.1:0', '--http', '127.0.0.1:0', ...args], {
          from: 'user',
        }),
      ).rejects.toThrow();
      expect(errors.join('')).toContain(text);
    }
  });
});
