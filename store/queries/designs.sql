-- Designs of some studies (NULL: all), from the designs view.
SELECT *
FROM designs
WHERE $study_names::VARCHAR[] IS NULL OR list_contains($study_names::VARCHAR[], study_name)
ORDER BY study_name, first_trial;
