/**
 * The dashboard as an operator console, in a real browser (Debian's chromium,
 * playwright-core), against a real edge with a fleet file and logins, the embedded
 * Node-RED with the example flows, and two devices (the project's agent on the shipped
 * sample); a third device of the fleet file is never started.
 *
 * - the device list shows every device of the fleet file, the one never seen included;
 * - as the operator: a device's codec point and fps change from its page and the device
 *   runs the new config (reported back by the device, shown as running); a change the
 *   edge refuses shows the edge's message; a group change reaches the group's device
 *   that has no setting of its own; ping answers; a rollout starts and is rolled back from the jobs table;
 * - as the read-only dashboard user: the controls are disabled, and the server refuses
 *   an op sent anyway (403), so nothing changes.
 * Screenshots go to .artifacts/screenshots/.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { PROJECT_ROOT } from '../../core/paths.js';
import { Agent } from '../../device-agent/agent.js';
import { hashPassword, type CredentialFile } from '../../edge-broker/auth.js';
import type { Edge } from '../../edge-broker/edge.js';
import { startNodeRed, type EmbeddedNodeRed } from '../../edge-broker/node-red.js';
import { loadFleet } from '../../fleet-config/load.js';
import { overridesFileOf } from '../../fleet-config/overrides.js';
import { consoleUsers, OPERATOR, VIEWER } from '../helpers/credentials.js';
import { testEdge } from '../helpers/edge.js';
import { shippedModel } from '../helpers/model.js';
import { waitFor } from '../helpers/wait.js';

const SHOTS = join(PROJECT_ROOT, '.artifacts', 'screenshots');
const CHROMIUM = '/usr/bin/chromium';
const FLEET = 'con';
const DEVICE_PASSWORD = 'device-password';
/** Bounded waits, generous for a loaded 2-core machine. */
const LONG = 90_000;

const FLEET_FILE = `version: 1
fleet: ${FLEET}
defaults: { model: resnet9w05-cifar10, codec: split-q, point: 2, fps: 4 }
groups:
  yard: {}
devices:
  cam-1: { group: yard }
  cam-2: { group: yard }
  spare: {}
`;

let edge: Edge;
let nodeRed: EmbeddedNodeRed;
let dir: string;
let browser: Browser;
/** The operator's page, shared by the serial steps below (each a test of its own, so a
 * slow machine's time limit counts per step). */
let page: Page;
const agents: Agent[] = [];
const runs: Promise<unknown>[] = [];

async function credentials(): Promise<CredentialFile> {
  const device = await hashPassword(DEVICE_PASSWORD);
  return {
    version: 1,
    users: {
      ...(await consoleUsers()),
      'cam-1': { role: 'device', fleet: FLEET, hash: device },
      'cam-2': { role: 'device', fleet: FLEET, hash: device },
    },
  };
}

async function startAgent(id: string): Promise<void> {
  const a = new Agent({
    url: edge.url,
    fleet: FLEET,
    deviceId: id,
    username: id,
    password: DEVICE_PASSWORD,
    bundle: await shippedModel(),
    codec: 'split-q',
    point: 2,
    source: { source: 'sample', loop: true, limit: 1_000_000 },
    fps: 4,
    tagFrames: true,
  });
  agents.push(a);
  await a.start();
  runs.push(a.run());
}

/** The edge's view of a device (what the device reported back, and what is wanted). */
const viewOf = (device: string) =>
  edge.devices().find((d) => d.fleet === FLEET && d.device === device);

/** Save a screenshot; a slow screenshot on a loaded machine is logged, not a failure. */
async function shot(t: ExecutionContext, page: Page, name: string) {
  try {
    await page.screenshot({ path: join(SHOTS, name), fullPage: true, timeout: 60_000 });
  } catch (e) {
    t.log(`screenshot ${name} not saved: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** The text of the page's answer box once it holds an outcome (not the "..." of a
 * request in flight). */
async function answerOf(page: Page, box: string): Promise<string> {
  const answer = page.locator(`${box} .sf-answer`);
  await page.waitForFunction(
    (sel) => {
      const el = document.querySelector(`${sel} .sf-answer`);
      return Boolean(el && !/\.\.\.$/.test(el.textContent?.trim() ?? ''));
    },
    box,
    { timeout: LONG },
  );
  return answer.innerText();
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sf-console-'));
  const fleetFile = join(dir, 'fleet.yaml');
  await writeFile(fleetFile, FLEET_FILE);
  const creds = await credentials();
  edge = await testEdge({
    edgeId: 'edge-1',
    fleetFile: await loadFleet(fleetFile),
    overridesFile: overridesFileOf(fleetFile),
    access: { credentials: creds },
  });
  nodeRed = await startNodeRed({
    port: 0,
    host: '127.0.0.1',
    userDir: join(dir, 'node-red'),
    edgeUrl: edge.url,
    // the flows' own edge connection (an operator)
    username: OPERATOR.username,
    password: OPERATOR.password,
    credentials: creds,
  });
  await mkdir(SHOTS, { recursive: true });
  await startAgent('cam-1');
  await startAgent('cam-2');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  page = await browser.newPage({
    viewport: { width: 1400, height: 1000 },
    httpCredentials: OPERATOR,
  });
});

test.after.always(async () => {
  await browser?.close();
  for (const a of agents) await a.stop(true);
  await Promise.all(runs);
  await nodeRed?.close();
  await edge?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test.serial('the device list shows every device of the fleet file', async (t) => {
  await page.goto(`${nodeRed.dashboardUrl}/fleet`);
  // every device of the fleet file, the one never started included
  for (const d of ['cam-1', 'cam-2']) {
    await page.waitForSelector(`.sf-device-table tr.sf-online[data-device="${d}"]`, {
      timeout: LONG,
    });
  }
  const spare = page.locator('.sf-device-table tr[data-device="spare"]');
  await spare.waitFor({ timeout: LONG });
  t.regex(await spare.locator('.sf-state').innerText(), /never seen/);
  await page.waitForSelector('.sf-device-table tr[data-device="cam-1"] .sf-ok', {
    timeout: LONG,
  });
  await shot(t, page, 'device-list.png');
});

test.serial('a device runs the point and fps the operator sets on its page', async (t) => {
  // the device page: wanted vs running, then a change of point and fps
  await page.click('.sf-device-table tr[data-device="cam-1"] a.sf-device-link');
  await page.waitForSelector('.sf-device-page .sf-in-sync', { timeout: LONG });
  await page.waitForSelector('.sf-device-page .sf-who:has-text("(operator)")', {
    timeout: LONG,
  });
  await page.fill('.sf-config-form input[name="point"]', '1');
  await page.fill('.sf-config-form input[name="fps"]', '3');
  await page.click('.sf-config-form button.sf-apply');
  const applied = await answerOf(page, '.sf-device-page');
  t.regex(applied, /sent to cam-1; kept in .*fleet\.yaml\.overrides\.json/);
  // the device applies it and reports it back: the edge sees it running, and so does the page
  await waitFor(() => {
    const v = viewOf('cam-1');
    return v?.running?.point === 1 && v.running.configId === v.wanted?.configId;
  }, LONG);
  t.is(viewOf('cam-1')?.wanted?.settings.fps, 3);
  await page.waitForFunction(
    () =>
      document.querySelector('.sf-config-running')?.textContent?.includes('split-q') &&
      /\b1\b/.test(document.querySelectorAll('.sf-config-running td')[2]?.textContent ?? '') &&
      document.querySelector('.sf-device-page .sf-in-sync') !== null,
    undefined,
    { timeout: LONG },
  );
  t.is(viewOf('cam-2')?.wanted?.settings.point, 2, 'the other device is not changed');
});

test.serial('a change the edge refuses shows its message; ping answers', async (t) => {
  // a change the edge refuses: its message is shown, nothing changes
  await page.fill('.sf-config-form input[name="point"]', '99');
  await page.fill('.sf-config-form input[name="fps"]', '');
  await page.click('.sf-config-form button.sf-apply');
  t.regex(await answerOf(page, '.sf-device-page'), /failed: .*point/i);
  t.is(viewOf('cam-1')?.wanted?.settings.point, 1);

  // ping
  await page.click('.sf-config-form button.sf-ping');
  t.regex(await answerOf(page, '.sf-device-page'), /ping cam-1: answered in \d+ ms/);
  await page.waitForSelector('.sf-results img', { timeout: LONG });
  await shot(t, page, 'device-page.png');
});

test.serial('a group change reaches the group', async (t) => {
  // a group change from the fleet page reaches the devices of the group; cam-1's own
  // setting (fps 3) stays above its group's
  await page.goto(`${nodeRed.dashboardUrl}/fleet`);
  await page.waitForSelector('.sf-operations .sf-who:has-text("(operator)")', { timeout: LONG });
  await page.selectOption('.sf-group-form select[name="group"]', `${FLEET}/yard`);
  await page.fill('.sf-group-form input[name="fps"]', '2');
  await page.click('.sf-group-form button[type="submit"]');
  t.regex(await answerOf(page, '.sf-operations'), /sent to (cam-1, )?cam-2; kept in/);
  await waitFor(() => {
    const v = viewOf('cam-2');
    return v?.wanted?.settings.fps === 2 && v.running?.configId === v.wanted.configId;
  }, LONG);
  t.is(viewOf('cam-1')?.wanted?.settings.fps, 3);
});

test.serial('a rollout is refused with the reason, then started and rolled back', async (t) => {
  // a rollout the edge refuses, then one it runs, rolled back from the jobs table
  await page.fill('.sf-rollout-form input[name="model"]', 'resnet9w05-cifar10@2');
  await page.fill('.sf-rollout-form input[name="groups"]', 'nope');
  await page.click('.sf-rollout-form button.sf-rollout');
  t.regex(await answerOf(page, '.sf-operations'), /failed: group nope is not in fleet con/);
  await page.fill('.sf-rollout-form input[name="groups"]', 'yard');
  await page.fill('.sf-rollout-form input[name="waves"]', '100%');
  await page.click('.sf-rollout-form button.sf-rollout');
  const queued = await answerOf(page, '.sf-operations');
  const jobId = /job (\S+) /.exec(queued)?.[1];
  t.truthy(jobId, queued);
  const row = page.locator(`.sf-jobs tr[data-job="${jobId}"]`);
  await row.waitFor({ timeout: LONG });
  await shot(t, page, 'operations.png');
  await row.locator('button.sf-rollback').click();
  t.regex(await answerOf(page, '.sf-operations'), new RegExp(`roll back ${jobId}: job`));
  await page.waitForSelector(
    `.sf-jobs tr[data-job="${jobId}"] .sf-job-state:has-text("ROLLED_BACK")`,
    {
      timeout: LONG,
    },
  );
});

test.serial('the read-only dashboard user cannot use the controls', async (t) => {
  const viewer = await browser.newPage({
    viewport: { width: 1400, height: 1000 },
    httpCredentials: VIEWER,
  });
  await viewer.goto(`${nodeRed.dashboardUrl}/device?device=${FLEET}/cam-2`);
  await viewer.waitForSelector('.sf-device-page .sf-read-only', { timeout: LONG });
  t.true(await viewer.locator('.sf-config-form button.sf-apply').isDisabled());
  t.true(await viewer.locator('.sf-config-form button.sf-ping').isDisabled());
  await shot(t, viewer, 'device-page-read-only.png');
  const before = viewOf('cam-2')?.wanted?.configId;
  // the buttons are only disabled: an op sent anyway is refused by the server
  const sent = await viewer.evaluate(async (fleet) => {
    const r = await fetch(`/splitfleet/ops/${fleet}/edge/edge-1/set-config`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ device: 'cam-2', set: { point: 0 } }),
    });
    return { status: r.status, body: (await r.json()) as { error?: string } };
  }, FLEET);
  t.is(sent.status, 403);
  t.regex(sent.body.error ?? '', /viewer may only read/);
  const ping = await viewer.evaluate(async (fleet) => {
    const r = await fetch(`/splitfleet/ops/${fleet}/device/cam-2/ping`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    return r.status;
  }, FLEET);
  t.is(ping, 403);
  t.is(viewOf('cam-2')?.wanted?.configId, before);
  await viewer.close();
});
