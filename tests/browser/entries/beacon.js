// navigator.sendBeacon by hand: text/plain bodies, the write key in the body (a beacon cannot set headers).
import { config, report } from './common.js';

const now = () => new Date().toISOString();
const base = { anonymousId: config.anon, timestamp: now() };
const batch = [];
for (let n = 1; n <= 10; n++) {
  batch.push({ ...base, type: 'track', event: 'Product Viewed', messageId: `${config.anon}-t${n}`, properties: { product_id: `p${n}`, price: n + 0.5 } });
}
const send = (path, body) =>
  navigator.sendBeacon(`${config.collector}${path}`, new Blob([JSON.stringify({ writeKey: config.writeKey, sentAt: now(), ...body })], { type: 'text/plain' }));
const queued = [
  send('/v1/batch', { batch }),
  send('/v1/page', { ...base, messageId: `${config.anon}-page`, name: 'Home', properties: { path: '/' } }),
  send('/v1/identify', { ...base, messageId: `${config.anon}-identify`, userId: `user-${config.anon}`, traits: { plan: 'gold' } }),
  send('/v1/track', { ...base, messageId: `${config.anon}-t11`, event: 'Product Viewed', properties: { product_id: 'p11', price: 11.5 } }),
];
report({ sent: 13, queued });
