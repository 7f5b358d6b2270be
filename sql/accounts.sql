-- Accounts of a database server that holds the dataset (the standalone and the manager; the
-- workers receive them through replication). Rendered per deployment: passwords are generated,
-- client hosts are the addresses the clients connect from.
-- Least privilege: the application reads and writes rows of the dataset and nothing else; the
-- benchmark account owns only its own schema. Root keeps its socket-only login.

-- Nothing a default install may leave behind that nobody uses. Statements, not row changes to
-- the grant tables: they replicate safely whatever the replicas hold.
DROP USER IF EXISTS ''@'localhost';
DROP DATABASE IF EXISTS test;

-- The proxy's two accounts: reads run as app_read (SELECT only, and the replication state its
-- probes read), writes as app. Each is capped in connections (the proxy's pools and a margin)
-- and in statement time (what the proxy also sets per session), so a session that got past
-- the proxy's settings is still bounded. REVOKE ALL first: a rerun leaves exactly these grants.
CREATE USER IF NOT EXISTS 'app_read'@'{{APP_CLIENT_HOST}}' IDENTIFIED BY {{APP_READ_PASSWORD}};
ALTER USER 'app_read'@'{{APP_CLIENT_HOST}}' IDENTIFIED BY {{APP_READ_PASSWORD}}
  WITH MAX_USER_CONNECTIONS {{APP_MAX_CONNECTIONS}} MAX_STATEMENT_TIME {{APP_STATEMENT_SECONDS}};
REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app_read'@'{{APP_CLIENT_HOST}}';
GRANT SELECT ON filmdb.* TO 'app_read'@'{{APP_CLIENT_HOST}}';
GRANT SLAVE MONITOR ON *.* TO 'app_read'@'{{APP_CLIENT_HOST}}';

CREATE USER IF NOT EXISTS 'app'@'{{APP_CLIENT_HOST}}' IDENTIFIED BY {{APP_PASSWORD}};
ALTER USER 'app'@'{{APP_CLIENT_HOST}}' IDENTIFIED BY {{APP_PASSWORD}}
  WITH MAX_USER_CONNECTIONS {{APP_MAX_CONNECTIONS}} MAX_STATEMENT_TIME {{APP_STATEMENT_SECONDS}};
REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app'@'{{APP_CLIENT_HOST}}';
-- SELECT too: an UPDATE or DELETE reads the rows its WHERE names.
GRANT SELECT, INSERT, UPDATE, DELETE ON filmdb.* TO 'app'@'{{APP_CLIENT_HOST}}';

-- The proxy's failover account: what promoting a worker and pointing the others at it needs
-- (read_only, the replication threads and positions, semi-sync; RELOAD for RESET SLAVE ALL),
-- nothing on the data.
CREATE USER IF NOT EXISTS 'failover'@'{{APP_CLIENT_HOST}}' IDENTIFIED BY {{FAILOVER_PASSWORD}};
ALTER USER 'failover'@'{{APP_CLIENT_HOST}}' IDENTIFIED BY {{FAILOVER_PASSWORD}}
  WITH MAX_USER_CONNECTIONS 10;
REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'failover'@'{{APP_CLIENT_HOST}}';
GRANT READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, SLAVE MONITOR, RELOAD
  ON *.* TO 'failover'@'{{APP_CLIENT_HOST}}';

CREATE DATABASE IF NOT EXISTS sbtest;
CREATE USER IF NOT EXISTS 'bench'@'{{BENCH_CLIENT_HOST}}' IDENTIFIED BY {{BENCH_PASSWORD}};
ALTER USER 'bench'@'{{BENCH_CLIENT_HOST}}' IDENTIFIED BY {{BENCH_PASSWORD}};
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON sbtest.* TO 'bench'@'{{BENCH_CLIENT_HOST}}';
-- The patterns benchmark sends the same reads directly to the database as a baseline.
GRANT SELECT ON filmdb.* TO 'bench'@'{{BENCH_CLIENT_HOST}}';
