// All instruments in one place, so names and label sets stay the contract the README lists
// (docs/design.md, principle 6).
// Labels take values only from small fixed sets (provider names come from the config).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const P = 'xoauth2_proxy_';

export type MessageResult = 'delivered' | 'rejected' | 'deferred';

/** The relay's counts of what is in flight, read into the inflight gauges at scrape time. */
export interface InflightSource {
  readonly inflightMessages: number;
  readonly inflightBytes: number;
}

/** Upstream connections of one provider by state, kept by its pools as plain numbers. */
export interface ConnectionCounts {
  idle: number;
  busy: number;
}

/**
 * A counter series counted per message as a plain number and added to its prom-client counter at
 * scrape time (a prom-client inc hashes the series' labels each time).
 */
export class PendingCount {
  n = 0;
  /** counted since the last scrape (possibly by 0: the series then exists, as after inc(0)) */
  dirty = false;
  constructor(readonly labels: Readonly<Record<string, string>>) {}
  inc(by = 1): void {
    this.n += by;
    this.dirty = true;
  }
}

/**
 * A histogram series observed per message into plain numbers and merged into its prom-client
 * histogram at scrape time (a prom-client observe hashes the labels and looks its bucket up by a
 * number turned into a property name, each time).
 */
export class PendingHistogram {
  /** observations per bucket since the last scrape; the last one is above every bound (+Inf) */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Readonly<Record<string, string>>,
    readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

/** How prom-client 15 holds a histogram series (Histogram.hashMap values; not part of its typings). */
interface PromHistogramSeries {
  labels: Record<string, string | number>;
  bucketValues: Record<number, number>;
  sum: number;
  count: number;
}

/** The per-message instruments of one provider, resolved once (a labelled lookup hashes its labels). */
export interface ProviderInstruments {
  messages: Record<MessageResult, PendingCount>;
  duration: PendingHistogram;
}

const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const POOL_WAIT_BUCKETS = [0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30];

export class Metrics {
  readonly registry = new Registry();
  /** per counter, its series counted as plain numbers (PendingCount) */
  private readonly pendingCounts = new Map<Counter<string>, PendingCount[]>();
  /** per histogram, its series observed into plain numbers (PendingHistogram) */
  private readonly pendingHistograms = new Map<Histogram<string>, PendingHistogram[]>();

  readonly smtpConnectionsActive = new Gauge({
    name: P + 'smtp_connections_active',
    help: 'Client SMTP connections open now',
    registers: [this.registry],
  });
  readonly smtpConnectionsTotal = new Counter({
    name: P + 'smtp_connections_total',
    help: 'Client SMTP connections by result (accepted, refused)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly authAttemptsTotal = new Counter({
    name: P + 'auth_attempts_total',
    help: 'Client AUTH attempts by result (success, failure, throttled)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly messagesTotal: Counter<'provider' | 'result'> = new Counter({
    name: P + 'messages_total',
    help: 'Messages by provider and result (delivered, rejected, deferred)',
    labelNames: ['provider', 'result'] as const,
    registers: [this.registry],
    collect: () => this.flushCounts(this.messagesTotal),
  });
  readonly messageDurationSeconds: Histogram<'provider'> = new Histogram({
    name: P + 'message_duration_seconds',
    help: 'End of DATA to the reply sent to the client',
    labelNames: ['provider'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
    collect: () => this.flushHistogram(this.messageDurationSeconds),
  });
  readonly messageBytesTotal: Counter<'provider'> = new Counter({
    name: P + 'message_bytes_total',
    help: 'Message bytes relayed upstream',
    labelNames: ['provider'] as const,
    registers: [this.registry],
    collect: () => this.flushCounts(this.messageBytesTotal),
  });
  // The gauges below change with every message (several times); a prom-client update hashes its
  // labels each time. Their owners keep plain numbers instead, read here at scrape time.
  private readonly inflightSources: InflightSource[] = [];
  private readonly connectionCounts = new Map<string, ConnectionCounts>();
  readonly inflightMessages: Gauge = new Gauge({
    name: P + 'inflight_messages',
    help: 'Messages being relayed now',
    registers: [this.registry],
    collect: () => this.inflightMessages.set(this.sumInflight('inflightMessages')),
  });
  readonly inflightBytes: Gauge = new Gauge({
    name: P + 'inflight_bytes',
    help: 'Message bytes held now (being received or relayed), counted against smtp.maxInflightBytes',
    registers: [this.registry],
    collect: () => this.inflightBytes.set(this.sumInflight('inflightBytes')),
  });
  readonly upstreamConnections: Gauge<'provider' | 'state'> = new Gauge({
    name: P + 'upstream_connections',
    help: 'Upstream connections by state (idle, busy)',
    labelNames: ['provider', 'state'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [provider, n] of this.connectionCounts) {
        this.upstreamConnections.set({ provider, state: 'idle' }, n.idle);
        this.upstreamConnections.set({ provider, state: 'busy' }, n.busy);
      }
    },
  });
  readonly upstreamConnectsTotal = new Counter({
    name: P + 'upstream_connects_total',
    help: 'Upstream connection attempts by result (success, error, auth_failed)',
    labelNames: ['provider', 'result'] as const,
    registers: [this.registry],
  });
  readonly poolWaitSeconds: Histogram<'provider'> = new Histogram({
    name: P + 'pool_wait_seconds',
    help: 'Time a message waited for an upstream connection',
    labelNames: ['provider'] as const,
    buckets: POOL_WAIT_BUCKETS,
    registers: [this.registry],
    collect: () => this.flushHistogram(this.poolWaitSeconds),
  });
  readonly tokenRefreshTotal = new Counter({
    name: P + 'token_refresh_total',
    help: 'Access token refreshes by result (success, invalid_grant, error)',
    labelNames: ['provider', 'result'] as const,
    registers: [this.registry],
  });
  readonly tokenRefreshDurationSeconds = new Histogram({
    name: P + 'token_refresh_duration_seconds',
    help: 'Duration of token refresh requests',
    labelNames: ['provider'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly accounts = new Gauge({
    name: P + 'accounts',
    help: 'Accounts by state (ok, refreshing, needs_reauth, error)',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly configReloadsTotal = new Counter({
    name: P + 'config_reloads_total',
    help: 'Config reloads by result (success, failure)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  /** only registered when metrics.perAccount is true */
  readonly perAccountMessages?: Counter<'account' | 'result'>;
  private readonly providers = new Map<string, ProviderInstruments>();
  private readonly bytesByProvider = new Map<string, PendingCount>();
  private readonly waitByProvider = new Map<string, PendingHistogram>();

  /** The relay's in-flight counts are the inflight gauges' values (summed over relays). */
  addInflightSource(source: InflightSource): void {
    this.inflightSources.push(source);
  }

  /**
   * The counts of `provider`'s upstream connections by state, shared by all its pools, which
   * change them as their connections change state; they are the upstream_connections gauge's values.
   */
  connectionsOf(provider: string): ConnectionCounts {
    let n = this.connectionCounts.get(provider);
    if (!n) this.connectionCounts.set(provider, (n = { idle: 0, busy: 0 }));
    return n;
  }

  /** messageBytesTotal of `provider`, shared by its pools */
  messageBytesOf(provider: string): PendingCount {
    let c = this.bytesByProvider.get(provider);
    if (!c) this.bytesByProvider.set(provider, (c = this.pendingCount(this.messageBytesTotal, { provider })));
    return c;
  }

  /** poolWaitSeconds of `provider`, shared by its pools */
  poolWaitOf(provider: string): PendingHistogram {
    let h = this.waitByProvider.get(provider);
    if (!h)
      this.waitByProvider.set(
        provider,
        (h = this.pendingHistogram(this.poolWaitSeconds, POOL_WAIT_BUCKETS, { provider })),
      );
    return h;
  }

  /** a series of `histogram` observed into plain numbers until the next scrape */
  private pendingHistogram(
    histogram: Histogram<string>,
    bounds: readonly number[],
    labels: Record<string, string>,
  ): PendingHistogram {
    const h = new PendingHistogram(labels, bounds);
    const list = this.pendingHistograms.get(histogram);
    if (list) list.push(h);
    else this.pendingHistograms.set(histogram, [h]);
    return h;
  }

  /**
   * Adds what was observed since the last scrape to the histogram's series. prom-client has no
   * public way to add counts to a bucket, so this writes into the series it holds (created by its
   * public zero()); test/metrics/scrape-time.test.ts compares the result with prom-client's own
   * observe(), so a change of its internals fails there.
   */
  private flushHistogram(histogram: Histogram<string>): void {
    const pending = this.pendingHistograms.get(histogram);
    if (!pending) return;
    const internals = histogram as unknown as { name: string; hashMap: Record<string, PromHistogramSeries> };
    const held = internals.hashMap;
    const seriesOf = (labels: Readonly<Record<string, string>>) =>
      Object.values(held).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    for (const h of pending) {
      if (h.count === 0) continue;
      let series = seriesOf(h.labels);
      if (!series) {
        histogram.zero(h.labels);
        series = seriesOf(h.labels);
      }
      if (!series || typeof series.bucketValues !== 'object')
        throw new Error(`prom-client histogram internals changed (${internals.name})`);
      for (let i = 0; i < h.bounds.length; i++) series.bucketValues[h.bounds[i]] += h.counts[i];
      series.sum += h.sum;
      series.count += h.count;
      h.counts.fill(0);
      h.sum = 0;
      h.count = 0;
    }
  }

  /** a series of `counter` counted as a plain number until the next scrape */
  private pendingCount(counter: Counter<string>, labels: Record<string, string>): PendingCount {
    const c = new PendingCount(labels);
    const list = this.pendingCounts.get(counter);
    if (list) list.push(c);
    else this.pendingCounts.set(counter, [c]);
    return c;
  }

  private flushCounts(counter: Counter<string>): void {
    for (const c of this.pendingCounts.get(counter) ?? []) {
      if (!c.dirty) continue;
      counter.inc(c.labels, c.n);
      c.n = 0;
      c.dirty = false;
    }
  }

  private sumInflight(key: keyof InflightSource): number {
    let n = 0;
    for (const s of this.inflightSources) n += s[key];
    return n;
  }

  /** messagesTotal and messageDurationSeconds of one provider, without a label lookup per message */
  forProvider(provider: string): ProviderInstruments {
    let p = this.providers.get(provider);
    if (!p) {
      const m = (result: MessageResult) => this.pendingCount(this.messagesTotal, { provider, result });
      p = {
        messages: { delivered: m('delivered'), rejected: m('rejected'), deferred: m('deferred') },
        duration: this.pendingHistogram(this.messageDurationSeconds, DURATION_BUCKETS, { provider }),
      };
      this.providers.set(provider, p);
    }
    return p;
  }

  constructor(opts: { perAccount?: boolean; defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    // series with a fixed, known label set start at 0, so rate() and alerts work before the first event
    for (const result of ['success', 'failure']) this.configReloadsTotal.inc({ result }, 0);
    if (opts.perAccount) {
      this.perAccountMessages = new Counter({
        name: P + 'account_messages_total',
        help: 'Messages per account and result (metrics.perAccount: true)',
        labelNames: ['account', 'result'] as const,
        registers: [this.registry],
      });
    }
  }
}

/** A Metrics instance for code paths that run without a server (tests, CLI tools). */
export function detachedMetrics(): Metrics {
  return new Metrics({ defaultMetrics: false });
}
