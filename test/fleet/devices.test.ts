/**
 * The device table the edge publishes (`.../edge/<id>/devices`, `/devices`, `fleet
 * status`): every device of the fleet file, seen or not, with the config wanted and
 * running and the last refusal; a death keeps the settings the device last ran.
 */
import test from 'ava';
import type { DeviceConfigState } from '../../edge-broker/fleet/configs.js';
import { deviceTable, FleetMonitor, MAX_TRACKED } from '../../edge-broker/fleet/monitor.js';
import { parseDevicesReport } from '../../cli/commands/fleet-status.js';
import { effectiveConfig } from '../../fleet-config/effective.js';
import { parseFleet } from '../../fleet-config/load.js';

const fleet = parseFleet(
  'version: 1\nfleet: f\ngroups:\n  g: { codec: split-fp16 }\ndevices:\n  a: { group: g }\n  b: {}\n',
);

function state(device: string, applied: string | null, refused: string | null): DeviceConfigState {
  const c = effectiveConfig(fleet, device);
  const settings = {
    ...c,
    fleet: undefined,
    device: undefined,
    group: undefined,
    configId: undefined,
  };
  for (const k of ['fleet', 'device', 'group', 'configId'] as const) delete settings[k];
  const { group, configId } = c;
  return {
    wanted: configId,
    settings,
    group,
    overridden: device === 'a' ? ['fps'] : [],
    applied,
    refused,
    refusedId: refused ? configId : null,
  };
}

const monitor = () => new FleetMonitor('e', { backlog: () => 0, access: () => ({}) });

test('every device of the fleet file is listed, the ones never seen too, with wanted, running and refusal', (t) => {
  const m = monitor();
  const wantedA = effectiveConfig(fleet, 'a').configId;
  m.status('f', 'a', {
    state: 'online',
    seq: 1,
    ts: 1,
    model: 'm@2',
    codec: 'split-fp16',
    point: 0,
    configId: wantedA,
  });
  m.status('other', 'x', { state: 'online', seq: 1, ts: 1 });
  const configs = new Map([
    ['a', state('a', wantedA, null)],
    ['b', state('b', null, 'config refused: source differs')],
  ]);
  const rows = deviceTable(m.snapshot(), 'f', ['a', 'b'], configs);
  t.deepEqual(
    rows.map((r) => [r.fleet, r.device, r.state, r.inFleetFile]),
    [
      ['f', 'a', 'online', true],
      ['f', 'b', 'never seen', true],
      ['other', 'x', 'online', false],
    ],
  );
  const [a, b, x] = rows as [(typeof rows)[0], (typeof rows)[0], (typeof rows)[0]];
  t.like(a.wanted, { configId: wantedA, group: 'g', overridden: ['fps'] });
  t.like(a.wanted!.settings, { codec: 'split-fp16', point: 0 });
  t.deepEqual(a.running, { configId: wantedA, model: 'm@2', codec: 'split-fp16', point: 0 });
  t.is(b.running, null);
  t.is(b.refused, 'config refused: source differs');
  t.is(b.refusedConfigId, effectiveConfig(fleet, 'b').configId);
  t.like(x, { wanted: null, running: null, refused: null });
  // what the edge publishes, `fleet status` reads back
  const report = parseDevicesReport(JSON.stringify({ edgeId: 'e', ts: 1, devices: rows }));
  t.deepEqual(report?.devices, rows);
  t.is(
    parseDevicesReport(JSON.stringify({ edgeId: 'e', ts: 1, devices: [{ ...a, state: 'gone' }] })),
    undefined,
  );
});

test('a death keeps the settings the device last ran; a stale will changes nothing', (t) => {
  const m = monitor();
  // connected with split-q point 3 (its will says so), then ran a config: split-fp16
  m.status('f', 'a', {
    state: 'online',
    seq: 4,
    ts: 1,
    model: 'm@2',
    codec: 'split-q',
    point: 3,
    configId: null,
  });
  m.status('f', 'a', {
    state: 'online',
    seq: 4,
    ts: 2,
    model: 'm@2',
    codec: 'split-fp16',
    point: 0,
    configId: 'c1',
  });
  m.status('f', 'a', {
    state: 'offline',
    seq: 3,
    ts: 3,
    model: 'm@2',
    codec: 'split-q',
    point: 3,
    configId: null,
  });
  t.like(m.snapshot()[0], { online: true, codec: 'split-fp16' });
  m.status('f', 'a', {
    state: 'offline',
    seq: 4,
    ts: 4,
    model: 'm@2',
    codec: 'split-q',
    point: 3,
    configId: null,
  });
  t.like(m.snapshot()[0], {
    state: 'offline',
    online: false,
    codec: 'split-fp16',
    point: 0,
    configId: 'c1',
  });
  // a device first heard dead: its will's settings are all there is
  m.status('f', 'b', {
    state: 'offline',
    seq: 1,
    ts: 1,
    model: 'm@2',
    codec: 'split-q',
    point: 3,
    configId: null,
  });
  t.like(m.snapshot()[1], { device: 'b', codec: 'split-q', point: 3 });
});

test('the devices tracked are capped: past the cap the one heard from least recently is forgotten', (t) => {
  const m = monitor();
  const online = (device: string, ts: number) =>
    m.status('f', device, {
      state: 'online',
      seq: 1,
      ts,
      model: 'm@2',
      codec: 'split-q',
      point: 0,
      configId: null,
    });
  for (let i = 0; i < MAX_TRACKED; i++) online(`d${i}`, i);
  online('d0', MAX_TRACKED); // heard again: now the most recent
  online('new', MAX_TRACKED + 1); // one more than the cap: d1 goes
  const names = new Set(m.snapshot().map((v) => v.device));
  t.is(names.size, MAX_TRACKED);
  t.true(names.has('d0'));
  t.true(names.has('new'));
  t.false(names.has('d1'));
});
