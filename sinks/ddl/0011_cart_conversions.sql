-- Carts bought elsewhere before their deadline (docs/identity.md): the
-- customer ordered on another device, or from the shop's backend, between
-- the cart's last activity and its abandonment deadline, naming this cart
-- (cart_id), one of its checkouts (checkout_id), or no cart at all. Such a
-- cart gets no cart_abandoned trigger; this table says why. A replay writes
-- the same row again: ReplacingMergeTree keeps one per cart.
-- Portable subset as in 0001_base.sql (ClickHouse 18.16 and chdb).
CREATE TABLE IF NOT EXISTS cx.cart_conversions
(
    tenant String,
    cart_key String,
    customer_id String,
    day Date,
    ordered_at DateTime('UTC'),
    ordered_at_ms Int64,
    deadline_ms Int64
)
ENGINE = ReplacingMergeTree(ordered_at_ms)
PARTITION BY toYYYYMM(day)
ORDER BY (tenant, cart_key);
