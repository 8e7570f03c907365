-- A leftover cx.event_id_set_0015 can only be a table a second worker created
-- while the first finished 0015 (its copy is in cx.event_id_set).
-- cx:single-server
DROP TABLE IF EXISTS cx.event_id_set_0015;
