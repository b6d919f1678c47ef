/**
 * Evaluation outside the agent: top-1 accuracy from the agent's `frame` and `result`
 * events joined with labels the caller holds.
 */
import test from 'ava';
import { Accuracy, datasetLabels } from '../../device-agent/accuracy.js';
import { Bus } from '../../device-agent/bus.js';
import type { ResultMessage } from '../../core/wire/messages.js';

const result = (frameId: number, classIndex: number): ResultMessage =>
  ({ frameId, classIndex }) as ResultMessage;

const frame = (frameId: number, name: string, index: number) => ({
  frameId,
  sample: { name, index },
  frameBytes: 100,
  payloadBytes: 90,
  headMs: 1,
});

test('results are scored against the label of the sample their frame was made from', (t) => {
  const labels = new Map([
    ['test/cat/1.jpg', 3],
    ['test/dog/2.jpg', 5],
  ]);
  const bus = new Bus('cam');
  const acc = new Accuracy((name) => labels.get(name));
  const stop = acc.follow(bus);
  bus.emit('frame', frame(1, 'test/cat/1.jpg', 0));
  bus.emit('frame', frame(2, 'test/dog/2.jpg', 1));
  bus.emit('frame', frame(3, 'loose.jpg', 2)); // no label: not scored
  bus.emit('frame', frame(4, 'test/cat/1.jpg', 3));
  bus.emit('result', result(1, 3), 10);
  bus.emit('result', result(2, 3), 10);
  bus.emit('result', result(3, 3), 10);
  bus.emit('result', result(1, 3), 10); // a duplicate answer counts once
  bus.emit('lost', 4);
  bus.emit('result', result(4, 3), 10); // given up before: not scored
  t.is(acc.labelled, 2);
  t.is(acc.correct, 1);
  t.is(acc.top1, 0.5);
  stop();
  bus.emit('frame', frame(5, 'test/cat/1.jpg', 4));
  bus.emit('result', result(5, 3), 10);
  t.is(acc.labelled, 2, 'stopped following');
});

test('the shipped sample has a label for every image; a camera has none', async (t) => {
  const labelOf = await datasetLabels({ source: 'sample' });
  t.is(labelOf('test/cat/0001.jpg'), 3);
  t.is(labelOf('no/such.jpg'), undefined);
  const camera = await datasetLabels({ source: 'lavfi:testsrc2' });
  t.is(camera('test/cat/0001.jpg'), undefined);
});
