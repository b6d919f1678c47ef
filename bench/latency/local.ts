/** The `local` method: the whole model on the device, no network, measured in this process. */
import { readSamples, type Sample } from '../../core/data/cifar.js';
import { onnxEngine } from '../../core/engine/onnx.js';
import { decodeImage, preprocess } from '../../core/image/image.js';
import type { Bundle } from '../../core/model/load.js';
import { percentile } from '../../core/util/stats.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface LocalRun {
  p50: number;
  p99: number;
  accuracy: number;
  n: number;
  maxFps: number;
}

/** The whole model on the device, one thread: latency at `fps` and back-to-back rate. */
export async function measureLocal(
  bundle: Bundle,
  source: string,
  fps: number,
  frames: number,
): Promise<LocalRun> {
  const m = bundle.manifest;
  const head = await onnxEngine.load(bundle.file('head'), { threads: 1 });
  const tail = await onnxEngine.load(bundle.file('tail'), { threads: 1 });
  try {
    const samples: Sample[] = [];
    for await (const s of readSamples(source, { split: 'test', limit: frames })) samples.push(s);
    if (!samples.length) throw new Error(`no samples in ${source}`);
    const one = async (i: number) => {
      const s = samples[i % samples.length]!;
      const img = s.rgb ?? (await decodeImage(s.bytes!));
      const logits = (await tail.run(await head.run(preprocess(img, m.preprocessing)))).data;
      let best = 0;
      for (let j = 1; j < logits.length; j++) if (logits[j]! > logits[best]!) best = j;
      return best === s.label ? 1 : 0;
    };
    for (let i = 0; i < 5; i++) await one(i); // warm-up
    const lat: number[] = [];
    let correct = 0;
    const t0 = performance.now();
    for (let i = 0; i < frames; i++) {
      const due = t0 + (i * 1000) / fps;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const start = performance.now();
      correct += await one(i);
      lat.push(performance.now() - start);
    }
    const b0 = performance.now();
    for (let i = 0; i < frames; i++) await one(i);
    const maxFps = (1000 * frames) / (performance.now() - b0);
    return {
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      accuracy: correct / frames,
      n: frames,
      maxFps: Math.floor(maxFps),
    };
  } finally {
    await head.close();
    await tail.close();
  }
}
