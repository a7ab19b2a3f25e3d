-- The identity of the optuna study a study's rows came from (study user attr wb.study_uid), so
-- that a new optuna study under a name the store already holds is refused instead of mixed in.
-- NULL: unknown (rows ingested before this column, or a study created outside the workbench).

ALTER TABLE studies ADD COLUMN study_uid VARCHAR;
