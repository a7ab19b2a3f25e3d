-- One row per design of a study: its completed runs (trials sharing design_hash, reused
-- duplicates left out) averaged per seed, then over seeds. Intervals are two-sided 95% Student-t
-- intervals of the mean over seeds: mean ± t(0.975, n-1)·sd/√n. With one seed sd and the
-- intervals are NULL: one run says nothing about seed noise. Cost columns do not vary by seed
-- (tokens_per_s and train_seconds do, and are averaged).
CREATE OR REPLACE VIEW designs AS
WITH runs AS (
    SELECT *
    FROM trials
    WHERE status = 'complete'
        AND val_loss IS NOT NULL
        AND json_extract(metrics_json, '$.duplicate_of') IS NULL
),

per_seed AS (
    SELECT
        study_name,
        coalesce(design_hash, config_hash, 'trial-' || trial_number) AS design_hash,
        seed,
        min(trial_number) AS trial_number,
        avg(val_ppl) AS val_ppl,
        avg(val_loss) AS val_loss,
        any_value(memory_kind) AS memory_kind,
        max(flops_per_token) AS flops_per_token,
        max(flops_per_token_fvcore) AS flops_per_token_fvcore,
        max(params_total) AS params_total,
        max(params_active) AS params_active,
        avg(tokens_per_s) AS tokens_per_s,
        max(peak_mem_bytes) AS peak_mem_bytes,
        avg(train_seconds) AS train_seconds,
        avg(tokens_trained) AS tokens_trained,
        avg(epochs) AS epochs
    FROM runs
    GROUP BY ALL
),

agg AS (
    SELECT
        study_name,
        design_hash,
        count(*) AS n_seeds,
        min(trial_number) AS first_trial,
        list(trial_number ORDER BY seed) AS trial_numbers,
        list(seed ORDER BY seed) AS seeds,
        list(val_ppl ORDER BY seed) AS val_ppl_seeds,
        list(val_loss ORDER BY seed) AS val_loss_seeds,
        any_value(memory_kind) AS memory_kind,
        avg(val_ppl) AS val_ppl_mean,
        stddev_samp(val_ppl) AS val_ppl_sd,
        avg(val_loss) AS val_loss_mean,
        stddev_samp(val_loss) AS val_loss_sd,
        max(flops_per_token) AS flops_per_token,
        max(flops_per_token_fvcore) AS flops_per_token_fvcore,
        max(params_total) AS params_total,
        max(params_active) AS params_active,
        avg(tokens_per_s) AS tokens_per_s,
        max(peak_mem_bytes) AS peak_mem_bytes,
        avg(train_seconds) AS train_seconds,
        sum(train_seconds) AS train_seconds_total,
        avg(tokens_trained) AS tokens_trained,
        avg(epochs) AS epochs
    FROM per_seed
    GROUP BY study_name, design_hash
),

-- t(0.975, df) for df = 1..30; above 30, 1.96 + 2.4/df is within 0.003 of it.
t_table (df, t) AS (
    VALUES
    (1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365), (8, 2.306),
    (9, 2.262), (10, 2.228), (11, 2.201), (12, 2.179), (13, 2.160), (14, 2.145), (15, 2.131),
    (16, 2.120), (17, 2.110), (18, 2.101), (19, 2.093), (20, 2.086), (21, 2.080), (22, 2.074),
    (23, 2.069), (24, 2.064), (25, 2.060), (26, 2.056), (27, 2.052), (28, 2.048), (29, 2.045),
    (30, 2.042)
),

with_t AS (
    SELECT
        agg.*,
        CASE
            WHEN agg.n_seeds < 2 THEN NULL
            ELSE coalesce(t_table.t, 1.96 + 2.4 / (agg.n_seeds - 1))
        END AS t95
    FROM agg
    LEFT JOIN t_table ON t_table.df = agg.n_seeds - 1
)

SELECT
    study_name,
    design_hash,
    n_seeds,
    first_trial,
    trial_numbers,
    seeds,
    val_ppl_seeds,
    val_loss_seeds,
    memory_kind,
    val_ppl_mean,
    val_ppl_sd,
    val_ppl_mean - t95 * val_ppl_sd / sqrt(n_seeds) AS val_ppl_ci95_low,
    val_ppl_mean + t95 * val_ppl_sd / sqrt(n_seeds) AS val_ppl_ci95_high,
    val_loss_mean,
    val_loss_sd,
    val_loss_mean - t95 * val_loss_sd / sqrt(n_seeds) AS val_loss_ci95_low,
    val_loss_mean + t95 * val_loss_sd / sqrt(n_seeds) AS val_loss_ci95_high,
    flops_per_token,
    flops_per_token_fvcore,
    params_total,
    params_active,
    tokens_per_s,
    peak_mem_bytes,
    train_seconds,
    train_seconds_total,
    tokens_trained,
    epochs
FROM with_t;
