-- Makes a worker a GTID replica of the manager. Safe to run again: the replica keeps its
-- position (gtid_slave_pos) and continues from there.
STOP SLAVE;
CHANGE MASTER TO
  MASTER_HOST = {{SOURCE_ADDRESS}},
  MASTER_PORT = {{SOURCE_PORT}},
  MASTER_USER = 'repl',
  MASTER_PASSWORD = {{REPLICATION_PASSWORD}},
  MASTER_CONNECT_RETRY = 1,
  -- A heartbeat every second: a manager that went silent (its machine lost, not only its
  -- process) is noticed within slave_net_timeout.
  MASTER_HEARTBEAT_PERIOD = 1,
  MASTER_USE_GTID = slave_pos;
START SLAVE;
