// What every page sends: 13 calls (1 page, 1 identify, 11 track), the same for each SDK.
export const params = new URLSearchParams(location.search);
export const config = {
  collector: params.get('collector'), // http://127.0.0.1:PORT
  writeKey: params.get('writeKey'),
  anon: params.get('anon'), // the scenario's anonymous id: how the test finds its events
  mode: params.get('mode') || '',
};

// A shopper's journey instead (?user=&consent=&cart=): identify, then one Product Added in that cart.
// Without &consent=, the identify carries no consent: an earlier answer stands.
export const journey = params.get('user')
  ? { user: params.get('user'), consent: params.get('consent'), cart: params.get('cart') }
  : null;

export async function sendJourney(sdk) {
  const traits = journey.consent ? { consent_marketing: journey.consent === 'true' } : {};
  await sdk.identify(journey.user, traits);
  if (journey.cart) {
    await sdk.track('Product Added', { cart_id: journey.cart, product_id: 'p1', price: 40, quantity: 1 });
  }
}

export async function sendThirteen(sdk) {
  await sdk.page('Home', { path: '/', url: location.href });
  await sdk.identify(`user-${config.anon}`, { plan: 'gold' });
  for (let n = 1; n <= 11; n++) {
    await sdk.track('Product Viewed', { product_id: `p${n}`, price: n + 0.5 });
  }
}

export function report(result) {
  window.cxResult = result; // read by drive.mjs
}

// What an SDK entry runs once its client is ready: the journey or the 13 calls, then the report.
// ``analytics``: any client with Segment's page(name, props), identify(id, traits), track(name, props).
export async function sendAll(analytics) {
  const sdk = {
    page: (name, props) => analytics.page(name, props),
    identify: (id, traits) => analytics.identify(id, traits),
    track: (name, props) => analytics.track(name, props),
  };
  if (journey) {
    await sendJourney(sdk);
    report({ sent: journey.cart ? 2 : 1 });
  } else {
    await sendThirteen(sdk);
    report({ sent: 13 });
  }
}
