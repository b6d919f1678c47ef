// @ts-check
/** The one preamble of every splitfleet node: find the node's edge connection. */
'use strict';

/**
 * The `splitfleet-edge` config node `config.edge` names, or null (with a red status on
 * `node`, which then does nothing).
 * @param {import('node-red').NodeAPI} RED
 * @param {import('node-red').Node} node
 * @param {{ edge?: string }} config
 * @returns {import('./types').SplitfleetEdge | null}
 */
function edgeOf(RED, node, config) {
  const edge = /** @type {import('./types').SplitfleetEdge | null} */ (
    config.edge ? RED.nodes.getNode(config.edge) : null
  );
  if (!edge) node.status({ fill: 'red', shape: 'ring', text: 'no edge configured' });
  return edge;
}

module.exports = { edgeOf };
