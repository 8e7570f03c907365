// What every page sends: 13 calls (1 page, 1 identify, 11 track), the same for each SDK.
export const params = new URLSearchParams(location.search);
export const config = {
  collector: params.get('collector'), // http://127.0.0.1:PORT
  writeKey: params.get('writeKey'),
  anon: params.get('anon'), // the scenario's anonymous id: how the test finds its events
  mode: params.get('mode') || '',
};

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
