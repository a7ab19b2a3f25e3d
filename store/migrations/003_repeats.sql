-- Repeats: a trial is one run of a design under one seed. The runs of a design (the same config
-- but train.seed and the knobs fit to each design) share design_hash; the `designs` view
-- aggregates them. epochs: tokens trained / training tokens of the corpus (> 1 means the run saw
-- text again). NULL in rows ingested before this migration until `workbench ingest --force`.

ALTER TABLE trials ADD COLUMN design_hash VARCHAR;
ALTER TABLE trials ADD COLUMN seed BIGINT;       -- train.seed of the run
ALTER TABLE trials ADD COLUMN replicate BIGINT;  -- which of the design's seeds (0: the first)
ALTER TABLE trials ADD COLUMN epochs DOUBLE;

-- The short probe runs that fit a design's Tuned knobs (e.g. train.lr), one row per probe and
-- knob; the design's first run (trial_number) made them.
CREATE TABLE IF NOT EXISTS tuning (
    study_name     VARCHAR NOT NULL,
    trial_number   BIGINT NOT NULL,
    probe          BIGINT NOT NULL,
    param          VARCHAR NOT NULL,
    value          DOUBLE,
    val_loss       DOUBLE,   -- NULL: the probe diverged or failed (error says why)
    tokens_trained BIGINT,
    train_seconds  DOUBLE,
    chosen         BOOLEAN,  -- this probe's values are the design's
    error          VARCHAR
);
