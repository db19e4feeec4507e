// The coordinator's view of the shared state: ok, or degraded since a moment and for a reason.
// Listeners hear each change once.
import { Listeners } from './listeners.js';
import type { Health, Unsubscribe } from './types.js';

export class HealthState {
  private current: Health = { state: 'ok' };
  private readonly listeners: Listeners<[Health]>;

  constructor(
    onListenerError: (err: unknown) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.listeners = new Listeners(onListenerError);
  }

  get(): Health {
    return this.current;
  }

  get ok(): boolean {
    return this.current.state === 'ok';
  }

  /** @returns whether this changed the state */
  degrade(reason: string): boolean {
    if (this.current.state === 'degraded' && this.current.reason === reason) return false;
    this.current = { state: 'degraded', reason, since: this.now() };
    this.listeners.emit(this.current);
    return true;
  }

  /** @returns whether this changed the state */
  recover(): boolean {
    if (this.current.state === 'ok') return false;
    this.current = { state: 'ok' };
    this.listeners.emit(this.current);
    return true;
  }

  onChange(fn: (h: Health) => void): Unsubscribe {
    return this.listeners.add(fn);
  }
}
