-- The manager's account for its replicas: it may read the binary log and nothing else.
CREATE USER IF NOT EXISTS 'repl'@'{{REPLICA_CLIENT_HOST}}' IDENTIFIED BY {{REPLICATION_PASSWORD}};
ALTER USER 'repl'@'{{REPLICA_CLIENT_HOST}}' IDENTIFIED BY {{REPLICATION_PASSWORD}};
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'{{REPLICA_CLIENT_HOST}}';
