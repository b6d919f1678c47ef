/**
 * The docs a user reads: the README stays short (at most 300 lines), every relative link
 * in the README and docs/ points at a file that exists (and its #anchor at a heading), and
 * the docs speak to users: no issue numbers, no changelog phrases.
 */
import test from 'ava';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';

const DOCS = [
  'README.md',
  ...readdirSync(join(PROJECT_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
  'fleet-config/README.md',
  'flows/README.md',
];
const read = (f: string) => readFileSync(join(PROJECT_ROOT, f), 'utf8');

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes. */
const anchor = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');

test('the README is at most 300 lines', (t) => {
  const lines = read('README.md').split('\n').length;
  t.true(lines <= 300, `README.md has ${lines} lines`);
});

for (const doc of DOCS) {
  test(`${doc}: every relative link resolves`, (t) => {
    const text = read(doc);
    const broken: string[] = [];
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const href = m[1]!;
      if (/^[a-z]+:/.test(href)) continue; // http:, https:, mailto:
      const [path, hash] = href.split('#') as [string, string | undefined];
      const file = path ? resolve(dirname(join(PROJECT_ROOT, doc)), path) : join(PROJECT_ROOT, doc);
      if (!existsSync(file)) {
        broken.push(href);
        continue;
      }
      if (hash && file.endsWith('.md')) {
        const heads = readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => /^#{1,6} /.test(l))
          .map((l) => anchor(l.replace(/^#+ /, '')));
        if (!heads.includes(hash)) broken.push(href);
      }
    }
    t.deepEqual(broken, []);
  });

  test(`${doc}: speaks to users (no issue numbers, no changelog)`, (t) => {
    const text = read(doc);
    const hits = [...text.matchAll(/\bissues? #?\d+\b|\bSince then\b|^Then:|\bstop \d+\b/gim)].map(
      (m) => m[0],
    );
    t.deepEqual(hits, []);
  });
}
