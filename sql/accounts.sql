-- Accounts of a database server that holds the dataset (the standalone and the manager; the
-- workers receive them through replication). Rendered per deployment: passwords are generated,
-- client hosts are the addresses the clients connect from.
-- Least privilege: the application reads and writes rows of the dataset and nothing else; the
-- benchmark account owns only its own schema. Root keeps its socket-only login.

-- Nothing a default install may leave behind that nobody uses. Statements, not row changes to
-- the grant tables: they replicate safely whatever the replicas hold.
DROP USER IF EXISTS ''@'localhost';
DROP DATABASE IF EXISTS test;

CREATE USER IF NOT EXISTS 'app'@'{{APP_CLIENT_HOST}}' IDENTIFIED BY {{APP_PASSWORD}};
ALTER USER 'app'@'{{APP_CLIENT_HOST}}' IDENTIFIED BY {{APP_PASSWORD}};
GRANT SELECT, INSERT, UPDATE, DELETE ON filmdb.* TO 'app'@'{{APP_CLIENT_HOST}}';
-- The proxy leaves lagging or broken replicas out of reads: it may read the replication state.
GRANT SLAVE MONITOR ON *.* TO 'app'@'{{APP_CLIENT_HOST}}';

CREATE DATABASE IF NOT EXISTS sbtest;
CREATE USER IF NOT EXISTS 'bench'@'{{BENCH_CLIENT_HOST}}' IDENTIFIED BY {{BENCH_PASSWORD}};
ALTER USER 'bench'@'{{BENCH_CLIENT_HOST}}' IDENTIFIED BY {{BENCH_PASSWORD}};
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON sbtest.* TO 'bench'@'{{BENCH_CLIENT_HOST}}';
-- The patterns benchmark sends the same reads directly to the database as a baseline.
GRANT SELECT ON filmdb.* TO 'bench'@'{{BENCH_CLIENT_HOST}}';
