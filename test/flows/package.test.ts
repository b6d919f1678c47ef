/**
 * The Node-RED package (flows/) as npm would ship it: every node it declares has its
 * .js, .html and en-US messages, and every package its code (and the compiled
 * wire-format modules in flows/lib) requires is one of its dependencies, so an install
 * of the packed tarball into a bare Node-RED user folder has all it needs.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { dirname, join } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';

const FLOWS = join(PROJECT_ROOT, 'flows');

interface Pkg {
  dependencies: Record<string, string>;
  files: string[];
  keywords: string[];
  'node-red': { version: string; nodes: Record<string, string> };
}

async function jsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await jsFiles(p)));
    else if (e.name.endsWith('.js')) out.push(p);
  }
  return out;
}

test('every declared node has its code, editor definition, help and en-US messages', async (t) => {
  const pkg = JSON.parse(await readFile(join(FLOWS, 'package.json'), 'utf8')) as Pkg;
  t.true(pkg.keywords.includes('node-red'));
  t.regex(pkg['node-red'].version, /^>=4/);
  for (const [type, file] of Object.entries(pkg['node-red'].nodes)) {
    const js = join(FLOWS, file);
    const html = await readFile(js.replace(/\.js$/, '.html'), 'utf8');
    t.regex(await readFile(js, 'utf8'), new RegExp(`registerType\\('${type}'`), type);
    t.regex(html, new RegExp(`data-template-name="${type}"`), type);
    t.regex(html, new RegExp(`data-help-name="${type}"`), type);
    const messages = JSON.parse(
      await readFile(join(dirname(js), 'locales', 'en-US', `${type}.json`), 'utf8'),
    ) as Record<string, { label: Record<string, string> }>;
    // every label the form names has its message
    for (const m of html.matchAll(new RegExp(`data-i18n="${type}\\.label\\.(\\w+)"`, 'g'))) {
      t.truthy(messages[type]!.label[m[1]!], `${type}.label.${m[1]}`);
    }
  }
});

test('every package the shipped code requires is a dependency of the node package', async (t) => {
  const pkg = JSON.parse(await readFile(join(FLOWS, 'package.json'), 'utf8')) as Pkg;
  t.true(existsSync(join(FLOWS, 'lib', 'core', 'wire', 'frame.js')), 'run npm run build first');
  const files = [...(await jsFiles(join(FLOWS, 'nodes'))), ...(await jsFiles(join(FLOWS, 'lib')))];
  const needed = new Set<string>();
  for (const f of files) {
    for (const m of (await readFile(f, 'utf8')).matchAll(/require\(["']([^"'.][^"']*)["']\)/g)) {
      const spec = m[1]!;
      if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
      needed.add(
        spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!,
      );
    }
  }
  t.true(needed.size > 0);
  for (const dep of needed)
    t.truthy(pkg.dependencies[dep], `${dep} is required but not a dependency`);
  t.deepEqual(pkg.files.sort(), ['README.md', 'examples', 'lib', 'nodes']);
});
