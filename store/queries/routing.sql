-- Per-layer routing statistics of one trial; entropy_ratio = 1 means perfectly balanced load.
SELECT
    study_name,
    trial_number,
    layer,
    n_blocks,
    load_entropy,
    load_entropy_max,
    load_entropy / nullif(load_entropy_max, 0) AS entropy_ratio,
    dropped_frac,
    unused_frac
FROM routing
WHERE study_name = $study_name AND trial_number = $trial_number
ORDER BY layer;
