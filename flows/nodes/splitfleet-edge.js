// @ts-check
/**
 * `splitfleet-edge`: the config node for one connection to a splitfleet edge (its MQTT
 * broker), shared by every splitfleet node that names it. It owns the MQTT client, the
 * subscriptions of its users (each topic filter subscribed once, messages fanned out),
 * the groups of the fleet's devices (learned from their retained configs), and
 * request/response calls (`.../request/<op>` -> `.../response/<op>` with a correlation id).
 */
'use strict';

const { randomUUID } = require('node:crypto');
const { readFileSync } = require('node:fs');
const mqtt = require('mqtt');
const { filterWithin, parseTopic } = require('../lib/core/wire/topics.js');
const { request } = require('../lib/core/wire/rpc.js');

/** @typedef {(topic: string, payload: Buffer) => void} Handler */
/** @typedef {{ fill: 'green' | 'yellow' | 'red' | 'grey', shape: 'dot' | 'ring', text: string }} Status */

/** @param {import('node-red').NodeAPI} RED */
module.exports = function (RED) {
  /**
   * @this {any}
   * @param {any} config
   */
  function SplitfleetEdgeNode(config) {
    RED.nodes.createNode(this, config);
    const node = this;
    node.url = String(config.url || 'mqtt://127.0.0.1:1883');
    node.base = String(config.base || 'splitfleet');
    node.fleet = String(config.fleet || '+');
    /** @type {mqtt.MqttClient | null} */
    let client = null;
    /** @type {Map<string, Set<Handler>>} */
    const subs = new Map();
    /** @type {Set<(s: Status) => void>} */
    const watchers = new Set();
    /** @type {Map<string, string | null>} "fleet/device" -> group */
    const groups = new Map();
    /** @type {Status} */
    let status = { fill: 'grey', shape: 'ring', text: 'not connected' };

    /** @param {Status} s */
    const setStatus = (s) => {
      status = s;
      for (const w of watchers) w(s);
    };

    const connect = () => {
      if (client) return client;
      const creds = node.credentials || {};
      // with a login, the edge takes only client ids of the form `<user>:<suffix>`
      const suffix = `nodered-sf-${randomUUID().slice(0, 8)}`;
      /** @type {mqtt.IClientOptions} */
      const opts = {
        clientId: creds.username ? `${creds.username}:${suffix}` : suffix,
        reconnectPeriod: 2000,
        connectTimeout: 10_000,
        protocolVersion: 4,
        // our connect handler subscribes every filter in use; mqtt.js must not bring
        // back filters released while the link was down
        resubscribe: false,
        // a refused login is retried too (the edge's credentials may be fixed)
        reconnectOnConnackError: true,
      };
      if (creds.username) {
        opts.username = creds.username;
        opts.password = creds.password || '';
      }
      if (config.ca) {
        try {
          opts.ca = readFileSync(String(config.ca));
        } catch (e) {
          node.error(`cannot read CA file ${config.ca}: ${/** @type {Error} */ (e).message}`);
        }
      }
      setStatus({ fill: 'yellow', shape: 'ring', text: 'connecting' });
      const c = mqtt.connect(node.url, opts);
      client = c;
      c.on('connect', () => {
        setStatus({ fill: 'green', shape: 'dot', text: 'connected' });
        const filters = [...subs.keys(), `${node.base}/${node.fleet}/device/+/config`];
        c.subscribe(filters, { qos: 1 }, (err, granted) => {
          const refused = (granted || []).filter((g) => g.qos === 128).map((g) => g.topic);
          if (err || refused.length) {
            node.warn(`subscription refused by the edge: ${refused.join(', ') || String(err)}`);
          }
        });
      });
      c.on('close', () => {
        // keep the reason (a refused login) on the dot rather than a bare "disconnected"
        if (status.text !== 'closed' && status.fill !== 'red')
          setStatus({ fill: 'red', shape: 'ring', text: 'disconnected' });
      });
      c.on('error', (err) => {
        const bad = /not authori[sz]ed|bad user ?name or password/i.test(err.message);
        const text = bad ? 'login refused' : err.message.slice(0, 40);
        // logged once per change of state, not on every retry
        if (text !== status.text) node.error(`splitfleet edge ${node.url}: ${err.message}`);
        setStatus({ fill: 'red', shape: 'ring', text });
      });
      c.on('message', (topic, payload) => {
        const t = parseTopic(topic, node.base);
        if (t && t.kind === 'device' && t.channel === 'config') {
          try {
            const cfg = payload.length ? JSON.parse(payload.toString('utf8')) : null;
            groups.set(`${t.fleet}/${t.deviceId}`, cfg ? (cfg.group ?? null) : null);
          } catch {
            // not a config message
          }
        }
        for (const [filter, handlers] of subs) {
          if (!filterWithin(topic, filter)) continue;
          for (const h of handlers) {
            try {
              h(topic, payload);
            } catch (e) {
              node.warn(`handler failed on ${topic}: ${/** @type {Error} */ (e).message}`);
            }
          }
        }
      });
      return c;
    };

    /** Register a node using this connection (and its status dot); returns the release. */
    node.register = (/** @type {(s: Status) => void} */ onStatus) => {
      watchers.add(onStatus);
      onStatus(status);
      connect();
      return () => {
        watchers.delete(onStatus);
      };
    };

    /** Subscribe `fn` to a topic filter; returns the unsubscribe. */
    node.subscribe = (/** @type {string} */ filter, /** @type {Handler} */ fn) => {
      let set = subs.get(filter);
      if (!set) {
        set = new Set();
        subs.set(filter, set);
        if (client && client.connected) client.subscribe(filter, { qos: 1 });
      }
      set.add(fn);
      return () => {
        const s = subs.get(filter);
        if (!s) return;
        s.delete(fn);
        if (s.size === 0) {
          subs.delete(filter);
          if (client) client.unsubscribe(filter);
        }
      };
    };

    /** The group of a device, from its retained config (null: none known). */
    node.groupOf = (/** @type {string} */ fleet, /** @type {string} */ device) =>
      groups.get(`${fleet}/${device}`) ?? null;

    /**
     * Send a request and wait for its response (the project's one request/response,
     * core/wire/rpc.ts); resolves `{status, data, error, id}`.
     * @param {string} prefix `<base>/<fleet>/device/<id>` or `<base>/<fleet>/edge/<id>`
     * @param {string} op
     * @param {Record<string, unknown>} body
     * @param {number} timeoutMs
     */
    node.request = (prefix, op, body, timeoutMs) => {
      const c = connect();
      const topic = `${prefix}/request/${op}`;
      if (c.connected) return request(c, topic, body, timeoutMs);
      // not connected yet: wait for it within the same time limit
      const t0 = Date.now();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          c.off('connect', onConnect);
          reject(new Error(`no answer to ${op} from ${prefix} within ${timeoutMs} ms`));
        }, timeoutMs);
        const onConnect = () => {
          clearTimeout(timer);
          request(c, topic, body, Math.max(1, timeoutMs - (Date.now() - t0))).then(resolve, reject);
        };
        c.once('connect', onConnect);
      });
    };

    node.on('close', (/** @type {boolean} */ _removed, /** @type {() => void} */ done) => {
      setStatus({ fill: 'grey', shape: 'ring', text: 'closed' });
      subs.clear();
      const c = client;
      client = null;
      if (c) c.end(true, {}, () => done());
      else done();
    });
  }

  RED.nodes.registerType('splitfleet-edge', SplitfleetEdgeNode, {
    credentials: { username: { type: 'text' }, password: { type: 'password' } },
  });
};
