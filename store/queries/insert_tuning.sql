-- Parallel lists, one element per (probe, knob), zipped by UNNEST.
INSERT INTO tuning (
    study_name, trial_number, probe, param, value, val_loss, tokens_trained, train_seconds, chosen, error
)
SELECT
    $study_name,
    $trial_number,
    unnest($probes::BIGINT[]),
    unnest($params::VARCHAR[]),
    unnest($values::DOUBLE[]),
    unnest($val_losses::DOUBLE[]),
    unnest($tokens_trained::BIGINT[]),
    unnest($train_seconds::DOUBLE[]),
    unnest($chosen::BOOLEAN[]),
    unnest($errors::VARCHAR[]);
