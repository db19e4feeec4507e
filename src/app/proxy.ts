// The composition root: builds every component from a config snapshot, swaps snapshots on reload
// (docs/design.md, principle 7) and drains on shutdown.
import fs from 'node:fs';
import path from 'node:path';
import type { Config, HostPort } from '../config/types.js';
import { Metrics } from '../metrics/metrics.js';
import type { Logger } from '../shared/log.js';
import { AccountRegistry } from '../accounts/registry.js';
import { unusableSourceAddresses } from '../accounts/source-address.js';
import { AUTHORIZATION_SIGNAL_FILE, openStateStore, type StateStore } from '../state/store.js';
import { TokenManager } from '../oauth/token-manager.js';
import { loadCheckedConfig, tokenAccounts } from './credentials.js';
import { UpstreamPools, type UpstreamAccount } from '../upstream/pools.js';
import { Relay } from '../relay/relay.js';
import { SmtpListeners, type SmtpContext } from '../smtp/listener.js';
import { TrustedNetworks } from '../smtp/trusted-networks.js';
import { LiveStats } from '../metrics/live.js';
import type { Coordinator, Health } from '../coordination/types.js';
import { defaultCoordinator, isShared, type CoordinatorFactory } from './coordinator.js';

/** Identifies one version of a file, to tell our own reload's file from a later edit. */
async function fileStamp(file: string | undefined): Promise<string | undefined> {
  if (!file) return undefined;
  try {
    const st = await fs.promises.stat(file, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  } catch {
    return undefined;
  }
}

export interface ReloadResult {
  ok: boolean;
  error?: string;
}

function upstreamAccounts(config: Config): UpstreamAccount[] {
  return config.accounts.map((a) => {
    const p = config.providers[a.provider]!;
    return {
      email: a.email,
      providerName: p.name,
      smtp: p.smtp,
      ehloName: config.smtp.hostname,
      sourceAddress: a.sourceAddress,
      maxConnections: a.maxConnections ?? p.maxConnectionsPerAccount,
      maxMessagesPerConnection: p.maxMessagesPerConnection,
      messagesPerMinute: a.messagesPerMinute ?? p.messagesPerMinute,
      idleTimeoutMs: p.connectionIdleTimeoutMs,
      maxAgeMs: p.connectionMaxAgeMs,
      acquireTimeoutMs: p.acquireTimeoutMs,
      commandTimeoutMs: p.commandTimeoutMs,
    };
  });
}

export class Proxy {
  readonly metrics: Metrics;
  readonly live = new LiveStats();
  private ctx: SmtpContext;
  /** the embedded state store (the web onboarding stores its authorizations here) */
  readonly store: StateStore;
  /** what is global across instances (src/coordination): in-process unless workers or Redis */
  readonly coord: Coordinator;
  readonly tokens: TokenManager;
  readonly pools: UpstreamPools;
  readonly relay: Relay;
  readonly listeners: SmtpListeners;
  private state: 'starting' | 'running' | 'draining' | 'stopped' = 'starting';
  private watcher?: fs.FSWatcher;
  private reloadTimer?: NodeJS.Timeout;
  private stateWatcher?: fs.FSWatcher;
  private signalTimer?: NodeJS.Timeout;
  private reloading: Promise<ReloadResult> | undefined;
  /** the accounts file as of the snapshot in use: the watcher skips changes already loaded */
  private accountsStamp: string | undefined;
  /** accounts already warned about (email -> why), so a reload repeats no warning */
  private unusableWarned = new Map<string, string>();
  private readonly unsubscribe: (() => void)[] = [];

  private constructor(
    config: Config,
    readonly log: Logger,
    private readonly env: NodeJS.ProcessEnv,
    coordinator: CoordinatorFactory,
  ) {
    this.metrics = new Metrics({ perAccount: config.metrics.perAccount });
    this.store = openStateStore({ dir: config.state.dir, secretKey: config.state.secretKey, log });
    try {
      this.coord = coordinator({ config, store: this.store, log });
    } catch (err) {
      this.store.close();
      throw err;
    }
    this.tokens = new TokenManager({
      ...(isShared(this.coord) ? { shared: this.coord } : {}),
      store: this.store,
      log,
      metrics: this.metrics,
      refreshAheadMs: config.oauth.refreshAheadMs,
      requestTimeoutMs: config.oauth.requestTimeoutMs,
      warmupConcurrency: config.oauth.warmupConcurrency,
    });
    this.pools = new UpstreamPools({ tokens: this.tokens, log, metrics: this.metrics, coord: this.coord });
    this.relay = new Relay({
      deliverer: this.pools,
      metrics: this.metrics,
      log,
      logMessages: config.log.messages,
      maxInflightMessages: config.smtp.maxInflightMessages,
      maxInflightBytes: config.smtp.maxInflightBytes,
      observer: this.live,
    });
    this.ctx = this.buildContext(
      config,
      new AccountRegistry(config, unusableSourceAddresses(config.accounts)),
    );
    this.tokens.setAccounts(tokenAccounts(config));
    this.pools.setAccounts(upstreamAccounts(config));
    this.listeners = new SmtpListeners({
      context: () => this.ctx,
      relay: this.relay,
      metrics: this.metrics,
      log,
    });
  }

  static async start(opts: {
    configFile: string;
    log: Logger;
    env?: NodeJS.ProcessEnv;
    /** default: Redis when state.redis is set, else in-process (app/coordinator.ts) */
    coordinator?: CoordinatorFactory;
  }): Promise<Proxy> {
    const env = opts.env ?? process.env;
    const { config, warnings } = await loadCheckedConfig(opts.configFile, env);
    for (const w of warnings) opts.log.warn(w);
    const proxy = new Proxy(config, opts.log, env, opts.coordinator ?? defaultCoordinator);
    try {
      // Redis: starts degraded rather than failing when unreachable; rejects on a secretKey mismatch
      await proxy.coord.start();
    } catch (err) {
      proxy.tokens.close();
      await proxy.coord.close().catch(() => undefined);
      proxy.store.close();
      throw err;
    }
    proxy.followSharedState();
    proxy.accountsStamp = await fileStamp(config.accountsFile);
    await proxy.listeners.listen();
    proxy.state = 'running';
    proxy.watchAccountsFile();
    proxy.watchAuthorizations();
    // Warm-up runs beside serving: a message for a cold account just waits for its own refresh.
    proxy.tokens.warmup().then(
      (r) => opts.log.info(r, 'token warm-up finished'),
      (err) => opts.log.warn({ err: String(err) }, 'token warm-up failed'),
    );
    return proxy;
  }

  get config(): Config {
    return this.ctx.config;
  }

  get registry(): AccountRegistry {
    return this.ctx.registry;
  }

  get smtpAddresses(): { address: HostPort; tls: boolean }[] {
    return this.listeners.addresses;
  }

  isReady(): boolean {
    return this.state === 'running';
  }

  /** undefined, or why the instances cannot share state right now ("shared state unreachable") */
  degraded(): string | undefined {
    const h: Health = this.coord.health();
    return h.state === 'degraded' ? h.reason : undefined;
  }

  /**
   * Another instance changed the accounts (the admin API there), or the shared state came back
   * after an outage (its announcements may have been missed): load them again. Health changes are
   * logged once per change.
   */
  private followSharedState(): void {
    this.unsubscribe.push(
      this.coord.onAccountsChanged(() => void this.reload('shared state: accounts changed')),
      this.coord.onHealth((h) => {
        if (h.state === 'degraded')
          this.log.warn(
            { reason: h.reason },
            'degraded: shared state unreachable; each instance keeps to its share of the limits',
          );
        else this.log.info('shared state reachable again: limits and tokens are shared');
      }),
    );
  }

  /** An admin change was applied here: reload, then tell the other instances to reload too. */
  async applyAdminChange(): Promise<ReloadResult> {
    const r = await this.reload('admin API');
    if (r.ok) this.coord.announceAccountsChanged();
    return r;
  }

  private buildContext(config: Config, registry: AccountRegistry): SmtpContext {
    const unusable = unusableSourceAddresses(config.accounts);
    for (const [email, why] of unusable) {
      if (this.unusableWarned.get(email) === why) continue;
      this.log.warn({ account: email }, `account ${email} cannot send: ${why}`);
    }
    this.unusableWarned = new Map(unusable);
    return { config, registry, trusted: new TrustedNetworks(config.smtp.trustedNetworks) };
  }

  /** Load config and accounts again and swap the snapshot; a bad file keeps the old snapshot. */
  reload(reason = 'request'): Promise<ReloadResult> {
    // one reload at a time; a request during a reload gets that reload's result
    this.reloading ??= this.doReload(reason).finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  private async doReload(reason: string): Promise<ReloadResult> {
    const file = this.ctx.config.file;
    if (!file) return { ok: false, error: 'config was not loaded from a file' };
    try {
      // stamped before reading: an edit racing the read changes the stamp, so it is reloaded again
      const stamp = await fileStamp(this.ctx.config.accountsFile);
      const { config, warnings } = await loadCheckedConfig(file, this.env);
      for (const w of warnings) this.log.warn(w);
      const old = this.ctx.config;
      const registry = this.ctx.registry.next(config, unusableSourceAddresses(config.accounts));
      this.tokens.setAccounts(tokenAccounts(config));
      this.pools.setAccounts(upstreamAccounts(config));
      this.relay.update({
        logMessages: config.log.messages,
        maxInflightMessages: config.smtp.maxInflightMessages,
        maxInflightBytes: config.smtp.maxInflightBytes,
      });
      this.ctx = this.buildContext(config, registry);
      if (
        JSON.stringify(old.smtp.listen) !== JSON.stringify(config.smtp.listen) ||
        JSON.stringify(old.smtp.tlsListen) !== JSON.stringify(config.smtp.tlsListen)
      ) {
        this.log.warn('smtp.listen / smtp.tlsListen changed: listeners change only on restart');
      }
      this.accountsStamp = old.accountsFile === config.accountsFile ? stamp : undefined;
      if (old.accountsFile !== config.accountsFile) this.watchAccountsFile();
      this.metrics.configReloadsTotal.inc({ result: 'success' });
      this.log.info({ reason, accounts: config.accounts.length }, 'configuration reloaded');
      // new accounts get their tokens ahead of their first message
      this.tokens.warmup().catch(() => undefined);
      return { ok: true };
    } catch (err) {
      this.metrics.configReloadsTotal.inc({ result: 'failure' });
      const msg = err instanceof Error ? err.message : String(err);
      this.log.error({ reason }, `reload failed, keeping the previous configuration: ${msg}`);
      return { ok: false, error: msg };
    }
  }

  private watchAccountsFile(): void {
    this.watcher?.close();
    this.watcher = undefined;
    const file = this.ctx.config.accountsFile;
    if (!file) return;
    // Watch the directory: editors and our own atomic writes replace the file (rename), which a
    // watch on the file itself would lose.
    const dir = path.dirname(file);
    const base = path.basename(file);
    try {
      this.watcher = fs.watch(dir, (_event, name) => {
        if (name !== base) return;
        clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => void this.reloadIfChanged(file), 200);
      });
      this.watcher.unref();
    } catch (err) {
      this.log.warn({ err: String(err) }, `cannot watch ${file}; use SIGHUP to reload`);
    }
  }

  /**
   * `accounts authorize` (another process on this state dir) rewrites AUTHORIZATION_SIGNAL_FILE once
   * it has stored a refresh token: adopt it now, so a mailbox in needs_authorization or needs_reauth
   * works again without a restart or a reload. (A reload, e.g. SIGHUP, adopts it too.)
   */
  private watchAuthorizations(): void {
    const dir = this.ctx.config.state.dir;
    try {
      this.stateWatcher = fs.watch(dir, (_event, name) => {
        if (name !== AUTHORIZATION_SIGNAL_FILE) return;
        clearTimeout(this.signalTimer);
        this.signalTimer = setTimeout(() => this.adoptAuthorizations(), 50);
      });
      this.stateWatcher.unref();
    } catch (err) {
      this.log.warn({ err: String(err) }, `cannot watch ${dir}; new authorizations apply on SIGHUP`);
    }
  }

  /** Use the authorizations stored since the entries were made (the web onboarding calls this). */
  adoptAuthorizations(): string[] {
    if (this.state !== 'running') return [];
    const replaced = this.tokens.syncAuthorizations();
    // the other instances read the new authorization from the shared state (TokenManager)
    if (replaced.length && isShared(this.coord)) this.coord.announceAccountsChanged();
    return replaced;
  }

  /** The watcher's reload: skipped when the file is the one already loaded (e.g. written by the admin API). */
  private async reloadIfChanged(file: string): Promise<void> {
    if (this.reloading) await this.reloading;
    if (this.accountsStamp !== undefined && (await fileStamp(file)) === this.accountsStamp) return;
    await this.reload('accounts file changed');
  }

  /** SIGTERM: stop accepting, finish in-flight messages (bounded), QUIT upstream, close. */
  async drain(): Promise<void> {
    if (this.state === 'draining' || this.state === 'stopped') return;
    this.state = 'draining';
    this.watcher?.close();
    this.stateWatcher?.close();
    clearTimeout(this.reloadTimer);
    clearTimeout(this.signalTimer);
    const timeoutMs = this.ctx.config.shutdownTimeoutMs;
    const deadline = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    this.log.info({ inflight: this.relay.inflightMessages }, 'draining');
    await Promise.race([Promise.all([this.listeners.drain(), this.relay.idle()]), deadline]);
    await this.pools.close(Math.max(1000, timeoutMs / 10));
    for (const u of this.unsubscribe) u();
    this.tokens.close();
    // bounded: an unreachable Redis must not hold the exit (its leases then expire with their TTL)
    let closeTimer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.coord
        .close()
        .catch((err: unknown) => this.log.warn({ err: String(err) }, 'coordination: close failed')),
      new Promise<void>((resolve) => {
        closeTimer = setTimeout(() => {
          this.log.warn('coordination: close did not finish within 3 s; its leases expire with their TTL');
          resolve();
        }, 3000);
      }),
    ]);
    clearTimeout(closeTimer);
    this.store.close();
    this.state = 'stopped';
  }
}
