-- MCP sessions of 2025-era clients, shared by every replica (SQLite).
CREATE TABLE mcp_sessions (
    session_id    TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);

-- Who opened each session: a session id is usable only by the principal that made it.
CREATE TABLE mcp_session_owners (
    session_id    TEXT PRIMARY KEY,
    principal_id  TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
