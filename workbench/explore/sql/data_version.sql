-- A cheap fingerprint of the store's contents: the app reloads its cached frames when it changes.
SELECT
    (SELECT count(*) FROM studies) AS n_studies,
    (SELECT count(*) FROM trials) AS n_trials,
    (SELECT max(ingested_at) FROM trials) AS last_ingest,
    (SELECT max(updated_at) FROM studies) AS last_study_update;
