-- Long-form parameters of the trials that trials.sql selects, for pivoting into columns.
SELECT
    p.study_name,
    p.trial_number,
    p.name,
    p.value_json
FROM params AS p
INNER JOIN trials AS t USING (study_name, trial_number)
WHERE
    ($study_names::VARCHAR[] IS NULL OR list_contains($study_names::VARCHAR[], p.study_name))
    AND ($statuses::VARCHAR[] IS NULL OR list_contains($statuses::VARCHAR[], t.status))
ORDER BY p.study_name, p.trial_number, p.name;
