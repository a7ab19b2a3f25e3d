-- Per study and parameter: how many trials carry it, how many distinct values, whether it was sampled.
SELECT
    study_name,
    name,
    bool_or(sampled) AS sampled,
    count(*) AS n_trials,
    count(DISTINCT value_json::VARCHAR) AS n_values,
    min(value_num) AS min_num,
    max(value_num) AS max_num
FROM params
WHERE $study_names::VARCHAR[] IS NULL OR list_contains($study_names::VARCHAR[], study_name)
GROUP BY study_name, name
ORDER BY study_name, name;
