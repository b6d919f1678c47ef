// @ts-check
/**
 * `splitfleet command`: a request to a device (ping, get-config, restart-pipeline) or to
 * an edge (rollout, rollback, jobs, models, set-config), sent on `.../request/<op>`; the answer on
 * `.../response/<op>` becomes msg.payload. An error answer or no answer in time goes to
 * done(err), so a Catch node sees it. msg.device / msg.edge / msg.op / msg.fleet override
 * the node's settings; msg.payload (an object) is the request body (a rollout's
 * `{spec}`, a rollback's `{jobId}`, a set-config's `{device | group, set}`). The ops are
 * the project's one list of them (core/wire/rpc.ts).
 */
'use strict';

const { DEVICE_OPS, EDGE_OPS } = require('../lib/core/wire/rpc.js');
const { edgeOf } = require('./edge-of.js');

const ID = /^[A-Za-z0-9_.-]{1,64}$/;
/** @type {readonly string[]} */
const deviceOps = DEVICE_OPS;
/** @type {readonly string[]} */
const edgeOps = EDGE_OPS;

/** @param {import('node-red').NodeAPI} RED */
module.exports = function (RED) {
  /**
   * @this {any}
   * @param {any} config
   */
  function SplitfleetCommandNode(config) {
    RED.nodes.createNode(this, config);
    const node = this;
    const edge = edgeOf(RED, node, config);
    if (!edge) return;
    const release = edge.register(() => undefined);
    let closed = false;
    node.on(
      'input',
      (
        /** @type {any} */ msg,
        /** @type {(m: any) => void} */ send,
        /** @type {(e?: Error) => void} */ done,
      ) => {
        const op = String(msg.op || config.op || 'ping');
        const toEdge = edgeOps.includes(op);
        const fleet = String(
          msg.fleet || config.fleet || (edge.fleet !== '+' ? edge.fleet : 'default'),
        );
        const target = String(
          toEdge ? msg.edge || config.target || 'edge-1' : msg.device || config.target || '',
        );
        if (!toEdge && !deviceOps.includes(op)) {
          done(
            new Error(
              `unknown op ${JSON.stringify(op)}; device ops: ${deviceOps.join(', ')}; edge ops: ${edgeOps.join(', ')}`,
            ),
          );
          return;
        }
        if (!ID.test(fleet) || !ID.test(target)) {
          done(
            new Error(
              `a ${toEdge ? 'edge' : 'device'} id and a fleet id are needed (msg.${toEdge ? 'edge' : 'device'}, msg.fleet or the node's settings)`,
            ),
          );
          return;
        }
        const body =
          msg.payload && typeof msg.payload === 'object' && !Buffer.isBuffer(msg.payload)
            ? msg.payload
            : {};
        const timeoutMs = Number(config.timeout || 10) * 1000;
        const prefix = `${edge.base}/${fleet}/${toEdge ? 'edge' : 'device'}/${target}`;
        node.status({ fill: 'yellow', shape: 'ring', text: `${op} ${target}` });
        edge.request(prefix, op, body, timeoutMs).then(
          (/** @type {{status: string, data: unknown, error: string | null}} */ r) => {
            if (closed) return done(); // redeployed meanwhile: nothing to send from here
            if (r.status !== 'ok') {
              node.status({ fill: 'red', shape: 'dot', text: `${op}: error` });
              done(new Error(`${op} on ${target}: ${r.error}`));
              return;
            }
            node.status({ fill: 'green', shape: 'dot', text: `${op} ${target}: ok` });
            send({ ...msg, topic: `${prefix}/response/${op}`, op, payload: r.data, response: r });
            done();
          },
          (/** @type {Error} */ e) => {
            if (closed) return done();
            node.status({ fill: 'red', shape: 'ring', text: `${op}: no answer` });
            done(e);
          },
        );
      },
    );
    node.on('close', () => {
      closed = true;
      release();
    });
  }
  RED.nodes.registerType('splitfleet-command', SplitfleetCommandNode);
};
