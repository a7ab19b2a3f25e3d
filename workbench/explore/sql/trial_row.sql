-- One trial's row of the trial_overview view.
SELECT *
FROM trial_overview
WHERE study_name = $study_name AND trial_number = $trial_number;
