-- Initial schema of the analysis store. Optuna storage stays the source of truth: every row
-- here is re-derivable by `workbench ingest`, so child tables carry no keys and are rewritten
-- per trial (delete + insert in one transaction).

CREATE TABLE IF NOT EXISTS studies (
    study_name      VARCHAR PRIMARY KEY,
    space_name      VARCHAR,
    space_json      JSON,       -- study user attr wb.space
    objectives_json JSON,       -- [{"name": "val_ppl", "direction": "minimize"}, ...]
    storage_url     VARCHAR,    -- where the optuna study lives, when known
    n_trials        BIGINT,     -- started trials in the optuna study at the last ingest (not enqueued ones)
    created_at      TIMESTAMP,  -- first ingest
    updated_at      TIMESTAMP   -- last ingest
);

CREATE TABLE IF NOT EXISTS trials (
    study_name             VARCHAR NOT NULL,
    trial_number           BIGINT NOT NULL,
    status                 VARCHAR NOT NULL,  -- complete | failed | infeasible | pruned | interrupted | running | waiting
    optuna_state           VARCHAR NOT NULL,  -- COMPLETE | FAIL | PRUNED | RUNNING | WAITING
    config_json            JSON,
    config_hash            VARCHAR,
    memory_kind            VARCHAR,
    val_ppl                DOUBLE,
    val_loss               DOUBLE,
    flops_per_token        BIGINT,            -- analytic, forward pass
    flops_per_token_fvcore BIGINT,            -- counted by fvcore on the traced model
    params_total           BIGINT,
    params_active          BIGINT,
    tokens_per_s           DOUBLE,
    peak_mem_bytes         BIGINT,
    train_seconds          DOUBLE,
    tokens_trained         BIGINT,
    steps                  BIGINT,
    metrics_json           JSON,              -- wb.metrics as written, including metrics without a column
    objective_values_json  JSON,              -- {"val_ppl": 12.3, ...} keyed by objective name
    error                  VARCHAR,
    started_at             TIMESTAMP,
    finished_at            TIMESTAMP,
    ingested_at            TIMESTAMP NOT NULL,
    PRIMARY KEY (study_name, trial_number)
);

-- One row per field of the trial's full flat config ("<section>.<field>"), plus any sampled
-- optuna parameter that is not a config field. sampled: the name is in trial.params.
CREATE TABLE IF NOT EXISTS params (
    study_name   VARCHAR NOT NULL,
    trial_number BIGINT NOT NULL,
    name         VARCHAR NOT NULL,
    value_json   JSON,     -- the value as JSON (lists, null and nested values live only here)
    value_num    DOUBLE,   -- numbers; booleans as 0/1
    value_str    VARCHAR,  -- strings
    sampled      BOOLEAN NOT NULL
);

CREATE TABLE IF NOT EXISTS curves (
    study_name   VARCHAR NOT NULL,
    trial_number BIGINT NOT NULL,
    step         BIGINT NOT NULL,
    metric       VARCHAR NOT NULL,  -- train_loss, val_loss, lr, tokens, ...
    value        DOUBLE
);

CREATE TABLE IF NOT EXISTS routing (
    study_name       VARCHAR NOT NULL,
    trial_number     BIGINT NOT NULL,
    layer            BIGINT NOT NULL,
    n_blocks         BIGINT,
    load_entropy     DOUBLE,
    load_entropy_max DOUBLE,
    dropped_frac     DOUBLE,
    unused_frac      DOUBLE
);

CREATE TABLE IF NOT EXISTS routing_load (
    study_name   VARCHAR NOT NULL,
    trial_number BIGINT NOT NULL,
    layer        BIGINT NOT NULL,
    block        BIGINT NOT NULL,
    load         DOUBLE
);

CREATE TABLE IF NOT EXISTS provenance (
    study_name    VARCHAR NOT NULL,
    trial_number  BIGINT NOT NULL,
    git_commit    VARCHAR,
    git_dirty     BOOLEAN,
    packages_json JSON,  -- {name: version}
    device        VARCHAR,
    device_name   VARCHAR,
    seed          BIGINT,
    python        VARCHAR,
    torch         VARCHAR,
    hostname      VARCHAR
);
