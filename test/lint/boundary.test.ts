// The layout's one hard rule, enforced by eslint: product code never imports a tool.
import path from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '../..');
const eslint = new ESLint({ cwd: root });

async function lint(file: string, code: string) {
  const [result] = await eslint.lintText(code, { filePath: path.join(root, file) });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports');
}

describe('product/tool boundary', () => {
  it('refuses a product file that imports a tool', async () => {
    const messages = await lint(
      'src/relay/example.ts',
      "import { startSimulator } from '../tools/sim/index.js';\nexport const s = startSimulator;\n",
    );
    expect(messages).toHaveLength(1);
    expect(messages[0]!.message).toMatch(/must not import a tool/);
  });

  it('refuses it from any depth and for a type-only import', async () => {
    const messages = await lint(
      'src/app/example.ts',
      "import type { BenchEnv } from '../tools/harness/env.js';\nexport type E = BenchEnv;\n",
    );
    expect(messages).toHaveLength(1);
  });

  it('lets a tool import the product, and the program entry import both', async () => {
    expect(
      await lint(
        'src/tools/bench/example.ts',
        "import { parseHostPort } from '../../shared/net.js';\nexport const p = parseHostPort;\n",
      ),
    ).toHaveLength(0);
    expect(
      await lint(
        'src/cli.ts',
        "import { registerSimulateCommand } from './tools/sim/index.js';\nexport const r = registerSimulateCommand;\n",
      ),
    ).toHaveLength(0);
  });
});
