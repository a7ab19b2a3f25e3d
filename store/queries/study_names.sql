-- Every study name the store holds rows of (a trial may outlive its studies row while a study runs).
SELECT study_name FROM studies
UNION
SELECT study_name FROM trials
ORDER BY study_name;
