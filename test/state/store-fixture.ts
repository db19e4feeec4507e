// State stores in temporary directories for the state tests: every store opened is closed, and
// every directory removed, after each test.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import { openStateStore, type StateStore } from '../../src/state/store.js';
import { silentLogger } from '../../src/shared/log.js';

export const SECRET = 'a-secret-key-of-at-least-32-characters!!';

export function storeFixture(prefix: string) {
  const dirs: string[] = [];
  const stores: StateStore[] = [];
  /** close the stores opened so far (a restart of the process that held them) */
  const closeAll = () => {
    for (const s of stores.splice(0)) s.close();
  };
  afterEach(() => {
    closeAll();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });
  return {
    closeAll,
    /** a state directory not created yet, in a fresh temporary directory */
    tmpDir(): string {
      const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
      dirs.push(d);
      return path.join(d, 'data');
    },
    /** secretKey null: no configured key (the generated key file is used) */
    open(dir: string, secretKey: string | null = SECRET, log = silentLogger): StateStore {
      const s = openStateStore({ dir, secretKey: secretKey ?? undefined, log });
      stores.push(s);
      return s;
    },
  };
}
