// @ts-check
/**
 * `splitfleet result`: every result the edge publishes, as a message, filtered by fleet,
 * group, device, label and minimum score. msg.payload is the result (JSON as published),
 * msg.topic its topic, msg.fleet / msg.device / msg.group where it came from. Output 2:
 * the errors the edge answers the same devices' frames with (`{code, reason, frameId}`).
 */
'use strict';

const { edgeOf } = require('./edge-of.js');

const { parseError, parseResult } = require('../lib/core/wire/messages.js');
const { parseTopic } = require('../lib/core/wire/topics.js');

/** @param {import('node-red').NodeAPI} RED */
module.exports = function (RED) {
  /**
   * @this {any}
   * @param {any} config
   */
  function SplitfleetResultNode(config) {
    RED.nodes.createNode(this, config);
    const node = this;
    const edge = edgeOf(RED, node, config);
    if (!edge) return;
    const fleet = String(config.fleet || edge.fleet || '+');
    const device = String(config.device || '+');
    const group = String(config.group || '');
    const labels = String(config.label || '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const minScore = Number(config.minScore || 0);
    let seen = 0;
    const release = edge.register((/** @type {any} */ s) => node.status(s));
    const off = edge.subscribe(
      `${edge.base}/${fleet}/device/${device}/result`,
      (/** @type {string} */ topic, /** @type {Buffer} */ payload) => {
        const t = parseTopic(topic, edge.base);
        const r = parseResult(payload);
        if (!t || t.kind !== 'device' || !r) {
          node.warn(`not a splitfleet result on ${topic}`);
          return;
        }
        const g = edge.groupOf(t.fleet, t.deviceId);
        if (group && g !== group) return;
        if (labels.length && !labels.includes(r.label)) return;
        if (r.score < minScore) return;
        seen++;
        node.send([{ topic, payload: r, fleet: t.fleet, device: t.deviceId, group: g }, null]);
        if (seen % 10 === 1) node.status({ fill: 'green', shape: 'dot', text: `${seen} results` });
      },
    );
    const offErrors = edge.subscribe(
      `${edge.base}/${fleet}/device/${device}/error`,
      (/** @type {string} */ topic, /** @type {Buffer} */ payload) => {
        const t = parseTopic(topic, edge.base);
        const e = parseError(payload);
        if (!t || t.kind !== 'device' || !e) {
          node.warn(`not a splitfleet error on ${topic}`);
          return;
        }
        const g = edge.groupOf(t.fleet, t.deviceId);
        if (group && g !== group) return;
        node.send([null, { topic, payload: e, fleet: t.fleet, device: t.deviceId, group: g }]);
      },
    );
    node.on('close', () => {
      off();
      offErrors();
      release();
    });
  }
  RED.nodes.registerType('splitfleet-result', SplitfleetResultNode);
};
