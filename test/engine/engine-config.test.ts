/**
 * The head's engine chosen in the device config, over real MQTT: a fleet file's `engine`
 * setting switches a running agent's head between onnxruntime and tfjs without a restart,
 * and `splitfleet agent --engine` (the real CLI process) says which fallback it took when
 * the engine asked for does not run here.
 */
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import * as tf from '@tensorflow/tfjs';
import { Agent } from '../../device-agent/agent.js';
import { Accuracy, datasetLabels } from '../../device-agent/accuracy.js';
import { engineUnavailable } from '../../core/engine/select.js';
import { parseFleet } from '../../fleet-config/load.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const fleetText = (engine: string) => `
version: 1
fleet: eng
defaults: { codec: split-q, point: 2, fps: 50 }
devices:
  cam: { engine: ${engine} }
`;

test.serial(
  'a fleet config switches the head between tfjs and onnx without a restart',
  async (t) => {
    const edge = await testEdge({
      edgeId: 'edge-eng',
      fleet: 'eng',
      fleetFile: parseFleet(fleetText('tfjs-wasm')),
    });
    const agent = new Agent({
      url: edge.url,
      fleet: 'eng',
      deviceId: 'cam',
      bundle: await shippedModel(),
      codec: 'split-q',
      point: 2,
      source: { source: 'sample', loop: true, limit: 30 },
      fps: 0,
      resultTimeoutMs: 20_000,
    });
    const accuracy = new Accuracy(await datasetLabels({ source: 'sample' }));
    accuracy.follow(agent);
    try {
      await agent.start();
      await waitFor(() => edge.configs().get('cam')?.applied === edge.configs().get('cam')!.wanted);
      t.is(agent.settings.engine, 'tfjs-wasm');
      // the head's weights live in tfjs now
      t.is(tf.getBackend(), 'wasm');
      t.true(tf.memory().numTensors > 0, 'tfjs holds the head');
      const run = agent.run();
      await waitFor(() => agent.stats.results >= 10);
      await edge.applyFleet(parseFleet(fleetText('onnx')));
      const next = edge.configs().get('cam')!.wanted;
      await waitFor(() => edge.configs().get('cam')?.applied === next);
      t.is(agent.settings.engine, 'onnx');
      t.is(tf.memory().numTensors, 0, 'the tfjs head was closed');
      const s = await run;
      t.is(s.results, 30);
      t.is(s.errors + s.lost, 0);
      t.is(accuracy.labelled, 30);
      t.true(accuracy.correct >= 20, `accuracy ${accuracy.correct}/30`);
    } finally {
      await agent.stop();
      await edge.close();
    }
  },
);

function agentProcess(url: string, engine: string) {
  return runCli(
    [
      'agent',
      '--url',
      url,
      '--fleet',
      'cli',
      '--device',
      `cam-${engine}`,
      '--engine',
      engine,
      '--frames',
      '20',
      '--fps',
      '0',
      '--json',
    ],
    { logLevel: 'info' },
  );
}

test.serial(
  'splitfleet agent --engine: the engine asked for, or the fallback it says it took',
  async (t) => {
    const edge = await testEdge({ edgeId: 'edge-cli', fleet: 'cli' });
    try {
      const missing = await engineUnavailable('tfjs-node');
      const [onnx, tfjs] = [
        await agentProcess(edge.url, 'onnx'),
        await agentProcess(edge.url, 'tfjs-node'),
      ];
      for (const r of [onnx, tfjs]) {
        t.is(r.code, 0, r.stderr);
        const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
          results: number;
          errors: number;
          accuracy: number;
        };
        t.like(summary, { results: 20, errors: 0 });
      }
      const acc = (s: string) =>
        (JSON.parse(s.trim().split('\n').at(-1)!) as { accuracy: number }).accuracy;
      t.is(acc(tfjs.stdout), acc(onnx.stdout), 'same answers from either engine');
      if (missing) {
        t.regex(
          tfjs.stderr,
          /engine tfjs-node is not available here \(.*not installed.*\); falling back to tfjs-wasm/,
        );
      } else {
        t.notRegex(tfjs.stderr, /falling back/);
      }
      t.notRegex(onnx.stderr, /falling back/);
    } finally {
      await edge.close();
    }
  },
);
