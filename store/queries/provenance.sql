-- Provenance of one study's trials (NULL: all trials).
SELECT
    study_name,
    trial_number,
    git_commit,
    git_dirty,
    packages_json,
    device,
    device_name,
    seed,
    python,
    torch,
    hostname
FROM provenance
WHERE
    study_name = $study_name
    AND ($trial_numbers::BIGINT[] IS NULL OR list_contains($trial_numbers::BIGINT[], trial_number))
ORDER BY trial_number;
