// A set of listeners: one throwing listener does not keep the others from hearing the event.
import type { Unsubscribe } from './types.js';

export class Listeners<A extends unknown[]> {
  private readonly set = new Set<(...args: A) => void>();

  constructor(private readonly onError: (err: unknown) => void) {}

  add(fn: (...args: A) => void): Unsubscribe {
    this.set.add(fn);
    return () => this.set.delete(fn);
  }

  emit(...args: A): void {
    for (const fn of this.set) {
      try {
        fn(...args);
      } catch (err) {
        this.onError(err);
      }
    }
  }
}
