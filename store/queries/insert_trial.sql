INSERT INTO trials (
    study_name, trial_number, status, optuna_state, config_json, config_hash, memory_kind,
    val_ppl, val_loss, flops_per_token, flops_per_token_fvcore, params_total, params_active,
    tokens_per_s, peak_mem_bytes, train_seconds, tokens_trained, steps, epochs,
    design_hash, seed, replicate, metrics_json, objective_values_json, error, started_at, finished_at, ingested_at
)
VALUES (
    $study_name, $trial_number, $status, $optuna_state, $config_json::JSON, $config_hash, $memory_kind,
    $val_ppl, $val_loss, $flops_per_token, $flops_per_token_fvcore, $params_total, $params_active,
    $tokens_per_s, $peak_mem_bytes, $train_seconds, $tokens_trained, $steps, $epochs,
    $design_hash, $seed, $replicate, $metrics_json::JSON, $objective_values_json::JSON, $error, $started_at, $finished_at, $ingested_at
);
