-- Anomaly response (docs/anomaly.md). A suspension lives on the principal, so that every
-- credential check that reads the principal sees it; lockouts and the counters behind
-- them are shared by every replica through these tables.
ALTER TABLE principals ADD COLUMN suspended_at_ms INTEGER;
ALTER TABLE principals ADD COLUMN suspension_reason TEXT;

-- Who is held back from authenticating, until when. `strikes` counts consecutive
-- lockouts (each doubles the next); the row outlives the lockout so that it can.
CREATE TABLE lockouts (
    subject TEXT PRIMARY KEY,
    tenant_id TEXT,
    since_ms INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    strikes INTEGER NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX lockouts_until ON lockouts (until_ms);

-- Events counted per rule, subject and fixed window, summed over every replica.
CREATE TABLE anomaly_counts (
    rule TEXT NOT NULL,
    subject TEXT NOT NULL,
    window_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (rule, subject, window_ms)
);
