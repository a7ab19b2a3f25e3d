-- What ingest already holds for a study: finished trials stored in the same optuna state are skipped.
SELECT trial_number, optuna_state
FROM trials
WHERE study_name = $study_name;
