-- Trials of some studies (NULL: all) in some statuses (NULL: all), from the trial_overview view.
SELECT *
FROM trial_overview
WHERE
    ($study_names::VARCHAR[] IS NULL OR list_contains($study_names::VARCHAR[], study_name))
    AND ($statuses::VARCHAR[] IS NULL OR list_contains($statuses::VARCHAR[], status))
ORDER BY study_name, trial_number;
