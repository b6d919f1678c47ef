import test from 'ava';
import {
  accessFilters,
  deviceFilter,
  deviceTopic,
  edgeStatusTopic,
  filterWithin,
  parseTopic,
} from '../../core/wire/topics.js';

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

test('a device may publish its wire v2 frames and announces and read its answers, only its own', (t) => {
  const pub = accessFilters('device', 'cam1', 'f', 'publish');
  const sub = accessFilters('device', 'cam1', 'f', 'subscribe');
  const own = (ch: 'f' | 'ctx' | 'a') => deviceTopic('f', 'cam1', ch);
  t.true(pub.some((f) => filterWithin(own('f'), f)));
  t.true(pub.some((f) => filterWithin(own('ctx'), f)));
  t.false(
    pub.some((f) => filterWithin(own('a'), f)),
    'answers come from the edge',
  );
  t.true(sub.some((f) => filterWithin(own('a'), f)));
  for (const ch of ['f', 'ctx', 'a'] as const) {
    const other = deviceTopic('f', 'cam2', ch);
    t.false(
      [...pub, ...sub].some((f) => filterWithin(other, f)),
      ch,
    );
  }
  t.deepEqual(parseTopic(own('f')), { kind: 'device', fleet: 'f', deviceId: 'cam1', channel: 'f' });
});
