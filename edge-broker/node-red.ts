/**
 * Node-RED embedded next to the edge (`splitfleet edge --node-red`): the editor at
 * `http://host:1880/`, the dashboard (@flowfuse/node-red-dashboard) at `/dashboard`, the
 * splitfleet node package (flows/) loaded, and on the first start the example flows
 * (alert, rollout with approval, dashboard) deployed with their edge connection pointed
 * at this edge. Node-RED keeps its state (flows, credentials, context) in `userDir`.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { access, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import RED from 'node-red';
import { PROJECT_ROOT, SAMPLE_DIR } from '../core/paths.js';
import { log } from '../core/util/log.js';
import { listen, shownHost } from './broker.js';

export const FLOWS_DIR = join(PROJECT_ROOT, 'flows');
const EXAMPLES = join(FLOWS_DIR, 'examples');
/** The id of the edge connection (config node) the example flows share. */
const EDGE_NODE = 'sf-edge';

export interface NodeRedOptions {
  port: number;
  host: string;
  userDir: string;
  /** The edge broker the flows connect to. */
  edgeUrl: string;
  /** A login for the flows' edge connection when the edge requires one (an operator). */
  username?: string;
  password?: string;
}

export interface EmbeddedNodeRed {
  url: string;
  dashboardUrl: string;
  close(): Promise<void>;
}

interface FlowNode {
  id: string;
  type: string;
  [k: string]: unknown;
}

/** The example flows as one flow file, sharing one edge connection to `edgeUrl`. */
export async function exampleFlows(edgeUrl: string): Promise<FlowNode[]> {
  const out = new Map<string, FlowNode>();
  for (const f of (await readdir(EXAMPLES)).filter((n) => /^0[1-9].*\.json$/.test(n)).sort()) {
    for (const n of JSON.parse(await readFile(join(EXAMPLES, f), 'utf8')) as FlowNode[]) {
      out.set(n.id, n.id === EDGE_NODE ? { ...n, url: edgeUrl } : n);
    }
  }
  return [...out.values()];
}

/** Node-RED's own credentials format (aes-256-ctr, key sha256(secret), hex IV first). */
function encryptCredentials(secret: string, creds: unknown): { $: string } {
  const key = createHash('sha256').update(secret).digest();
  const iv = randomBytes(16);
  const c = createCipheriv('aes-256-ctr', key, iv);
  return {
    $: iv.toString('hex') + c.update(JSON.stringify(creds), 'utf8', 'base64') + c.final('base64'),
  };
}

/** Where the dashboard finds the shipped sample's images (frames tagged with their name). */
export const SAMPLES_ROUTE = '/splitfleet/samples/';

/** Serve an image of the shipped sample under SAMPLES_ROUTE; false: not such a request. */
function serveSample(req: IncomingMessage, res: ServerResponse): boolean {
  const url = decodeURIComponent((req.url ?? '').split('?')[0] ?? '');
  if (!url.startsWith(SAMPLES_ROUTE) || req.method !== 'GET') return false;
  const file = resolve(SAMPLE_DIR, url.slice(SAMPLES_ROUTE.length));
  const type = { '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.png': 'image/png' }[
    extname(file).toLowerCase()
  ];
  if (!file.startsWith(SAMPLE_DIR + sep) || !type) {
    res.writeHead(404).end();
    return true;
  }
  readFile(file).then(
    (bytes) =>
      res.writeHead(200, { 'content-type': type, 'cache-control': 'max-age=3600' }).end(bytes),
    () => res.writeHead(404).end(),
  );
  return true;
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

export async function startNodeRed(o: NodeRedOptions): Promise<EmbeddedNodeRed> {
  await mkdir(o.userDir, { recursive: true });
  const secretFile = join(o.userDir, '.splitfleet-secret');
  if (!(await exists(secretFile))) {
    await writeFile(secretFile, randomBytes(24).toString('hex'), { mode: 0o600 });
  }
  const secret = (await readFile(secretFile, 'utf8')).trim();
  const flowFile = join(o.userDir, 'flows.json');
  if (!(await exists(flowFile))) {
    await writeFile(flowFile, JSON.stringify(await exampleFlows(o.edgeUrl), null, 2));
    log.info({ flowFile }, 'node-red: example flows written');
  }
  if (o.username) {
    const creds = { [EDGE_NODE]: { username: o.username, password: o.password ?? '' } };
    await writeFile(
      join(o.userDir, 'flows_cred.json'),
      JSON.stringify(encryptCredentials(secret, creds)),
      {
        mode: 0o600,
      },
    );
  }
  // Node-RED's express apps as plain request handlers (no express app of our own)
  type Handler = (req: IncomingMessage, res: ServerResponse, next: () => void) => void;
  // (read per request: Node-RED creates them in init())
  const admin: Handler = (req, res, next) => (RED.httpAdmin as unknown as Handler)(req, res, next);
  const nodes: Handler = (req, res, next) => (RED.httpNode as unknown as Handler)(req, res, next);
  const server: Server = createServer(
    (req, res) =>
      serveSample(req, res) ||
      admin(req, res, () =>
        nodes(req, res, () => {
          res.statusCode = 404;
          res.end('not found\n');
        }),
      ),
  );
  // settings of Node-RED 4 (its published types describe 1.x)
  const settings = {
    userDir: o.userDir,
    flowFile: 'flows.json',
    credentialSecret: secret,
    httpAdminRoot: '/',
    httpNodeRoot: '/',
    uiHost: o.host,
    uiPort: o.port,
    nodesDir: [FLOWS_DIR],
    functionExternalModules: false,
    externalModules: { palette: { allowInstall: false }, modules: { allowInstall: false } },
    editorTheme: { projects: { enabled: false }, tours: false },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
    logging: { console: { level: 'warn', metrics: false, audit: false } },
  };
  RED.init(server, settings as unknown as Parameters<typeof RED.init>[1]);
  const port = await listen(server, o.port, o.host);
  await RED.start();
  const url = `http://${shownHost(o.host)}:${port}`;
  log.info({ url, dashboard: `${url}/dashboard` }, 'node-red up');
  return {
    url,
    dashboardUrl: `${url}/dashboard`,
    async close() {
      await RED.stop();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
