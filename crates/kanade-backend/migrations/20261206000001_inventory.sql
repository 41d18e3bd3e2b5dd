-- Inventory, projected from `inventory.<pc>.<kind>` (stream INVENTORY) by the inventory projector only.

-- Each PC's latest report of each kind: when, its hash, what the agent could not collect, and (hardware, status)
-- the record itself as JSON, bounded by the projector. Software is not kept here but as rows below.
CREATE TABLE inventory_reports (
    pc_id               TEXT NOT NULL,
    kind                TEXT NOT NULL,
    hash                TEXT NOT NULL,
    collected_at_ms     BIGINT NOT NULL, -- the agent's clock, never later than received_at_ms
    received_at_ms      BIGINT NOT NULL, -- the backend's clock
    errors_json         TEXT NOT NULL,
    dropped             BIGINT NOT NULL,
    failed_sources_json TEXT NOT NULL,
    data_json           TEXT,
    PRIMARY KEY (pc_id, kind)
);

-- The fields of each PC's hardware that are filtered and counted, as columns.
CREATE TABLE inventory_hardware (
    pc_id           TEXT PRIMARY KEY NOT NULL,
    hostname        TEXT NOT NULL,
    os_name         TEXT NOT NULL,
    os_version      TEXT NOT NULL,
    os_build        TEXT NOT NULL,
    manufacturer    TEXT NOT NULL,
    model           TEXT NOT NULL,
    serial          TEXT NOT NULL,
    cpu_model       TEXT NOT NULL,
    cpu_cores       BIGINT NOT NULL,
    cpu_threads     BIGINT NOT NULL,
    memory_bytes    BIGINT NOT NULL,
    collected_at_ms BIGINT NOT NULL
);
CREATE INDEX inventory_hardware_by_os ON inventory_hardware (os_name, os_build);
CREATE INDEX inventory_hardware_by_build ON inventory_hardware (os_build);
CREATE INDEX inventory_hardware_by_model ON inventory_hardware (model);
CREATE INDEX inventory_hardware_by_memory ON inventory_hardware (memory_bytes);

-- What is installed now: one row per PC and item, keyed as the agent keys it (source, id).
CREATE TABLE inventory_software (
    pc_id        TEXT NOT NULL,
    source       TEXT NOT NULL,
    item_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    name_key     TEXT NOT NULL, -- the name in lower case: titles are case-insensitive
    version      TEXT NOT NULL,
    publisher    TEXT NOT NULL,
    install_date TEXT NOT NULL,
    location     TEXT NOT NULL,
    arch         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    since_ms     BIGINT NOT NULL, -- when this item was first seen at this version
    PRIMARY KEY (pc_id, source, item_id)
);
-- "Which PCs have X": one title's rows, by PC.
CREATE INDEX inventory_software_by_title ON inventory_software (name_key, pc_id, source, item_id);

-- Installs per title and version across the fleet, moved by the projector in the transaction that moves the rows
-- above, so the titles list reads a few thousand rows instead of grouping millions.
CREATE TABLE software_titles (
    name_key TEXT NOT NULL,
    version  TEXT NOT NULL,
    name     TEXT NOT NULL, -- as first seen
    installs BIGINT NOT NULL,
    PRIMARY KEY (name_key, version)
);

-- The change log, append-only: software installed, removed or at another version, hardware fields changed, and
-- each PC's first report of a kind. Keyed by the report (pc, kind, its collection time) and the change's place in
-- it, so a redelivered report cannot log twice.
CREATE TABLE inventory_changes (
    pc_id          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    at_ms          BIGINT NOT NULL, -- when the agent collected the report that showed it
    n              BIGINT NOT NULL,
    change         TEXT NOT NULL,
    name           TEXT NOT NULL,
    name_key       TEXT NOT NULL,
    source         TEXT NOT NULL,
    item_id        TEXT NOT NULL,
    old_value      TEXT,
    new_value      TEXT,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (pc_id, kind, at_ms, n)
);
-- The fleet's log newest first, one PC's, one title's.
CREATE INDEX inventory_changes_by_at ON inventory_changes (at_ms, pc_id, kind, n);
CREATE INDEX inventory_changes_by_pc ON inventory_changes (pc_id, at_ms, kind, n);
CREATE INDEX inventory_changes_by_name ON inventory_changes (name_key, at_ms);
