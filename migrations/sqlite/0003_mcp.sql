-- MCP sessions of 2025-era clients, shared by every replica (SQLite).
CREATE TABLE mcp_sessions (
    session_id    TEXT PRIMARY KEY,
    state         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
