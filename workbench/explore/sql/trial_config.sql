-- One trial's parameters in long form: every config field, and whether the study sampled it.
SELECT name, value_json, sampled
FROM params
WHERE study_name = $study_name AND trial_number = $trial_number
ORDER BY name;
