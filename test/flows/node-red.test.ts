/**
 * Node-RED embedded next to a real edge (edge-broker/node-red.ts), with the splitfleet
 * package and simulated devices:
 * - a flow receives a device's results and sends it a command that the device answers;
 * - in a real browser (Debian's chromium, playwright-core): after the operator's login,
 *   the editor shows the splitfleet nodes in its palette, the dashboard example is
 *   imported and deployed through the editor, and the dashboard, opened with a dashboard
 *   user's login, shows live values that change.
 * Screenshots go to .artifacts/browser/.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Agent } from '../../device-agent/agent.js';
import type { Edge } from '../../edge-broker/edge.js';
import { startNodeRed, type EmbeddedNodeRed } from '../../edge-broker/node-red.js';
import { PROJECT_ROOT } from '../../core/paths.js';
import { consoleUsers, OPERATOR, VIEWER } from '../helpers/credentials.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const ARTIFACTS = join(PROJECT_ROOT, '.artifacts', 'browser');
const CHROMIUM = '/usr/bin/chromium';

/** The editor's and the dashboard's logins (users of the edge's credential file). */

let edge: Edge;
let nodeRed: EmbeddedNodeRed;
let dir: string;
const agents: Agent[] = [];
const runs: Promise<unknown>[] = [];

/** A flow of our own: the first result of `gate` makes it ask `gate` for its config;
 * the answer is published on test/answer (Node-RED's own MQTT out node). */
function integrationFlow(port: number): unknown[] {
  return [
    { id: 'it-tab', type: 'tab', label: 'integration' },
    {
      id: 'it-edge',
      type: 'splitfleet-edge',
      url: `mqtt://127.0.0.1:${port}`,
      base: 'splitfleet',
      fleet: 'nr',
    },
    {
      id: 'it-broker',
      type: 'mqtt-broker',
      broker: '127.0.0.1',
      port: String(port),
      clientid: '',
      autoConnect: true,
      usetls: false,
      protocolVersion: '4',
      keepalive: '60',
      cleansession: true,
    },
    {
      id: 'it-results',
      type: 'splitfleet-result',
      z: 'it-tab',
      name: '',
      edge: 'it-edge',
      fleet: '',
      group: '',
      device: 'gate',
      label: '',
      minScore: 0,
      x: 120,
      y: 60,
      wires: [['it-once']],
    },
    {
      id: 'it-once',
      type: 'function',
      z: 'it-tab',
      func: "if (context.get('asked')) return null;\ncontext.set('asked', true);\nreturn { op: 'get-config', device: msg.device, fleet: msg.fleet, seen: msg.payload.frameId };",
      outputs: 1,
      x: 300,
      y: 60,
      wires: [['it-ask']],
    },
    {
      id: 'it-ask',
      type: 'splitfleet-command',
      z: 'it-tab',
      name: '',
      edge: 'it-edge',
      op: 'ping',
      fleet: '',
      target: '',
      timeout: 10,
      x: 480,
      y: 60,
      wires: [['it-out']],
    },
    {
      id: 'it-out',
      type: 'mqtt out',
      z: 'it-tab',
      broker: 'it-broker',
      topic: 'test/answer',
      x: 660,
      y: 60,
      qos: '1',
      retain: 'false',
      wires: [],
    },
  ];
}

function startAgent(id: string): Promise<void> {
  return shippedModel().then(async (bundle) => {
    const a = new Agent({
      url: edge.url,
      fleet: 'nr',
      deviceId: id,
      bundle,
      codec: 'split-q',
      point: 2,
      source: { source: 'sample', loop: true, limit: 1_000_000 },
      fps: 4,
      tagFrames: true,
    });
    agents.push(a);
    await a.start();
    runs.push(a.run());
  });
}

/** Save a screenshot artifact; a slow screenshot on a loaded machine is logged, not a
 * failure (the assertions are the test). */
async function shot(t: ExecutionContext, page: Page, name: string, fullPage = false) {
  try {
    await page.screenshot({ path: join(ARTIFACTS, name), fullPage, timeout: 60_000 });
  } catch (e) {
    t.log(`screenshot ${name} not saved: ${(e as Error).message.split('\n')[0]}`);
  }
}

test.before(async () => {
  edge = await testEdge({ edgeId: 'edge-1', fleet: '+', statusFleet: 'nr' });
  dir = await mkdtemp(join(tmpdir(), 'sf-nr-'));
  const port = Number(new URL(edge.url).port);
  await writeFile(join(dir, 'flows.json'), JSON.stringify(integrationFlow(port)));
  nodeRed = await startNodeRed({
    port: 0,
    host: '127.0.0.1',
    userDir: dir,
    edgeUrl: edge.url,
    credentials: {
      version: 1,
      users: {
        ...(await consoleUsers()),
      },
    },
  });
  await mkdir(ARTIFACTS, { recursive: true });
});

test.after.always(async () => {
  for (const a of agents) await a.stop(true);
  await Promise.all(runs);
  await nodeRed?.close();
  await edge?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test.serial('a flow receives results and sends a command that the device answers', async (t) => {
  const sub = await connectAsync(edge.url, { reconnectPeriod: 0 });
  const answers: Record<string, unknown>[] = [];
  sub.on('message', (_topic, p) =>
    answers.push(JSON.parse(p.toString()) as Record<string, unknown>),
  );
  await sub.subscribeAsync('test/answer', { qos: 1 });
  try {
    await startAgent('gate');
    await waitFor(() => answers.length > 0, 30_000);
    t.like(answers[0], {
      codec: 'split-q',
      point: 2,
      model: 'resnet9w05-cifar10@2',
      source: 'sample',
    });
  } finally {
    await sub.endAsync();
  }
});

test.serial(
  'in chromium: the palette has the splitfleet nodes; the dashboard example imports, deploys and shows live values',
  async (t) => {
    const browser: Browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox'],
    });
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      await page.goto(`${nodeRed.url}/`);
      // the editor asks for a login first
      await page.waitForSelector('#node-dialog-login-username', { timeout: 60_000 });
      await page.fill('#node-dialog-login-username', OPERATOR.username);
      await page.fill('#node-dialog-login-password', OPERATOR.password);
      await page.click('#node-dialog-login-submit');
      for (const type of [
        'splitfleet-result',
        'splitfleet-device',
        'splitfleet-command',
        'splitfleet-frame',
      ]) {
        await page.waitForSelector(`.red-ui-palette-node[data-palette-type="${type}"]`, {
          timeout: 60_000,
        });
      }
      t.pass('palette has the four splitfleet nodes');
      // the palette filtered to the package, as a user looks for it
      await page.locator('#red-ui-palette-search input').pressSequentially('splitfleet');
      await page.waitForSelector('.red-ui-palette-node[data-palette-type="inject"]', {
        state: 'hidden',
      });
      await shot(t, page, '1-editor-palette.png');
      await page.locator('#red-ui-palette-search input').fill('');
      await page.locator('#red-ui-palette-search input').press('Backspace');

      // import the dashboard example through the editor's import dialog, then deploy
      const flow = (
        await readFile(join(PROJECT_ROOT, 'flows', 'examples', '03-dashboard.json'), 'utf8')
      ).replace('mqtt://127.0.0.1:1883', edge.url);
      await page.keyboard.press('Control+i');
      await page.waitForSelector('#red-ui-clipboard-dialog-import-text', { timeout: 10_000 });
      const text = page.locator('#red-ui-clipboard-dialog-import-text');
      await text.fill(flow);
      // Node-RED checks the JSON on a key press; the Import button is enabled once it has
      await text.press('End');
      await page.waitForSelector('#red-ui-clipboard-dialog-ok:not([disabled])', {
        timeout: 30_000,
      });
      await page.click('#red-ui-clipboard-dialog-ok');
      await page.waitForSelector('.red-ui-tab:has-text("splitfleet dashboard")', {
        timeout: 10_000,
      });
      await shot(t, page, '2-imported.png');
      await page.click('#red-ui-header-button-deploy');
      await page.waitForSelector('.red-ui-notification:has-text("Successfully deployed")', {
        timeout: 20_000,
      });
      await shot(t, page, '3-deployed.png');

      // devices come online and send frames; the dashboard follows them
      await startAgent('cam-1');
      await startAgent('cam-2');
      const dash = await browser.newPage({
        viewport: { width: 1400, height: 1000 },
        httpCredentials: VIEWER,
      });
      await dash.goto(`${nodeRed.dashboardUrl}/fleet`);
      await dash.waitForSelector('text=/[23] online/', { timeout: 60_000 });
      await dash.waitForSelector('.sf-latest tbody tr', { timeout: 60_000 });
      const first = await dash.locator('.sf-latest tbody').innerText();
      await shot(t, dash, '4-dashboard.png', true);
      // live: the table of latest results changes while the devices run
      await dash.waitForFunction(
        (before) => document.querySelector('.sf-latest tbody')?.textContent !== before,
        await dash.locator('.sf-latest tbody').textContent(),
        { timeout: 30_000 },
      );
      const second = await dash.locator('.sf-latest tbody').innerText();
      // the images of tagged frames, served from the shipped sample, have loaded
      await dash.waitForFunction(
        () =>
          [...document.querySelectorAll<HTMLImageElement>('.sf-images img')].some(
            (img) => img.complete && img.naturalWidth === 32,
          ),
        undefined,
        { timeout: 30_000 },
      );
      t.not(first, second);
      t.regex(second, /cam-[12]/);
      await shot(t, dash, '5-dashboard-later.png', true);
    } finally {
      await browser.close();
    }
  },
);
