// @ts-check
/**
 * `splitfleet device`: presence and state of the fleet's devices. Output 1: a message
 * whenever a device comes online, goes offline, or changes model, codec, operating point
 * or config (from the devices' retained status, with Sparkplug-style sequence numbers:
 * a stale will never marks a live device offline). Output 2: each device's traffic as
 * the edge reports it every 2 s (frames/s, bytes/s, edge latency, errors).
 */
'use strict';

const { parseTopic } = require('../lib/core/wire/topics.js');
const { edgeOf } = require('./edge-of.js');

/** @param {import('node-red').NodeAPI} RED */
module.exports = function (RED) {
  /**
   * @this {any}
   * @param {any} config
   */
  function SplitfleetDeviceNode(config) {
    RED.nodes.createNode(this, config);
    const node = this;
    const edge = edgeOf(RED, node, config);
    if (!edge) return;
    const fleet = String(config.fleet || edge.fleet || '+');
    const only = String(config.device || '+');
    /** @type {Map<string, {online: boolean, seq: number, model: string | null, codec: string | null, point: number | null, configId: string | null}>} */
    const known = new Map();
    const release = edge.register((/** @type {any} */ s) => node.status(s));
    const online = () => [...known.values()].filter((d) => d.online).length;

    const offStatus = edge.subscribe(
      `${edge.base}/${fleet}/device/${only}/status`,
      (/** @type {string} */ topic, /** @type {Buffer} */ payload) => {
        if (payload.length === 0) return;
        let st;
        try {
          st = JSON.parse(payload.toString('utf8'));
        } catch {
          node.warn(`unreadable status on ${topic}`);
          return;
        }
        if (!st || (st.state !== 'online' && st.state !== 'offline') || typeof st.seq !== 'number')
          return;
        const t = parseTopic(topic, edge.base);
        if (!t || t.kind !== 'device') return;
        const key = `${t.fleet}/${t.deviceId}`;
        const prev = known.get(key);
        // an offline with an older seq than the birth in force is a stale will
        if (prev && st.state === 'offline' && prev.online && st.seq < prev.seq) return;
        const next = {
          online: st.state === 'online',
          seq: st.seq,
          model: st.model ?? prev?.model ?? null,
          codec: st.codec ?? prev?.codec ?? null,
          point: st.point ?? prev?.point ?? null,
          configId: st.configId ?? prev?.configId ?? null,
        };
        const changed =
          !prev ||
          prev.online !== next.online ||
          prev.model !== next.model ||
          prev.codec !== next.codec ||
          prev.point !== next.point ||
          prev.configId !== next.configId;
        known.set(key, next);
        if (!changed) return;
        const event =
          !prev || prev.online !== next.online ? (next.online ? 'online' : 'offline') : 'changed';
        node.send([
          {
            topic,
            event,
            fleet: t.fleet,
            device: t.deviceId,
            payload: { fleet: t.fleet, device: t.deviceId, ...next, ts: st.ts ?? Date.now() },
            online: online(),
          },
          null,
        ]);
        node.status({ fill: 'green', shape: 'dot', text: `${online()} online` });
      },
    );
    const offTraffic = edge.subscribe(
      // the edges' device reports in the connection's fleet ('+': every fleet; a login
      // pinned to one fleet may read only that one)
      `${edge.base}/${edge.fleet}/edge/+/devices`,
      (/** @type {string} */ topic, /** @type {Buffer} */ payload) => {
        let report;
        try {
          report = JSON.parse(payload.toString('utf8'));
        } catch {
          return;
        }
        if (!report || !Array.isArray(report.devices)) return;
        for (const d of report.devices) {
          if (fleet !== '+' && d.fleet !== fleet) continue;
          if (only !== '+' && d.device !== only) continue;
          node.send([
            null,
            { topic, fleet: d.fleet, device: d.device, edgeId: report.edgeId, payload: d },
          ]);
        }
      },
    );
    node.on('close', () => {
      offStatus();
      offTraffic();
      release();
    });
  }
  RED.nodes.registerType('splitfleet-device', SplitfleetDeviceNode);
};
