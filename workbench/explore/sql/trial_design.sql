-- What re-training one trial needs: its study's space, its sampled parameters (the design), and
-- the token budget and seed it ran with (often overridden on the command line).
SELECT s.space_name, p.name, p.value_json, p.sampled
FROM params AS p
JOIN studies AS s USING (study_name)
WHERE
    p.study_name = $study_name
    AND p.trial_number = $trial_number
    AND (p.sampled OR p.name IN ('train.tokens', 'train.seed'))
ORDER BY p.name;
