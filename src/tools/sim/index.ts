// The simulated provider: a local stand-in for Google and Microsoft 365 (SPEC section 6).
export { startSimulator, SIM_DEFAULTS } from './simulator.js';
export { simRefreshToken } from './state.js';
export { registerSimulateCommand } from './cli.js';
export { NO_FAULTS } from './faults.js';
export { MAX_MESSAGE_IDS, MAX_MESSAGE_SIZE } from './types.js';
export type { SimFaults, SimOptions, SimStats, SimStyle, Simulator } from './types.js';
