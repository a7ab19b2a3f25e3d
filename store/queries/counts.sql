-- Rows per table (tests, `workbench status`).
SELECT 'studies' AS table_name, count(*) AS n_rows FROM studies
UNION ALL SELECT 'trials', count(*) FROM trials
UNION ALL SELECT 'params', count(*) FROM params
UNION ALL SELECT 'curves', count(*) FROM curves
UNION ALL SELECT 'routing', count(*) FROM routing
UNION ALL SELECT 'routing_load', count(*) FROM routing_load
UNION ALL SELECT 'provenance', count(*) FROM provenance
UNION ALL SELECT 'tuning', count(*) FROM tuning;
