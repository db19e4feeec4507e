// The grants' public API in one import for the wiring (config, token manager, CLI).
export * from './authorization-code.js';
export * from './client-credentials.js';
export * from './device.js';
export * from './errors.js';
export * from './jwt-bearer.js';
export * from './loopback-redirect.js';
export * from './pkce.js';
export * from './providers.js';
export type { AccessToken, AuthorizedTokens } from './request.js';
export * from './service-account-key.js';
