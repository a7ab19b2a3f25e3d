-- Every row of one study, from every table keyed by study_name; run in one transaction.
DELETE FROM trials WHERE study_name = $study_name;
DELETE FROM params WHERE study_name = $study_name;
DELETE FROM curves WHERE study_name = $study_name;
DELETE FROM routing WHERE study_name = $study_name;
DELETE FROM routing_load WHERE study_name = $study_name;
DELETE FROM provenance WHERE study_name = $study_name;
DELETE FROM tuning WHERE study_name = $study_name;
DELETE FROM studies WHERE study_name = $study_name;
