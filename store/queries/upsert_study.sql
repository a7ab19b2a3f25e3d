-- created_at is kept from the first ingest; a missing storage_url or study_uid keeps the known one
-- (ingest refuses a different non-NULL study_uid before it gets here).
INSERT INTO studies (
    study_name, space_name, space_json, objectives_json, storage_url, study_uid, n_trials, created_at, updated_at
)
VALUES (
    $study_name, $space_name, $space_json::JSON, $objectives_json::JSON, $storage_url, $study_uid, $n_trials,
    $now, $now
)
ON CONFLICT (study_name) DO UPDATE SET
    space_name = excluded.space_name,
    space_json = excluded.space_json,
    objectives_json = excluded.objectives_json,
    storage_url = coalesce(excluded.storage_url, studies.storage_url),
    study_uid = coalesce(excluded.study_uid, studies.study_uid),
    n_trials = excluded.n_trials,
    updated_at = excluded.updated_at;
