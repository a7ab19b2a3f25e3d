-- Parallel lists, one element per parameter, zipped by UNNEST.
INSERT INTO params (study_name, trial_number, name, value_json, value_num, value_str, sampled)
SELECT
    $study_name,
    $trial_number,
    unnest($names::VARCHAR[]),
    unnest($values_json::VARCHAR[])::JSON,
    unnest($values_num::DOUBLE[]),
    unnest($values_str::VARCHAR[]),
    unnest($sampled::BOOLEAN[]);
