// @segment/analytics-next, pointed at the collector by the Segment.io integration settings.
import { AnalyticsBrowser } from '@segment/analytics-next';
import { config, sendAll } from './common.js';

const url = new URL(config.collector);
const segmentio = { apiKey: config.writeKey, apiHost: `${url.host}/v1`, protocol: url.protocol.replace(':', '') };
if (config.mode === 'batching') {
  segmentio.deliveryStrategy = { strategy: 'batching', config: { size: 5, timeout: 500 } };
}
const [analytics] = await AnalyticsBrowser.load(
  // cdnSettings given here: no settings fetched from Segment's CDN.
  { writeKey: config.writeKey, cdnSettings: { integrations: { 'Segment.io': segmentio } } },
);
await analytics.setAnonymousId(config.anon);
await sendAll(analytics);
