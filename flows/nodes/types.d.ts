/** What the `splitfleet-edge` config node offers the other splitfleet nodes. */
import type { Node } from 'node-red';

export interface NodeStatus {
  fill: 'green' | 'yellow' | 'red' | 'grey';
  shape: 'dot' | 'ring';
  text: string;
}

export interface EdgeResponse {
  status: 'ok' | 'error';
  data: unknown;
  error: string | null;
  id: string | null;
}

export interface SplitfleetEdge extends Node {
  url: string;
  base: string;
  fleet: string;
  register(onStatus: (s: NodeStatus) => void): () => void;
  subscribe(filter: string, fn: (topic: string, payload: Buffer) => void): () => void;
  groupOf(fleet: string, device: string): string | null;
  request(
    prefix: string,
    op: string,
    body: Record<string, unknown>,
    timeoutMs: number,
  ): Promise<EdgeResponse>;
}
