// The npm server SDKs against the collector: @segment/analytics-node and @rudderstack/rudder-sdk-node.
//   node node_sdks.mjs '{"collector": "http://127.0.0.1:PORT", "writeKey": "...", "anonPrefix": "..."}'
// Each sends 13 calls (1 page, 1 identify, 11 track) with anonymous id <anonPrefix>-<sdk>, flushes,
// and the script prints {"<sdk>": {"errors": [...]}} once both are done.
import { Analytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';

const { collector, writeKey, anonPrefix } = JSON.parse(process.argv[2]);

function sendThirteen(client, anonymousId) {
  client.page({ anonymousId, name: 'Home', properties: { path: '/' } });
  client.identify({ anonymousId, userId: `user-${anonymousId}`, traits: { plan: 'gold' } });
  for (let n = 1; n <= 11; n++) {
    client.track({ anonymousId, event: 'Product Viewed', properties: { product_id: `p${n}`, price: n + 0.5 } });
  }
}

const result = {};

// analytics-node: the collector's URL as host; the path is Segment's /v1/batch.
{
  const errors = [];
  const segment = new Analytics({ writeKey, host: collector, flushAt: 5, flushInterval: 200 });
  segment.on('error', (err) => errors.push(String(err?.reason ?? err)));
  sendThirteen(segment, `${anonPrefix}-analytics-node`);
  await segment.closeAndFlush({ timeout: 20000 });
  result['analytics-node'] = { errors };
}

// rudder-sdk-node: the collector's URL as dataPlaneUrl (gzip on, as by default).
{
  const errors = [];
  const rudder = new RudderAnalytics(writeKey, {
    dataPlaneUrl: collector, flushAt: 5, flushInterval: 200, logLevel: 'error',
    errorHandler: (err) => errors.push(String(err)),
  });
  sendThirteen(rudder, `${anonPrefix}-rudder-sdk-node`);
  await new Promise((resolve) => rudder.flush((err) => { if (err) errors.push(String(err)); resolve(); }));
  result['rudder-sdk-node'] = { errors };
}

process.stdout.write(JSON.stringify(result) + '\n');
