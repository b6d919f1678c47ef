import test from 'ava';
import { connectAsync } from 'mqtt';
import { HeadPipeline } from '../../device-agent/pipeline.js';
import { frameSource } from '../../device-agent/source.js';
import { testEdge } from '../helpers/edge.js';
import { parseError, parseResult } from '../../core/wire/messages.js';
import { deviceTopic } from '../../core/wire/topics.js';
import { shippedModel } from '../helpers/model.js';

test('a full decoder queue answers "overloaded" for each refused frame: none is dropped silently', async (t) => {
  const bundle = await shippedModel();
  const edge = await testEdge({ maxQueue: 2 });
  const client = await connectAsync(edge.url);
  const answers = new Map<number, string>();
  client.on('message', (_topic, payload) => {
    const r = parseResult(payload);
    if (r) answers.set(r.frameId, 'result');
    const e = parseError(payload);
    if (e && e.frameId !== null) answers.set(e.frameId, e.code);
  });
  await client.subscribeAsync(
    ['result', 'error'].map((c) => deviceTopic('load', 'flood', c as 'result')),
    { qos: 1 },
  );
  const pipe = await HeadPipeline.create(bundle, 'split-fp32', 0);
  const sample = (await frameSource({ source: 'sample', limit: 1 }).next()).value!;
  const n = 40;
  const frames = await Promise.all(Array.from({ length: n }, (_, i) => pipe.encode(sample, i)));
  await Promise.all(
    frames.map((f) =>
      client.publishAsync(deviceTopic('load', 'flood', 'features'), Buffer.from(f.frame), {
        qos: 1,
      }),
    ),
  );
  const end = Date.now() + 30_000;
  while (answers.size < n && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  t.is(answers.size, n, 'every frame has exactly one answer');
  const codes = [...answers.values()];
  t.true(codes.includes('result'));
  t.true(codes.includes('overloaded'), 'some frames were refused');
  t.true(codes.every((c) => c === 'result' || c === 'overloaded'));
  await pipe.close();
  await client.endAsync();
  await edge.close();
});
