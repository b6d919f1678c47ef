/**
 * A device's answer to its config (`.../response/config`) is the device's own text, and the
 * edge keeps it: in its config states, in `/devices`, in the devices report it publishes
 * every 2 s and in its log. A device (or anyone on an open broker) that answers with a
 * refusal of a megabyte must leave at most 1 KiB of it there, and a config id longer than
 * any the edge makes is not taken as what the device runs.
 */
import test from 'ava';
import { connectAsync } from 'mqtt';
import type { OpResponse } from '../../core/wire/messages.js';
import { deviceOpTopic } from '../../core/wire/topics.js';
import { parseFleet } from '../../fleet-config/load.js';
import { testEdge } from '../helpers/edge.js';
import { waitFor } from '../helpers/wait.js';

const FLEET = `
version: 1
fleet: ack
defaults: { codec: split-q, point: 1, fps: 1 }
devices:
  cam: {}
  other: {}
`;

test('a refusal is kept to 1 KiB; an overlong config id is not taken', async (t) => {
  const edge = await testEdge({ edgeId: 'edge-ack', fleet: 'ack', fleetFile: parseFleet(FLEET) });
  const device = await connectAsync(edge.url, { reconnectPeriod: 0 });
  try {
    await waitFor(() => edge.configs().get('cam') !== undefined);
    const wanted = edge.configs().get('cam')!.wanted;
    const answer = (r: Omit<OpResponse, 'id' | 'ts'>, id = 'cam') =>
      device.publishAsync(
        deviceOpTopic('ack', id, 'response', 'config'),
        JSON.stringify({ ...r, id: null, ts: Date.now() }),
        { qos: 1 },
      );
    const huge = `refused: ${'x'.repeat(512 * 1024)}`;
    await answer({ status: 'error', data: { configId: 'boot', refused: wanted }, error: huge });
    await waitFor(() => edge.configs().get('cam')?.refused !== null);
    const st = edge.configs().get('cam')!;
    t.is(st.refused!.length, 1024);
    t.true(huge.startsWith(st.refused!));
    t.is(st.refusedId, wanted);
    const row = edge.devices().find((d) => d.device === 'cam')!;
    t.is(row.refused!.length, 1024);
    t.true(JSON.stringify(edge.devices()).length < 16 * 1024);

    // a config id no edge makes: the answer is not one, nothing changes; the answer of
    // another device after it shows that it was handled (one sender's are in order)
    await answer({ status: 'ok', data: { configId: 'y'.repeat(300 * 1024) }, error: null });
    await answer({ status: 'ok', data: { configId: 'seen' }, error: null }, 'other');
    await waitFor(() => edge.configs().get('other')?.applied === 'seen');
    t.like(edge.configs().get('cam'), { applied: 'boot', refusedId: wanted });
    t.true(JSON.stringify(edge.devices()).length < 16 * 1024);
  } finally {
    await device.endAsync();
    await edge.close();
  }
});
