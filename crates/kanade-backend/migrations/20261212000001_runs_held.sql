-- Runs held on their PC for the user's consent (issue #21, a job's `client.consent`): where each stands, as its
-- agent last said on `events.consent.<pc>.<exec>`: a word later in stream `EVENTS` (`seq`) replaces an earlier one,
-- whatever the PC's clock said (`at_ms`). Shown with the target while it is pending; kept afterwards, for the record.
CREATE TABLE runs_held (
    exec_id     TEXT NOT NULL,
    pc_id       TEXT NOT NULL,
    state       TEXT NOT NULL,
    until_ms    BIGINT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    by_user     TEXT,
    deferrals   BIGINT NOT NULL,
    at_ms       BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    PRIMARY KEY (exec_id, pc_id)
);
