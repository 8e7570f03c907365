-- The table cx.events was before 0008 (its rows were copied into the new
-- cx.events). A leftover cx.events_0008 can only be an empty table a second
-- worker created while the first finished 0008.
DROP TABLE IF EXISTS cx.events_0007;
DROP TABLE IF EXISTS cx.events_0008;
