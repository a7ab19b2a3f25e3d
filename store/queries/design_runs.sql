-- Per design and seed, the mean validation metric of its completed runs: what the designs view
-- aggregates, for resampling over seeds (the probability that a design is on the front).
SELECT
    study_name,
    coalesce(design_hash, config_hash, 'trial-' || trial_number) AS design_hash,
    seed,
    avg(val_ppl) AS val_ppl,
    avg(val_loss) AS val_loss
FROM trials
WHERE status = 'complete'
    AND val_loss IS NOT NULL
    AND json_extract(metrics_json, '$.duplicate_of') IS NULL
    AND ($study_names::VARCHAR[] IS NULL OR list_contains($study_names::VARCHAR[], study_name))
GROUP BY ALL
ORDER BY study_name, design_hash, seed;
