-- Rows per table of one study (what `workbench drop` deletes).
SELECT 'studies' AS table_name, count(*) AS n_rows FROM studies WHERE study_name = $study_name
UNION ALL SELECT 'trials', count(*) FROM trials WHERE study_name = $study_name
UNION ALL SELECT 'params', count(*) FROM params WHERE study_name = $study_name
UNION ALL SELECT 'curves', count(*) FROM curves WHERE study_name = $study_name
UNION ALL SELECT 'routing', count(*) FROM routing WHERE study_name = $study_name
UNION ALL SELECT 'routing_load', count(*) FROM routing_load WHERE study_name = $study_name
UNION ALL SELECT 'provenance', count(*) FROM provenance WHERE study_name = $study_name
UNION ALL SELECT 'tuning', count(*) FROM tuning WHERE study_name = $study_name;
