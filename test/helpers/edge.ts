import { startEdge, type Edge, type EdgeOptions } from '../../edge-broker/edge.js';
import { shippedModel } from './model.js';

/** An edge on loopback for a test: the shipped model, a free TCP port, no WebSocket,
 * one decoder worker, unless `extra` says otherwise. */
export async function testEdge(extra: Partial<EdgeOptions> = {}): Promise<Edge> {
  return startEdge({
    bundles: [await shippedModel()],
    port: 0,
    wsPort: null,
    workers: 1,
    ...extra,
  });
}
