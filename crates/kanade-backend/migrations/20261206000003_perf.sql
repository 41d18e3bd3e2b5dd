-- The host's CPU and memory in each agent's latest heartbeat, in hundredths of a percent (integers, so that the
-- agents list sorts and pages on them exactly); NULL from agents that do not sample them.
ALTER TABLE agents ADD COLUMN host_cpu_centi BIGINT;
ALTER TABLE agents ADD COLUMN host_mem_centi BIGINT;
-- `GET /api/agents?sort=cpu|memory`: highest first, unknown last (-1), then pc id.
CREATE INDEX agents_by_host_cpu ON agents ((COALESCE(host_cpu_centi, -1)), pc_id);
CREATE INDEX agents_by_host_mem ON agents ((COALESCE(host_mem_centi, -1)), pc_id);

-- One row per agent per rollup window (stream PERF, written by the perf projector only): the window's averages and
-- maxima, and its top processes as JSON arrays of `ProcSummary`. Kept for the backend's `perf_retention`.
CREATE TABLE perf_rollups (
    pc_id           TEXT NOT NULL,
    start_ms        BIGINT NOT NULL,
    end_ms          BIGINT NOT NULL,
    samples         BIGINT NOT NULL,
    cpu_avg         DOUBLE PRECISION NOT NULL,
    cpu_max         DOUBLE PRECISION NOT NULL,
    mem_used_avg    DOUBLE PRECISION NOT NULL,
    mem_used_max    DOUBLE PRECISION NOT NULL,
    mem_total       BIGINT NOT NULL,
    disk_read_avg   DOUBLE PRECISION NOT NULL,
    disk_read_max   DOUBLE PRECISION NOT NULL,
    disk_write_avg  DOUBLE PRECISION NOT NULL,
    disk_write_max  DOUBLE PRECISION NOT NULL,
    net_rx_avg      DOUBLE PRECISION NOT NULL,
    net_rx_max      DOUBLE PRECISION NOT NULL,
    net_tx_avg      DOUBLE PRECISION NOT NULL,
    net_tx_max      DOUBLE PRECISION NOT NULL,
    top_cpu         TEXT NOT NULL,
    top_memory      TEXT NOT NULL,
    PRIMARY KEY (pc_id, start_ms)
);
-- The retention sweep deletes by age across every agent.
CREATE INDEX perf_rollups_by_start ON perf_rollups (start_ms);
