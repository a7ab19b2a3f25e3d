-- Tables and views of the file itself (not DuckDB's catalog), to tell a store from another DuckDB file.
SELECT table_name
FROM information_schema.tables
WHERE table_catalog = current_database()
ORDER BY table_name;
