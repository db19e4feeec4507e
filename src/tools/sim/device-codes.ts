// Device authorizations (RFC 8628): the device code the client polls with, the user code a person
// types on the verification page, and the polling discipline (section 3.5).
import { randomBytes, randomInt } from 'node:crypto';

export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  clientId: string;
  scope: string;
  tenant?: string;
  expiresAt: number;
  /** the interval this device code must keep between polls; slow_down raises it */
  intervalMs: number;
  lastPollAt?: number;
  status: 'pending' | 'approved' | 'denied' | 'redeemed';
  user?: string;
  family: string;
}

export type Poll =
  | { kind: 'expired' | 'slow_down' | 'pending' | 'denied' | 'redeemed' }
  | { kind: 'approved'; auth: DeviceAuthorization };

/** Microsoft's user codes: 9 characters from letters and digits that cannot be mistaken. */
const USER_CODE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
const REMEMBER_MS = 60 * 60_000;

export function normalizeUserCode(input: string): string {
  return input.replace(/[\s-]/g, '').toUpperCase();
}

export class DeviceCodes {
  private readonly byDevice = new Map<string, DeviceAuthorization>();
  private readonly byUser = new Map<string, DeviceAuthorization>();
  issued = 0;

  create(opts: {
    clientId: string;
    scope: string;
    tenant?: string;
    lifetimeMs: number;
    intervalMs: number;
  }): DeviceAuthorization {
    this.sweep();
    let userCode: string;
    do {
      userCode = Array.from(
        { length: 9 },
        () => USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)],
      ).join('');
    } while (this.byUser.has(userCode));
    const auth: DeviceAuthorization = {
      deviceCode: 'simdc.' + randomBytes(32).toString('base64url'),
      userCode,
      clientId: opts.clientId,
      scope: opts.scope,
      tenant: opts.tenant,
      expiresAt: Date.now() + opts.lifetimeMs,
      intervalMs: opts.intervalMs,
      status: 'pending',
      family: 'fam.' + randomBytes(12).toString('base64url'),
    };
    this.byDevice.set(auth.deviceCode, auth);
    this.byUser.set(userCode, auth);
    this.issued++;
    return auth;
  }

  get(deviceCode: string): DeviceAuthorization | undefined {
    return this.byDevice.get(deviceCode);
  }

  byUserCode(input: string): DeviceAuthorization | undefined {
    return this.byUser.get(normalizeUserCode(input));
  }

  /**
   * One poll of the token endpoint. Polling again sooner than the device code's interval (or a
   * forced slow_down, the fault) answers slow_down and raises the interval by `stepMs`; the first
   * poll is never too early. An approved code is redeemed by the poll that sees it.
   */
  poll(auth: DeviceAuthorization, stepMs: number, forceSlowDown: () => boolean): Poll {
    const now = Date.now();
    if (auth.status === 'redeemed') return { kind: 'redeemed' };
    if (auth.expiresAt <= now) return { kind: 'expired' };
    const early = auth.lastPollAt !== undefined && now - auth.lastPollAt < auth.intervalMs;
    auth.lastPollAt = now;
    if (early || forceSlowDown()) {
      auth.intervalMs += stepMs;
      return { kind: 'slow_down' };
    }
    if (auth.status === 'pending') return { kind: 'pending' };
    if (auth.status === 'denied') return { kind: 'denied' };
    auth.status = 'redeemed';
    return { kind: 'approved', auth };
  }

  private sweep(): void {
    const now = Date.now();
    for (const [code, auth] of this.byDevice) {
      if (auth.expiresAt + REMEMBER_MS > now) continue;
      this.byDevice.delete(code);
      this.byUser.delete(auth.userCode);
    }
  }
}
