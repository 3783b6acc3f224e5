-- Several processes on one database.
--
-- A delivery claimed for sending carries a lease: the mail server that holds it (its
-- mail_servers.id; 0 for none) and until when (Unix milliseconds). A claim takes only
-- deliveries unleased or whose lease has ended, so the mail servers of different processes
-- never send one at the same time; a process that dies leaves its leases to end, and
-- another server takes the deliveries over. The outcome clears the lease.
ALTER TABLE deliveries ADD COLUMN lease_owner BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
-- A heartbeat extends, and a pass's end releases, what one server holds: few rows.
CREATE INDEX deliveries_leased ON deliveries (lease_owner) WHERE lease_owner <> 0;

-- Each process registers its own mail servers under its name (serve --name): slot n of
-- process p. The rows made before are the unnamed process's.
ALTER TABLE mail_servers ADD COLUMN process TEXT NOT NULL DEFAULT '';
ALTER TABLE mail_servers ADD COLUMN slot BIGINT NOT NULL DEFAULT 0;
-- The jobs a server's last report listed, as a JSON array: the post office of another
-- process reads them.
ALTER TABLE mail_servers ADD COLUMN jobs TEXT NOT NULL DEFAULT '[]';
UPDATE mail_servers SET slot = id;
CREATE UNIQUE INDEX mail_servers_process_slot ON mail_servers (process, slot);
