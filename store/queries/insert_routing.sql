-- Parallel lists, one element per memory layer, zipped by UNNEST.
INSERT INTO routing (
    study_name, trial_number, layer, n_blocks, load_entropy, load_entropy_max, dropped_frac, unused_frac
)
SELECT
    $study_name,
    $trial_number,
    unnest($layers::BIGINT[]),
    unnest($n_blocks::BIGINT[]),
    unnest($load_entropy::DOUBLE[]),
    unnest($load_entropy_max::DOUBLE[]),
    unnest($dropped_frac::DOUBLE[]),
    unnest($unused_frac::DOUBLE[]);
