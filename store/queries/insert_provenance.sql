INSERT INTO provenance (
    study_name, trial_number, git_commit, git_dirty, packages_json, device, device_name, seed, python, torch,
    hostname
)
VALUES (
    $study_name, $trial_number, $git_commit, $git_dirty, $packages_json::JSON, $device, $device_name, $seed,
    $python, $torch, $hostname
);
