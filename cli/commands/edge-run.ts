/**
 * What `splitfleet edge` runs: the edge (and Node-RED when asked), the banner, and the
 * credential and fleet files followed as they are edited.
 *
 * With a fleet file, the edge serves every model the file names (each device's model
 * and codec resolved by the zoo, core/model/zoo.ts) besides --model's, under the file's
 * fleet id; a file that does not check, or names a model the zoo cannot serve, stops the
 * start with every problem. Operator changes are kept beside it
 * (`<file>.overrides.json`, fleet-config/overrides.ts).
 */
import { watchFile } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadBundle, type Bundle } from '../../core/model/load.js';
import { DEFAULT_MODEL, resolveBundle, scanZoo } from '../../core/model/zoo.js';
import { background, log } from '../../core/util/log.js';
import { loadCredentials, type CredentialFile } from '../../edge-broker/auth.js';
import { startEdge, type Edge } from '../../edge-broker/edge.js';
import { startNodeRed, type EmbeddedNodeRed as NodeRed } from '../../edge-broker/node-red.js';
import { effectiveConfig } from '../../fleet-config/effective.js';
import { loadFleetInWorker } from '../../fleet-config/load-worker.js';
import { loadFleet } from '../../fleet-config/load.js';
import { loadOverrides, overridesFileOf, type Overrides } from '../../fleet-config/overrides.js';
import { listed } from '../../fleet-config/plans.js';
import { DEFAULT_FLEET, type FleetFile } from '../../fleet-config/schema.js';
import type { EdgeCliOptions, EdgeUp } from './edge.js';
import { fleetContext, fleetNames } from './shared.js';

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

/** The bundle of every device's model and codec, each resolved once by the zoo; throws
 * naming the devices (and their groups), the model, the codec and why. */
export async function fleetBundles(f: FleetFile): Promise<Bundle[]> {
  const uses = new Map<string, { model: string; codec: string; devices: string[] }>();
  for (const device of Object.keys(f.devices)) {
    const c = effectiveConfig(f, device);
    const key = `${c.model}\n${c.codec}`;
    const use = uses.get(key) ?? { model: c.model, codec: c.codec, devices: [] };
    use.devices.push(c.group ? `${device} (group ${c.group})` : device);
    uses.set(key, use);
  }
  const bundles: Bundle[] = [];
  const problems: string[] = [];
  for (const { model, codec, devices } of uses.values()) {
    try {
      bundles.push(await resolveBundle(model, { codec }));
    } catch (e) {
      problems.push(
        `device ${listed(devices, 10)}: model ${model} with codec ${codec}: ${message(e)}`,
      );
    }
  }
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return bundles;
}

/** The fleet file at start, checked against the zoo; a missing or broken file throws with
 * every problem as file:line:col. */
async function startFleet(file: string): Promise<{ fleet: FleetFile; overrides: Overrides }> {
  let fleet: FleetFile;
  try {
    fleet = await loadFleet(file, await fleetContext());
  } catch (e) {
    throw new Error(`fleet file ${file} does not check, the edge does not start:\n${message(e)}`);
  }
  return { fleet, overrides: await loadOverrides(overridesFileOf(file)) };
}

/** The bundles served, each once (by manifest hash), in the order given. */
function distinct(bundles: Bundle[]): Bundle[] {
  const seen = new Set<string>();
  return bundles.filter((b) => !seen.has(b.manifestSha256) && seen.add(b.manifestSha256));
}

/** Start the edge the options describe; resolves with the function that stops it. */
export async function runEdge(o: EdgeCliOptions): Promise<() => Promise<void>> {
  const start = o.fleetFile ? await startFleet(o.fleetFile) : null;
  if (start && o.fleet !== undefined && o.fleet !== '+' && o.fleet !== start.fleet.fleet)
    throw new Error(
      `--fleet ${o.fleet} but fleet file ${o.fleetFile} is for fleet ${start.fleet.fleet}`,
    );
  const named = o.models.length > 0 || start ? o.models : [DEFAULT_MODEL];
  const bundles = distinct([
    ...(await Promise.all(named.map((m) => resolveBundle(m)))),
    ...(start ? await fleetBundles(start.fleet) : []),
  ]);
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
    fleet: o.fleet ?? start?.fleet.fleet ?? DEFAULT_FLEET,
    fleetFile: start?.fleet,
    overrides: start?.overrides,
    overridesFile: o.fleetFile ? overridesFileOf(o.fleetFile) : null,
    edgeId: o.edgeId,
    stateDir: o.stateDir ?? null,
    redis: o.redis,
    fullResults: o.fullResults,
    maxFrameBytes: o.maxFrameBytes,
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
  log.info({ fleet: edge.fleet, models: edge.registry.list().map((m) => m.ref) }, 'edge serving');
  return async () => {
    say(`stopping: ${JSON.stringify(edge.stats())}`);
    await nodeRed?.close();
    await edge.close();
  };
}

function upLine(edge: Edge, nodeRed: NodeRed | null): EdgeUp {
  return {
    edge: edge.edgeId,
    fleet: edge.fleet,
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
    `edge ${edge.edgeId} (fleet ${edge.fleet}) on ${edge.url}${edge.wsUrl ? ` and ${edge.wsUrl}` : ''}${edge.broker.tlsUrl ? ` and ${edge.broker.tlsUrl}` : ''}${edge.metricsUrl ? `; metrics on ${edge.metricsUrl}/metrics` : ''}`,
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
 * stalls the broker) against the names and the bundles this edge serves, one reload at
 * a time, in the order of the edits; a broken edit never replaces the configs in force
 * (it is logged, with every problem). The file in force at start was checked already. */
async function followFleetFile(file: string, edge: Edge): Promise<void> {
  let reloads: Promise<void> = Promise.resolve();
  const names = await fleetNames();
  const reload = async () => {
    try {
      const bundles = { dirs: edge.registry.planDirs(), where: 'this edge' };
      await edge.applyFleet(await loadFleetInWorker(file, { ...names, bundles }));
      say(`fleet file ${file} published`);
    } catch (e) {
      const why = message(e);
      log.warn({ file, why }, 'fleet file not applied, the previous configs stay');
      complain(`fleet file ${file} not applied, the previous configs stay:\n${why}`);
    }
  };
  const load = () => (reloads = reloads.then(reload));
  watchFile(file, { interval: 1000 }, () => background(load(), 'fleet file reload'));
}
