import test from 'ava';
import { deviceFilter, deviceTopic, edgeStatusTopic, parseTopic } from '../../core/wire/topics.js';

test('device topics round trip through the parser', (t) => {
  for (const ch of ['features', 'result', 'error', 'status', 'config'] as const) {
    const topic = deviceTopic('plant-1', 'cam.07', ch);
    t.is(topic, `splitfleet/plant-1/device/cam.07/${ch}`);
    t.deepEqual(parseTopic(topic), {
      kind: 'device',
      fleet: 'plant-1',
      deviceId: 'cam.07',
      channel: ch,
    });
  }
});

test('edge status topic parses', (t) => {
  const topic = edgeStatusTopic('f', 'edge-1');
  t.deepEqual(parseTopic(topic), { kind: 'edge', fleet: 'f', edgeId: 'edge-1', channel: 'status' });
});

test('ids with MQTT wildcards or separators are refused', (t) => {
  for (const bad of ['a/b', '+', '#', '', 'x'.repeat(65), 'ümlaut']) {
    t.throws(() => deviceTopic('f', bad, 'features'), { message: /invalid device id/ }, bad);
  }
  t.throws(() => deviceFilter('result', 'a/b'));
});

test('foreign or malformed topics parse to undefined', (t) => {
  for (const topic of [
    'other/f/device/d/result',
    'splitfleet/f/device/d/unknown',
    'splitfleet/f/device/d/result/extra',
    'splitfleet/f/gadget/d/result',
    'splitfleet/f/edge/e/result',
    'splitfleet/f+/device/d/result',
  ]) {
    t.is(parseTopic(topic), undefined, topic);
  }
});

test('filters use one-level wildcards', (t) => {
  t.is(deviceFilter('features'), 'splitfleet/+/device/+/features');
  t.is(deviceFilter('result', 'demo'), 'splitfleet/demo/device/+/result');
});
