// @rudderstack/analytics-js (the "bundled" build: its plugins are in the bundle, none fetched from a CDN).
import { RudderAnalytics } from '@rudderstack/analytics-js/bundled';
import { config, sendAll } from './common.js';

const options = {
  // The source configuration RudderStack's control plane would serve: no destinations.
  getSourceConfig: () => ({ source: { id: 'cxstream', name: 'cxstream', workspaceId: 'cxstream', enabled: true, config: {}, destinations: [] } }),
  polyfillIfRequired: false,
  logLevel: 'ERROR',
};
if (config.mode === 'batch') options.queueOptions = { batch: { enabled: true, maxItems: 5, flushInterval: 500 } };
if (config.mode === 'beacon') {
  options.useBeacon = true;
  options.beaconQueueOptions = { maxItems: 5, flushQueueInterval: 500 };
}
const analytics = new RudderAnalytics();
analytics.load(config.writeKey, config.collector, options);
await new Promise((resolve) => analytics.ready(resolve));
analytics.setAnonymousId(config.anon);
await sendAll(analytics);
