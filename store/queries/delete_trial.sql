-- Every row of one trial; run before re-inserting it, in the same transaction.
DELETE FROM trials WHERE study_name = $study_name AND trial_number = $trial_number;
DELETE FROM params WHERE study_name = $study_name AND trial_number = $trial_number;
DELETE FROM curves WHERE study_name = $study_name AND trial_number = $trial_number;
DELETE FROM routing WHERE study_name = $study_name AND trial_number = $trial_number;
DELETE FROM routing_load WHERE study_name = $study_name AND trial_number = $trial_number;
DELETE FROM provenance WHERE study_name = $study_name AND trial_number = $trial_number;
DELETE FROM tuning WHERE study_name = $study_name AND trial_number = $trial_number;
