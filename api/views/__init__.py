"""REST handlers of both APIs, one module per job: ``signin`` (tokens, me),
``records`` (records of every synced table, history, rollback, sync switch, fetch),
``conflicts``, ``policy`` (the local sync scope), ``status`` (health, sync status);
``common`` holds what they share."""
