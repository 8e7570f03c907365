-- A leftover cx.event_ids_0013 can only be a table a second worker created
-- while the first finished 0013 (its copy is in cx.event_ids).
DROP TABLE IF EXISTS cx.event_ids_0013;
