-- One row per study, with trial counts by status as stored.
WITH by_status AS (
    SELECT
        study_name,
        count(*) AS n_stored,
        count(*) FILTER (WHERE status = 'complete') AS n_complete,
        count(*) FILTER (WHERE status = 'failed') AS n_failed,
        count(*) FILTER (WHERE status = 'infeasible') AS n_infeasible,
        count(*) FILTER (WHERE status = 'pruned') AS n_pruned,
        count(*) FILTER (WHERE status IN ('running', 'waiting')) AS n_running,
        max(finished_at) AS last_finished_at
    FROM trials
    GROUP BY study_name
)

SELECT
    s.study_name,
    s.space_name,
    s.space_json,
    s.objectives_json,
    s.storage_url,
    s.study_uid,
    s.n_trials,
    coalesce(b.n_stored, 0) AS n_stored,
    coalesce(b.n_complete, 0) AS n_complete,
    coalesce(b.n_failed, 0) AS n_failed,
    coalesce(b.n_infeasible, 0) AS n_infeasible,
    coalesce(b.n_pruned, 0) AS n_pruned,
    coalesce(b.n_running, 0) AS n_running,
    b.last_finished_at,
    s.created_at,
    s.updated_at
FROM studies AS s
LEFT JOIN by_status AS b USING (study_name)
ORDER BY s.study_name;
