-- Which optuna study the stored rows of a study came from (no row: the store does not hold it).
SELECT study_uid, storage_url
FROM studies
WHERE study_name = $study_name;
