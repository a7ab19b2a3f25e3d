-- Per-layer, per-block load of one trial.
SELECT study_name, trial_number, layer, block, load
FROM routing_load
WHERE study_name = $study_name AND trial_number = $trial_number
ORDER BY layer, block;
