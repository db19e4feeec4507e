// A Relay with a fake Deliverer (no upstream), and config snapshots built by the real loader.
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { AccountRegistry, type Account } from '../../src/accounts/registry.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { Relay, type Deliverer, type DeliveryResult, type Envelope } from '../../src/relay/relay.js';
import { silentLogger, type Logger } from '../../src/shared/log.js';

export const ALICE = 'alice@example.com';
export const PASSWORD = 'pw-for-tests-only';

/** A config snapshot from the real loader: one account, ALICE, plus `extra` settings. */
export async function testConfig(extra: Record<string, unknown> = {}): Promise<Config> {
  const { smtp, ...rest } = extra as { smtp?: Record<string, unknown> };
  const { config } = await parseConfig(
    {
      smtp: { listen: ['127.0.0.1:0'], ...smtp },
      accounts: [
        { email: ALICE, provider: 'google', clientId: 'cid', refreshToken: 'rt', password: PASSWORD },
      ],
      ...rest,
    },
    { baseDir: '/tmp', env: {} },
  );
  return config;
}

export async function testAccount(config?: Config): Promise<Account> {
  const account = new AccountRegistry(config ?? (await testConfig())).get(ALICE);
  if (!account) throw new Error('test config has no account');
  return account;
}

export interface Delivery {
  email: string;
  envelope: Envelope;
  /** the message as the deliverer got it */
  bytes: Buffer;
}

/** A Deliverer that records what it is given and answers with `answer` (by default the upstream's 250). */
export class FakeDeliverer implements Deliverer {
  readonly deliveries: Delivery[] = [];
  /** mailboxes it was asked to get ready for (a client logged in) */
  readonly prepared: string[] = [];
  answer: (d: Delivery) => DeliveryResult | Promise<DeliveryResult> = () => ({
    kind: 'delivered',
    reply: { code: 250, enhanced: '2.0.0', text: 'OK id=1' },
  });

  async deliver(email: string, envelope: Envelope, message: readonly Buffer[]): Promise<DeliveryResult> {
    const d = { email, envelope, bytes: Buffer.concat(message) };
    this.deliveries.push(d);
    return this.answer(d);
  }

  prepare(email: string): void {
    this.prepared.push(email);
  }

  /** From now on, deliveries wait until the returned function is called. */
  hold(): () => void {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const before = this.answer;
    this.answer = async (d) => {
      await gate;
      return before(d);
    };
    return open;
  }
}

export function testRelay(
  opts: { maxInflightMessages?: number; maxInflightBytes?: number; log?: Logger } = {},
): { relay: Relay; deliverer: FakeDeliverer; metrics: Metrics } {
  const deliverer = new FakeDeliverer();
  const metrics = new Metrics({ defaultMetrics: false });
  const relay = new Relay({
    deliverer,
    metrics,
    log: opts.log ?? silentLogger,
    logMessages: false,
    maxInflightMessages: opts.maxInflightMessages ?? 100,
    maxInflightBytes: opts.maxInflightBytes ?? 1_000_000,
  });
  return { relay, deliverer, metrics };
}

/** The value of a metric without labels, or of the series whose labels match `labels`. */
export async function metric(
  metrics: Metrics,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const m = metrics.registry.getSingleMetric(`xoauth2_proxy_${name}`);
  if (!m) throw new Error(`no metric ${name}`);
  const { values } = await m.get();
  const v = values.find((x) => Object.entries(labels).every(([k, want]) => x.labels[k] === want));
  return v?.value ?? 0;
}
