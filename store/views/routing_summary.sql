-- One row per trial that reported routing: balance and drops summarised over its memory layers.
CREATE OR REPLACE VIEW routing_summary AS
SELECT
    study_name,
    trial_number,
    count(*) AS routing_layers,
    avg(load_entropy / nullif(load_entropy_max, 0)) AS mean_entropy_ratio,
    min(load_entropy / nullif(load_entropy_max, 0)) AS min_entropy_ratio,
    avg(dropped_frac) AS mean_dropped_frac,
    max(dropped_frac) AS max_dropped_frac,
    avg(unused_frac) AS mean_unused_frac
FROM routing
GROUP BY study_name, trial_number;
