-- Parallel lists, one element per curve point, zipped by UNNEST.
INSERT INTO curves (study_name, trial_number, step, metric, value)
SELECT
    $study_name,
    $trial_number,
    unnest($steps::BIGINT[]),
    unnest($metrics::VARCHAR[]),
    unnest($values::DOUBLE[]);
