-- Undoes r0001_functions.sql (the tables, and so their triggers, are dropped first).
DROP FUNCTION IF EXISTS scsync_unregister_table(regclass);
DROP FUNCTION IF EXISTS scsync_register_table(regclass, text);
DROP FUNCTION IF EXISTS scsync_capture();
DROP FUNCTION IF EXISTS scsync_stamp_revision();
DROP FUNCTION IF EXISTS scsync_bookkeeping_columns();
DROP FUNCTION IF EXISTS scsync_is_replicating();
DROP FUNCTION IF EXISTS scsync_snowflake();
DROP FUNCTION IF EXISTS scsync_clock_ms();
