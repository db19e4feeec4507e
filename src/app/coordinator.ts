// Which Coordinator a proxy process uses (src/coordination/README.md): Redis when `state.redis` is
// set (several hosts; with workers, each worker is one more instance), else the in-process one
// (today's behaviour). The worker processes of `serve --workers` pass their own factory.
import type { Config } from '../config/types.js';
import type { Coordinator } from '../coordination/types.js';
import { createInProcessCoordinator } from '../coordination/in-process.js';
import { RedisCoordinator } from '../coordination/redis.js';
import type { Logger } from '../shared/log.js';
import type { StateStore } from '../state/store.js';

export interface CoordinatorContext {
  config: Config;
  store: StateStore;
  log: Logger;
}

export type CoordinatorFactory = (ctx: CoordinatorContext) => Coordinator;

export const defaultCoordinator: CoordinatorFactory = ({ config, store, log }) => {
  const s = config.state;
  if (s.redis === undefined) return createInProcessCoordinator({ store, log, leaseTtlMs: s.leaseTtlMs });
  return new RedisCoordinator({
    url: s.redis,
    // the loader requires it with state.redis
    secretKey: s.secretKey!,
    // each process is an instance: its safe share while Redis is unreachable is limit / (hosts x workers)
    instances: s.instances * config.workers,
    log: log.child({ component: 'coordination' }),
    keyPrefix: s.keyPrefix,
    local: store,
    leaseTtlMs: s.leaseTtlMs,
  });
};

/** A shared coordinator (workers, Redis) makes the token manager refresh through it. */
export function isShared(coord: Coordinator): boolean {
  return coord.kind !== 'in-process';
}
