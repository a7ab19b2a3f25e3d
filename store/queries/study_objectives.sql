SELECT objectives_json
FROM studies
WHERE study_name = $study_name;
