// Bundles each SDK entry for the browser into build/ (esbuild, pinned in package.json).
import { build } from 'esbuild';

const here = new URL('.', import.meta.url).pathname;
await build({
  entryPoints: ['segment', 'rudderstack', 'beacon'].map((name) => `${here}entries/${name}.js`),
  outdir: `${here}build`,
  bundle: true,
  format: 'esm',
  target: 'chrome120',
  logLevel: 'warning',
});
