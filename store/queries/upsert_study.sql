-- created_at is kept from the first ingest; a missing storage_url keeps the known one.
INSERT INTO studies (
    study_name, space_name, space_json, objectives_json, storage_url, n_trials, created_at, updated_at
)
VALUES (
    $study_name, $space_name, $space_json::JSON, $objectives_json::JSON, $storage_url, $n_trials, $now, $now
)
ON CONFLICT (study_name) DO UPDATE SET
    space_name = excluded.space_name,
    space_json = excluded.space_json,
    objectives_json = excluded.objectives_json,
    storage_url = coalesce(excluded.storage_url, studies.storage_url),
    n_trials = excluded.n_trials,
    updated_at = excluded.updated_at;
