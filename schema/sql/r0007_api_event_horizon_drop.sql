DROP INDEX ix_scsync_api_events_txid;
ALTER TABLE scsync_api_events DROP COLUMN horizon, DROP COLUMN txid;
