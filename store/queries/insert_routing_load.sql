-- Parallel lists, one element per (layer, block), zipped by UNNEST.
INSERT INTO routing_load (study_name, trial_number, layer, block, load)
SELECT
    $study_name,
    $trial_number,
    unnest($layers::BIGINT[]),
    unnest($blocks::BIGINT[]),
    unnest($loads::DOUBLE[]);
