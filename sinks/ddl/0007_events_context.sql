-- cx.events.context: what the SDK says about where the event came from, as
-- JSON text: context.app, device (without advertisingId), os, network,
-- library, screen, timezone and campaign, as the SDKs send them (mobile SDKs
-- fill app/device/os/network/screen; browser SDKs library, timezone,
-- campaign). '{}' for events without any, and for rows stored before this
-- column existed. Read with JSONExtractString(context, 'os', 'name') on
-- ClickHouse 19.3+, visitParamExtractString(visitParamExtractRaw(context,
-- 'os'), 'name') on 18.16. (18.16 has no ADD COLUMN IF NOT EXISTS:
-- sinks/migrate.py takes "already exists" as done for an ADD COLUMN.)
ALTER TABLE cx.events ADD COLUMN context String DEFAULT '{}';
