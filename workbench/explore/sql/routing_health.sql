-- Per memory layer of the chosen studies' trials: how evenly the router spread its tokens.
-- entropy_ratio = load entropy / its maximum (log of the number of blocks); 1 = perfectly balanced.
SELECT
    r.study_name,
    r.trial_number,
    t.status,
    t.memory_kind,
    r.layer,
    r.n_blocks,
    r.load_entropy / nullif(r.load_entropy_max, 0) AS entropy_ratio,
    r.dropped_frac,
    r.unused_frac,
    t.val_ppl
FROM routing AS r
JOIN trials AS t USING (study_name, trial_number)
WHERE list_contains($study_names::VARCHAR[], r.study_name)
ORDER BY r.study_name, r.trial_number, r.layer;
