// The simulated provider: a local stand-in for Google and Microsoft 365 (docs/simulator.md).
export { startSimulator, SIM_DEFAULTS } from './simulator.js';
export { simRefreshToken } from './state.js';
export { registerSimulateCommand } from './cli.js';
export { NO_FAULTS } from './faults.js';
export { DEFAULT_FLOWS } from './flows.js';
export { MAX_MESSAGE_IDS, MAX_MESSAGE_SIZE } from './types.js';
export type { ServiceAccountKeyFile } from './keys.js';
export type {
  SimClientInput,
  SimEndpoints,
  SimFaults,
  SimFlowSettings,
  SimOptions,
  SimPermission,
  SimRegisteredClient,
  SimRegisteredServiceAccount,
  SimServiceAccountInput,
  SimStats,
  SimStyle,
  Simulator,
} from './types.js';
