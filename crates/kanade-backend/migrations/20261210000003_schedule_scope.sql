-- Group scopes (issue #19). A schedule fires with the scope of whoever last created or changed it, checked again at
-- every fire (its job's targets or its PCs' groups may have moved since); a scoped caller sees the executions that
-- touch its groups, which needs what each execution named.

-- The scope a schedule fires with: `"fleet"` or `["office", ...]` (kanade_shared::access::GroupScope). The schedule
-- itself lives in KV `schedules`; a schedule without a row here (created before scopes, or straight into KV with the
-- CLI's fleet credential) fires with the fleet scope.
CREATE TABLE schedule_scopes (
    schedule_id TEXT PRIMARY KEY NOT NULL,
    scope_json  TEXT NOT NULL,
    set_by      TEXT NOT NULL,
    set_at_ms   BIGINT NOT NULL
);

-- What an execution named, for the executions a group scope shows: whether it fired at all agents, and the groups
-- of its targets and waves (a JSON array of group names, which are `[a-z0-9_-]`, so `"<name>"` inside it is that
-- group exactly). Written with the execution; those from before only show to a group scope through their target rows
-- (their groups are not read back out of `targets_json` here: neither dialect's JSON functions are the other's).
ALTER TABLE executions ADD COLUMN targets_all BIGINT NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN target_groups_json TEXT NOT NULL DEFAULT '[]';
-- The engine has always written targets as serde_json writes `Targets`: `{"all":true,...`.
UPDATE executions SET targets_all = 1 WHERE targets_json LIKE '{"all":true%';
