-- Curve points of one study's trials (NULL: all trials) and metrics (NULL: all metrics).
SELECT study_name, trial_number, step, metric, value
FROM curves
WHERE
    study_name = $study_name
    AND ($trial_numbers::BIGINT[] IS NULL OR list_contains($trial_numbers::BIGINT[], trial_number))
    AND ($metrics::VARCHAR[] IS NULL OR list_contains($metrics::VARCHAR[], metric))
ORDER BY trial_number, metric, step;
