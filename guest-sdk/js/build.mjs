// Builds a JavaScript handler into a wasq component with ComponentizeJS:
//
//   node guest-sdk/js/build.mjs <handler.js> <wit dir> <world> <out.wasm>
//
// `wasq build handler.js -o out.wasm` runs this script (with WASQ_JS_QUIET set:
// wasq reports the build itself). ComponentizeJS comes from the project's
// tools dir (scripts/setup: npm ci --prefix .tools/js), or from
// $WASQ_JS_TOOLS (a dir holding its node_modules). Plain mode only: no AOT
// (weval), which would download a tool at first use.
//
// The handler's directory is copied into a scratch dir beside a copy of the SDK, and
// its `import ... from 'wasq-guest'` become relative imports of the SDK, so
// a handler names the SDK as it would with npm. The engine's `fetch` stays
// (it imports wasi:http's outgoing handler, which the host checks against
// the task type's `http` list); its fetch event, an HTTP server's entry
// point, is left out.

import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve, basename, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

function fail(message) {
  console.error(`wasq build (js): ${message}`);
  process.exit(1);
}

const [source, witDir, world, out] = process.argv.slice(2);
if (!source || !witDir || !world || !out) {
  fail('usage: node build.mjs <handler.js> <wit dir> <world> <out.wasm>');
}

async function loadComponentize() {
  const tools = process.env.WASQ_JS_TOOLS ?? join(root, '.tools/js');
  const entry = join(tools, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js');
  try {
    await stat(entry);
  } catch {
    fail(
      `ComponentizeJS is not installed in ${tools}: run scripts/setup ` +
        `(npm ci --prefix .tools/js, from guest-sdk/js/tools/package-lock.json)`,
    );
  }
  return (await import(pathToFileURL(entry).href)).componentize;
}

const SPECIFIER = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])wasq-guest\2/g;

/** Copies the handler's dir into `dest`, pointing `wasq-guest` at the SDK. */
async function stage(srcDir, dest, sdk) {
  await cp(srcDir, dest, {
    recursive: true,
    filter: (path) => !basename(path).startsWith('.') && basename(path) !== 'node_modules',
  });
  const walk = async (dir) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        await walk(path);
      } else if (/\.(m?js)$/.test(entry.name)) {
        const text = await readFile(path, 'utf8');
        let rel = relative(dirname(path), sdk).split(sep).join('/');
        if (!rel.startsWith('.')) rel = `./${rel}`;
        const rewritten = text.replace(SPECIFIER, (_, lead, quote) => `${lead}${quote}${rel}${quote}`);
        if (rewritten !== text) await writeFile(path, rewritten);
      }
    }
  };
  await walk(dest);
}

const componentize = await loadComponentize();
const witPath = resolve(witDir);
const sourcePath = resolve(source);
try {
  await stat(sourcePath);
} catch {
  fail(`no such handler file: ${source}`);
}
const outPath = resolve(out);
const scratch = await mkdtemp(join(tmpdir(), 'wasq-js-build-'));
const started = Date.now();
try {
  const sdk = join(scratch, 'wasq-guest/index.js');
  await mkdir(dirname(sdk), { recursive: true });
  await cp(join(here, 'index.js'), sdk);
  const handlerDir = join(scratch, 'handler');
  await stage(dirname(sourcePath), handlerDir, sdk);
  // Paths in stack traces are relative to the scratch dir: handler/<file>.
  process.chdir(scratch);
  const { component } = await componentize({
    sourcePath: join(handlerDir, basename(sourcePath)),
    witPath,
    worldName: world,
    disableFeatures: ['fetch-event'],
  });
  await mkdir(dirname(outPath), { recursive: true });
  await writeFile(outPath, component);
  const kib = Math.round(component.length / 1024);
  if (!process.env.WASQ_JS_QUIET) {
    console.error(`built ${out} (${kib} KiB) in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  }
} catch (error) {
  fail(`componentizing ${source}: ${error?.stack ?? error}`);
} finally {
  await rm(scratch, { recursive: true, force: true });
}
