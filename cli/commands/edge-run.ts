/**
 * What `splitfleet edge` runs: the edge (and Node-RED when asked), the banner, and the
 * credential and fleet files followed as they are edited.
 */
import { watchFile } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadBundle, type Bundle } from '../../core/model/load.js';
import { resolveBundle, scanZoo } from '../../core/model/zoo.js';
import { background } from '../../core/util/log.js';
import { loadCredentials, type CredentialFile } from '../../edge-broker/auth.js';
import { startEdge, type Edge } from '../../edge-broker/edge.js';
import { startNodeRed, type EmbeddedNodeRed as NodeRed } from '../../edge-broker/node-red.js';
import { loadFleetInWorker } from '../../fleet-config/load-worker.js';
import type { EdgeCliOptions, EdgeUp } from './edge.js';
import { fleetContext } from './shared.js';

const say = (line: string) => process.stdout.write(`${line}\n`);
const complain = (line: string) => process.stderr.write(`${line}\n`);
const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Bundles of the registry folder that are not served already: staged for rollouts. A
 * broken bundle there is reported, and not staged. */
async function stagedBundles(dir: string, served: Bundle[]): Promise<Bundle[]> {
  const { bundles, broken } = await scanZoo(dir);
  for (const b of broken) complain(`registry: bundle ${b.dir} is broken, not staged: ${b.reason}`);
  const staged: Bundle[] = [];
  for (const { dir: folder, manifest: m } of bundles) {
    if (!served.some((b) => b.manifest.name === m.name && b.manifest.version === m.version))
      staged.push(await loadBundle(folder));
  }
  return staged;
}

/** Start the edge the options describe; resolves with the function that stops it. */
export async function runEdge(o: EdgeCliOptions): Promise<() => Promise<void>> {
  const bundles = await Promise.all(o.models.map((m) => resolveBundle(m)));
  const staged = o.registry ? await stagedBundles(o.registry, bundles) : [];
  if (o.stateDir) await mkdir(o.stateDir, { recursive: true });
  const credentials = o.credentials ? await loadCredentials(o.credentials) : undefined;
  const tls = o.tls
    ? { port: o.tls.port, key: await readFile(o.tls.key), cert: await readFile(o.tls.cert) }
    : undefined;
  const edge = await startEdge({
    bundles,
    staged,
    tls,
    metricsPort: o.metricsPort,
    httpHost: o.httpHost,
    access: { credentials, ratePerSecond: o.rate },
    host: o.host,
    port: o.port,
    wsPort: o.wsPort,
    workers: o.workers,
    threadsPerWorker: o.threads,
    maxQueue: o.maxQueue,
    maxBatch: o.maxBatch,
    maxWaitMs: o.maxWaitMs,
    fleet: o.fleet,
    edgeId: o.edgeId,
    stateDir: o.stateDir ?? null,
    redis: o.redis,
  });
  const nodeRed = o.nodeRed
    ? await startNodeRed({
        port: o.nodeRed.port,
        host: o.httpHost,
        credentials,
        userDir: o.nodeRed.dir ?? join(o.stateDir ?? '.splitfleet', 'node-red'),
        edgeUrl: `mqtt://127.0.0.1:${new URL(edge.url).port}`,
        username: process.env.SPLITFLEET_NODE_RED_USER,
        password: process.env.SPLITFLEET_NODE_RED_PASSWORD,
      })
    : null;
  if (nodeRed && !o.json) {
    say(`Node-RED editor on ${nodeRed.url}/, dashboard on ${nodeRed.dashboardUrl}`);
  }
  if (nodeRed?.generatedLogin) {
    const { username, password } = nodeRed.generatedLogin;
    say(
      `Node-RED login (shown only now; only its hash is kept, in .splitfleet-admin.json of the Node-RED folder: delete it for a new password): user ${username}, password ${password}`,
    );
  }
  if (o.json) say(JSON.stringify(upLine(edge, nodeRed)));
  else banner(o, edge, nodeRed, Boolean(credentials));
  if (o.credentials) followCredentials(o.credentials, edge, nodeRed);
  if (o.fleetFile) await followFleetFile(o.fleetFile, edge);
  return async () => {
    say(`stopping: ${JSON.stringify(edge.stats())}`);
    await nodeRed?.close();
    await edge.close();
  };
}

function upLine(edge: Edge, nodeRed: NodeRed | null): EdgeUp {
  return {
    edge: edge.edgeId,
    mqtt: edge.url,
    ws: edge.wsUrl,
    mqtts: edge.broker.tlsUrl,
    metrics: edge.metricsUrl,
    nodeRed: nodeRed?.url ?? null,
    dashboard: nodeRed?.dashboardUrl ?? null,
  };
}

/** Where each listener is really bound, and who can reach it. */
function banner(o: EdgeCliOptions, edge: Edge, nodeRed: NodeRed | null, logins: boolean): void {
  say(
    `edge ${edge.edgeId} on ${edge.url}${edge.wsUrl ? ` and ${edge.wsUrl}` : ''}${edge.broker.tlsUrl ? ` and ${edge.broker.tlsUrl}` : ''}${edge.metricsUrl ? `; metrics on ${edge.metricsUrl}/metrics` : ''}`,
  );
  const reach = (host: string) =>
    host === '0.0.0.0' || host === '::'
      ? 'every interface'
      : /^(127\.|::1$|localhost$)/.test(host)
        ? 'this host only'
        : 'that interface';
  const port = (url: string | null) => (url ? new URL(url).port : null);
  const rows: [string, string, string | null][] = [
    ['mqtt', o.host, port(edge.url)],
    ['mqtt-ws', o.host, port(edge.wsUrl)],
    ['mqtts', o.host, port(edge.broker.tlsUrl)],
    ['metrics', o.httpHost, port(edge.metricsUrl)],
    ['node-red', o.httpHost, port(nodeRed?.url ?? null)],
  ];
  process.stdout.write(
    `listening (${logins ? 'logins required' : 'NO LOGIN: open broker, use --credentials'}):\n${rows
      .filter((r) => r[2] !== null)
      .map(([name, host, p]) => `  ${name.padEnd(9)} ${host}:${p} (${reach(host)})\n`)
      .join('')}`,
  );
}

/** Rotation: an edited credential file replaces the users at once; a client whose login
 * changed or went is disconnected (a broken edit keeps the users in force). */
function followCredentials(file: string, edge: Edge, nodeRed: NodeRed | null): void {
  const reload = async () => {
    let next: CredentialFile;
    try {
      next = await loadCredentials(file);
    } catch (e) {
      complain(`credential file ${file} not reloaded, the users in force stay:\n${message(e)}`);
      return;
    }
    const { disconnected } = edge.broker.access.setCredentials(next);
    nodeRed?.setCredentials(next);
    say(
      `credential file ${file} reloaded: ${Object.keys(next.users).length} users, ${disconnected} clients disconnected`,
    );
  };
  watchFile(file, { interval: 1000 }, () => background(reload(), 'credential file reload'));
}

/** Each edit of the fleet file is re-checked on a worker thread (a large file never
 * stalls the broker), one reload at a time, in the order of the edits; a broken edit
 * never replaces the configs in force. */
async function followFleetFile(file: string, edge: Edge): Promise<void> {
  let reloads: Promise<void> = Promise.resolve();
  const reload = async () => {
    try {
      await edge.applyFleet(await loadFleetInWorker(file, await fleetContext()));
      say(`fleet file ${file} published`);
    } catch (e) {
      complain(`fleet file ${file} not applied, the previous configs stay:\n${message(e)}`);
    }
  };
  const load = () => (reloads = reloads.then(reload));
  await load();
  watchFile(file, { interval: 1000 }, () => background(load(), 'fleet file reload'));
}
