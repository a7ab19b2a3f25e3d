-- One row per trial: the trial's columns, its study's space, provenance essentials and routing summary.
CREATE OR REPLACE VIEW trial_overview AS
SELECT
    t.*,
    epoch(t.finished_at - t.started_at) AS duration_s,
    s.space_name,
    p.git_commit,
    p.git_dirty,
    p.device,
    p.device_name,
    p.seed AS study_seed,
    r.routing_layers,
    r.mean_entropy_ratio,
    r.min_entropy_ratio,
    r.mean_dropped_frac,
    r.max_dropped_frac,
    r.mean_unused_frac
FROM trials AS t
LEFT JOIN studies AS s USING (study_name)
LEFT JOIN provenance AS p USING (study_name, trial_number)
LEFT JOIN routing_summary AS r USING (study_name, trial_number);
