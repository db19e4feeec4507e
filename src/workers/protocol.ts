// The primary's control messages to its workers and their answers (plain JSON over the cluster IPC
// channel, beside the coordinator's `xoc` messages). Tagged `xow` so neither side mistakes the
// other's messages, nor prom-client's or node's own.
import type { HostPort } from '../config/types.js';

/** primary -> worker */
export type ToWorker =
  | { xow: 'reload'; reason: string }
  | { xow: 'drain' }
  /** is the worker's proxy ready? answered with `ready` */
  | { xow: 'ready?'; id: number }
  /** its metrics as prom-client JSON (registry.getMetricsAsJSON()), answered with `metrics` */
  | { xow: 'metrics?'; id: number };

/** worker -> primary */
export type FromWorker =
  /** started: its listeners, and where its own HTTP server (admin API, status page) answers */
  | { xow: 'up'; smtp: { address: HostPort; tls: boolean }[]; http?: HostPort }
  /** could not start (bad config, a port taken): the primary stops rather than retrying for ever */
  | { xow: 'failed'; error: string }
  /** degraded: still ready (mail flows within each worker's share), as the single-process /readyz */
  | { xow: 'ready'; id: number; ready: boolean; degraded?: string }
  | { xow: 'metrics'; id: number; metrics: unknown[] }
  | { xow: 'reloaded'; ok: boolean; error?: string };

/** the environment variable that gives a worker its slot and its internal HTTP port */
export const WORKER_SLOT_ENV = 'XOAUTH2_PROXY_WORKER_SLOT';
export const WORKER_HTTP_ENV = 'XOAUTH2_PROXY_WORKER_HTTP_PORT';

export const isControl = (m: unknown): m is { xow: string } =>
  typeof m === 'object' && m !== null && typeof (m as { xow?: unknown }).xow === 'string';
