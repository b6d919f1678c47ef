/**
 * Runs the Python toolkit's own unit tests from the one test command: loaders (CIFAR-10
 * and any ImageFolder, with their errors), the coder, one-epoch train/export smoke runs
 * (the project's nets, a torchvision backbone from a local checkpoint at 64x64, every
 * learned codec) and the ONNX import (split, parity, MACs, errors). Generated images and
 * random weights only; one thread. The torchvision parts skip without python3-torchvision.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../core/paths.js';

const PYTHON = process.env.SPLITFLEET_PYTHON ?? '/usr/bin/python3';

test('models/ toolkit unit tests pass', (t) => {
  const r = spawnSync(PYTHON, ['-W', 'ignore', '-m', 'unittest', 'discover', '-s', 'tests', '-t', '.'], {
    cwd: join(PROJECT_ROOT, 'models'),
    encoding: 'utf8',
    env: { ...process.env, OMP_NUM_THREADS: '1' },
    timeout: 300_000,
  });
  t.log((r.stderr ?? '').trim().split('\n').slice(-3).join('\n'));
  t.is(r.status, 0, r.stderr || String(r.error));
});
