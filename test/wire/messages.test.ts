/**
 * Every JSON message that arrives over MQTT is validated field by field before use and
 * rebuilt from the checked fields: anything else parses to undefined.
 */
import test from 'ava';
import {
  CONFIG_VERSION,
  errorMessage,
  parseConfig,
  parseDeviceStatus,
  parseError,
  parseResult,
  RESULT_VERSION,
  type ResultMessage,
} from '../../core/wire/messages.js';

const result: ResultMessage = {
  v: RESULT_VERSION,
  deviceId: 'cam',
  frameId: 7,
  classIndex: 3,
  label: 'cat',
  score: 0.9,
  topk: [{ classIndex: 3, label: 'cat', score: 0.9 }],
  modelId: 1,
  modelVersion: 2,
  model: 'resnet9w05-cifar10@2',
  codec: 'split-q',
  point: 2,
  payloadBytes: 100,
  captureTs: 1,
  latency: { decodeMs: 1, tailMs: 2, edgeMs: 3, queueMs: 0, batch: 1 },
  edgeId: 'edge-1',
};
const json = (v: unknown) => JSON.stringify(v);

test('a result round-trips; extra fields are dropped', (t) => {
  t.deepEqual(parseResult(json(result)), result);
  t.deepEqual(parseResult(json({ ...result, extra: 'x'.repeat(10) })), result);
});

test('a result with a missing or mistyped field is refused', (t) => {
  for (const bad of [
    { ...result, v: 2 },
    { ...result, frameId: '7' },
    { ...result, frameId: 1.5 },
    { ...result, latency: { ...result.latency, edgeMs: 'fast' } },
    { ...result, latency: null },
    { ...result, topk: [{ classIndex: 'x' }] },
    { ...result, score: null },
    [result],
  ]) {
    t.is(parseResult(json(bad)), undefined, json(bad).slice(0, 80));
  }
  t.is(parseResult('{not json'), undefined);
});

test('errors: known codes only, reasons bounded', (t) => {
  const e = errorMessage('cam', 3, 'overloaded', 'queue full', 'edge-1');
  t.deepEqual(parseError(json(e)), e);
  t.is(parseError(json({ ...e, code: 'self-destruct' })), undefined);
  t.is(parseError(json({ ...e, frameId: 'x' })), undefined);
  t.true(parseError(json({ ...e, reason: 'x'.repeat(100_000) }))!.reason.length <= 1024);
});

test('configs: settings checked, a model is a name, never a path', (t) => {
  const c = {
    v: CONFIG_VERSION,
    configId: 'c1',
    fleet: 'f',
    device: 'cam',
    group: null,
    settings: {
      model: 'resnet9w05-cifar10',
      codec: 'split-q',
      point: 2,
      latencyGoalMs: null,
      maxKbps: null,
      fps: 5,
      source: 'sample',
      credentials: null,
    },
    ts: 1,
  };
  t.deepEqual(parseConfig(json(c)), c);
  t.is(parseConfig(json({ ...c, settings: { ...c.settings, point: 'two' } })), undefined);
  t.is(parseConfig(json({ ...c, settings: { ...c.settings, model: '../x' } })), undefined);
  t.is(parseConfig(json({ ...c, configId: 5 })), undefined);
  t.is(parseConfig(json({ ...c, settings: undefined })), undefined);
});

test('device status: state and seq required', (t) => {
  t.deepEqual(parseDeviceStatus(json({ state: 'online', seq: 3, ts: 5, codec: 'split-q' })), {
    state: 'online',
    seq: 3,
    ts: 5,
    codec: 'split-q',
  });
  t.is(parseDeviceStatus(json({ state: 'dancing', seq: 3 })), undefined);
  t.is(parseDeviceStatus(json({ state: 'online' })), undefined);
  t.is(parseDeviceStatus(''), undefined);
});
