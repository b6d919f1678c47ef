/**
 * An ONNX-only bundle (no TensorFlow.js export of its head, as for imported ResNets whose
 * operators the tfjs exporter does not take) under a tfjs engine: refused, saying which
 * bundle, that it has no TensorFlow.js weights and which engine runs it; onnx runs it.
 */
import test from 'ava';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadPipeline } from '../../device-agent/pipeline.js';
import { concreteEngine, EngineMismatch, loadNetwork } from '../../core/engine/select.js';
import { loadBundle, type Bundle } from '../../core/model/load.js';
import { shippedModel } from '../helpers/model.js';

let dir = '';
let onnxOnly: Bundle;

test.before(async () => {
  const shipped = await shippedModel();
  dir = await mkdtemp(join(tmpdir(), 'sf-onnx-only-'));
  await cp(shipped.dir, dir, { recursive: true });
  const path = join(dir, 'manifest.json');
  const m = JSON.parse(await readFile(path, 'utf8')) as {
    name: string;
    files: Record<string, unknown>;
  };
  m.name = 'onnx-only';
  for (const role of Object.keys(m.files)) if (role.includes('.tfjs')) delete m.files[role];
  await writeFile(path, JSON.stringify(m));
  onnxOnly = await loadBundle(dir);
});
test.after.always(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a tfjs engine refuses an ONNX-only bundle and says what to use', async (t) => {
  const tfjs = await concreteEngine('tfjs-wasm');
  const v = onnxOnly.manifest.version;
  const e = await t.throwsAsync(loadNetwork(tfjs, onnxOnly, 'head', { threads: 1 }), {
    instanceOf: EngineMismatch,
  });
  t.regex(e.message, new RegExp(`bundle onnx-only@${v} has no TensorFlow.js weights for its head`));
  t.regex(e.message, /engine tfjs-wasm cannot run it: use engine onnx/);
  // the device's head pipeline refuses the same way
  await t.throwsAsync(HeadPipeline.create(onnxOnly, 'split-q', 0, { engine: tfjs }), {
    instanceOf: EngineMismatch,
  });
  // the same bundle runs on onnx; the shipped one (with its export) on tfjs
  const onnx = await loadNetwork(await concreteEngine('onnx'), onnxOnly, 'head', { threads: 1 });
  t.is(onnx.engine.name, 'onnx');
  await onnx.session.close();
  const withExport = await loadNetwork(tfjs, await shippedModel(), 'head', { threads: 1 });
  t.is(withExport.engine.name, 'tfjs-wasm');
  await withExport.session.close();
});
