/**
 * Evaluation for demos, benchmarks and tests: top-1 accuracy of an agent's results,
 * joined with labels the caller holds. The agent itself never sees a label; this listens
 * to its events (a frame's id and sample name, then its result) and looks the label up.
 */
import { readSamples } from '../core/data/cifar.js';
import type { AgentEvent, Listener } from './bus.js';
import { resolveSource, sourceKind, type SourceOptions } from './source.js';

/** The label of a sample by its name in the source; undefined: unlabelled. */
export type LabelOf = (sampleName: string) => number | undefined;

/** What the evaluation needs of an agent. */
export interface Observable {
  on<E extends AgentEvent>(event: E, fn: Listener<E>): () => void;
}

/** The labels of a dataset source (a folder, an archive, the shipped sample), read once;
 * other sources (cameras, streams, MQTT, stdin) have none. */
export async function datasetLabels(source: SourceOptions): Promise<LabelOf> {
  if (sourceKind(source.source) !== 'dataset') return () => undefined;
  const labels = new Map<string, number>();
  for await (const s of readSamples(resolveSource(source.source), { split: source.split })) {
    if (s.label !== undefined) labels.set(s.name, s.label);
  }
  return (name) => labels.get(name);
}

export class Accuracy {
  /** Results for labelled samples, and those whose top class is the label. */
  labelled = 0;
  correct = 0;
  /** The label of each frame in flight. */
  private readonly expected = new Map<number, number>();

  constructor(private readonly labelOf: LabelOf) {}

  /** Follow `agent`'s frames and results; returns the function that stops it. */
  follow(agent: Observable): () => void {
    const offs = [
      agent.on('frame', (f) => {
        const label = this.labelOf(f.sample.name);
        if (label !== undefined) this.expected.set(f.frameId, label);
      }),
      agent.on('result', (r) => {
        const label = this.expected.get(r.frameId);
        if (label === undefined) return;
        this.expected.delete(r.frameId);
        this.labelled++;
        if (r.classIndex === label) this.correct++;
      }),
      agent.on('error', (e) => e.frameId !== null && this.expected.delete(e.frameId)),
      agent.on('lost', (id) => this.expected.delete(id)),
      agent.on('dropped', (id) => this.expected.delete(id)),
    ];
    return () => offs.forEach((off) => off());
  }

  /** Top-1 accuracy so far (0 with no labelled result). */
  get top1(): number {
    return this.correct / Math.max(1, this.labelled);
  }
}
