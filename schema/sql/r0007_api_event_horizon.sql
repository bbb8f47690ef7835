-- API events, revision 0007: a replay that cannot miss a late commit.
--
-- Event ids come from an identity column, taken at INSERT, not at COMMIT: a transaction
-- that published id 9 may commit after another one published and committed id 10. A
-- client that saw 10 and reconnects with last_event_id = 10 would never get 9. Each event
-- now records its transaction (txid) and the oldest transaction still running when it
-- was inserted (horizon). Whatever committed after event A with a lower id was running
-- when A was inserted, so its txid >= A.horizon: a replay after A sends every event with
-- id > A plus those with id < A, txid >= A.horizon and another transaction than A's (a
-- few events the client may have seen already: clients drop them by id).
-- xid8 values as bigint: comparable, and SQLAlchemy has a type for them.
ALTER TABLE scsync_api_events
    ADD COLUMN txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    ADD COLUMN horizon bigint DEFAULT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint);

CREATE INDEX ix_scsync_api_events_txid ON scsync_api_events (txid);
