// The upstream side: per-account pools of authenticated SMTP connections to Gmail / Microsoft 365.
export { UpstreamPools } from './pools.js';
export type { UpstreamAccount, TokenSource, Envelope, DeliveryResult, PoolStats } from './types.js';
