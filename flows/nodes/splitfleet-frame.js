// @ts-check
/**
 * `splitfleet frame`: decodes a raw feature frame (msg.payload, a Buffer from an MQTT-in
 * node on `.../device/+/features`) into a readable summary for debugging: frame id,
 * model and version, codec name and id, operating point, tensor shape, payload bytes,
 * capture time. A frame that does not decode goes to done(err) with the reason.
 */
'use strict';

const { decodeFrame } = require('../lib/core/wire/frame.js');
const { pinnedCodec } = require('../lib/core/codec/ids.js');

/** @param {number} id */
function codecName(id) {
  return pinnedCodec(id)?.name ?? `codec ${id}`;
}

/** @param {import('node-red').NodeAPI} RED */
module.exports = function (RED) {
  /**
   * @this {any}
   * @param {any} config
   */
  function SplitfleetFrameNode(config) {
    RED.nodes.createNode(this, config);
    const node = this;
    let n = 0;
    node.on(
      'input',
      (
        /** @type {any} */ msg,
        /** @type {(m: any) => void} */ send,
        /** @type {(e?: Error) => void} */ done,
      ) => {
        const p = msg.payload;
        const bytes = Buffer.isBuffer(p) ? p : p instanceof Uint8Array ? Buffer.from(p) : null;
        if (!bytes) {
          done(new Error('msg.payload must be the raw frame (a Buffer)'));
          return;
        }
        let f;
        try {
          f = decodeFrame(bytes);
        } catch (e) {
          node.status({ fill: 'red', shape: 'ring', text: 'bad frame' });
          done(new Error(`not a splitfleet frame: ${/** @type {Error} */ (e).message}`));
          return;
        }
        n++;
        const summary = {
          frameId: f.frameId,
          modelId: f.modelId,
          modelVersion: f.modelVersion,
          codec: codecName(f.codecId),
          codecId: f.codecId,
          codecVersion: f.codecVersion,
          point: f.point,
          shape: f.shape,
          payloadBytes: f.payload.byteLength,
          frameBytes: bytes.length,
          captureTs: f.captureTs,
        };
        node.status({ fill: 'green', shape: 'dot', text: `${n} frames, last ${bytes.length} B` });
        send({ ...msg, payload: summary, frame: summary });
        done();
      },
    );
  }
  RED.nodes.registerType('splitfleet-frame', SplitfleetFrameNode);
};
