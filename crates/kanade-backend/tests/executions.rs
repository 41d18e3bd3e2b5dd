//! The exec engine's SQL on SQLite and on PostgreSQL, without a broker: the compare-and-sets superseding stands
//! on, and the `status` filter of `GET /api/executions` agreeing with the status the API shows
//! (`rollout::ShownStatus`), which is where "settled" is decided.

use chrono::Utc;
use kanade_backend::db::{Db, ExecStatus, ExecutionFilter, NewExecution, StatusFilter};
use kanade_backend::rollout::{self, ShownStatus, WaveCounts};
use kanade_shared::wire::{ExecResult, ResultStatus, RunStarted};
use kanade_shared::{ExecId, JobId, PcId, ResultId};

#[path = "support/postgres.rs"]
mod postgres;

fn job(id: &str) -> JobId {
    JobId::new(id).expect("test job id")
}

fn pc(id: &str) -> PcId {
    PcId::new(id).expect("test pc id")
}

/// Records an execution of `job` at `version` over `targets` (no waves), then walks it through `path`.
async fn execution(db: &Db, job_id: &str, version: &str, targets: &[&str], path: &[ExecStatus]) -> ExecId {
    let exec = ExecId::generate();
    db.insert_execution(&NewExecution {
        exec_id: &exec,
        job_id: &job(job_id),
        version,
        status: ExecStatus::Starting,
        targets_json: "{}".into(),
        command_json: "{}".into(),
        deadline_ms: None,
        ends_at: None,
        requested_by: "alice",
        now: Utc::now(),
        targets: targets.iter().map(|pc| ((*pc).to_owned(), 0)).collect(),
        waves: vec![],
        fire: None,
    })
    .await
    .expect("insert execution");
    let mut at = ExecStatus::Starting;
    for &next in path {
        assert!(db.transition(&exec, at, next, None, Utc::now()).await.expect("transition"), "{at} -> {next}");
        at = next;
    }
    exec
}

async fn answer(db: &Db, exec: &ExecId, pc_id: &str, status: ResultStatus) {
    let pc_id = pc(pc_id);
    let result = ExecResult {
        result_id: ResultId::for_run(exec, &pc_id),
        exec_id: exec.clone(),
        job_id: job("patch"),
        version: "1.0".into(),
        pc_id,
        status,
        exit_code: Some(0),
        stdout: String::new(),
        stderr: String::new(),
        stdout_truncated: false,
        stderr_truncated: false,
        started_at: None,
        finished_at: Utc::now(),
        reason: None,
        stdout_full: None,
        stderr_full: None,
    };
    db.insert_results(&[(result, 1)], Utc::now()).await.expect("insert result");
}

async fn begin(db: &Db, exec: &ExecId, pc_id: &str) {
    let started = RunStarted {
        exec_id: exec.clone(),
        job_id: job("patch"),
        version: "1.0".into(),
        pc_id: pc(pc_id),
        started_at: Utc::now(),
    };
    db.insert_started(&[(started, 1)]).await.expect("insert start");
}

async fn list(db: &Db, status: Option<StatusFilter>) -> Vec<ExecId> {
    let mut ids: Vec<ExecId> = db
        .list_executions(&ExecutionFilter { job_id: None, status, before: None, limit: 1000 })
        .await
        .expect("list executions")
        .items
        .into_iter()
        .map(|row| row.exec_id)
        .collect();
    ids.sort();
    ids
}

/// `status=completed` lists exactly the executions the API shows as `completed` (and `status=running` exactly
/// those it shows as `running`): both count a target as unanswered when it has no result row, whoever else
/// answered.
async fn the_status_filter_agrees_with_the_shown_status(db: &Db) {
    use ExecStatus::{Halted, RollingOut, Running};
    let all_answered = execution(db, "patch", "1.0", &["pc-a", "pc-b"], &[Running]).await;
    answer(db, &all_answered, "pc-a", ResultStatus::Ok).await;
    answer(db, &all_answered, "pc-b", ResultStatus::Failed).await;
    let one_running = execution(db, "patch", "1.0", &["pc-a", "pc-b"], &[Running]).await;
    answer(db, &one_running, "pc-a", ResultStatus::Ok).await;
    begin(db, &one_running, "pc-b").await;
    let none_begun = execution(db, "patch", "1.0", &["pc-a"], &[Running]).await;
    let no_targets = execution(db, "patch", "1.0", &[], &[Running]).await;
    // An agent that joined a targeted group later may answer too; it is shown, not waited for.
    let stranger_only = execution(db, "patch", "1.0", &["pc-a"], &[Running]).await;
    answer(db, &stranger_only, "pc-z", ResultStatus::Ok).await;
    let stranger_too = execution(db, "patch", "1.0", &["pc-a"], &[Running]).await;
    answer(db, &stranger_too, "pc-a", ResultStatus::Killed).await;
    answer(db, &stranger_too, "pc-z", ResultStatus::Ok).await;
    let halted = execution(db, "patch", "1.0", &["pc-a"], &[RollingOut, Halted]).await;
    let rolling = execution(db, "patch", "1.0", &["pc-a"], &[RollingOut]).await;

    let mut shown = Vec::new();
    for exec in list(db, None).await {
        let row = db.get_execution(&exec).await.expect("read").expect("stored");
        let unanswered = WaveCounts::from_rows(db.target_counts(&exec).await.expect("counts")).total().unanswered();
        shown.push((exec, ShownStatus::of(Some(row.status), unanswered)));
    }
    let shown_as = |want: ShownStatus| {
        let mut ids: Vec<ExecId> = shown.iter().filter(|(_, s)| *s == want).map(|(e, _)| e.clone()).collect();
        ids.sort();
        ids
    };
    let mut completed = vec![all_answered, no_targets, stranger_too];
    completed.sort();
    assert_eq!(shown_as(ShownStatus::Completed), completed, "the shown status itself");
    assert_eq!(list(db, Some(StatusFilter::Completed)).await, completed);
    let mut running = vec![one_running, none_begun, stranger_only];
    running.sort();
    assert_eq!(shown_as(ShownStatus::Stored(Running)), running);
    assert_eq!(list(db, Some(StatusFilter::Stored(Running))).await, running);
    for status in ExecStatus::ALL.into_iter().filter(|s| *s != Running) {
        let listed = list(db, Some(StatusFilter::Stored(status))).await;
        assert_eq!(listed, shown_as(ShownStatus::Stored(status)), "status={status}");
    }
    assert_eq!(list(db, Some(StatusFilter::Stored(Halted))).await, vec![halted]);
    assert_eq!(list(db, Some(StatusFilter::Stored(RollingOut))).await, vec![rolling]);
    for (exec, status) in &shown {
        let settled = matches!(status, ShownStatus::Completed | ShownStatus::Stored(Halted));
        assert_eq!(status.settled(), settled, "{exec}: {status:?}");
    }
}

/// What superseding reads and writes: the job's executions still sending, and a compare-and-set from either
/// sending status that only one caller wins.
async fn superseding_reads_the_job_s_unfinished_executions_and_sets_each_once(db: &Db) {
    use ExecStatus::{RollingOut, Running, Starting, Superseded};
    let rolling = execution(db, "patch", "1.0", &["pc-a"], &[RollingOut]).await;
    let starting = execution(db, "patch", "1.0", &["pc-a"], &[]).await;
    let same_version = execution(db, "patch", "2.0", &["pc-a"], &[RollingOut]).await;
    let _sent = execution(db, "patch", "1.0", &["pc-a"], &[Running]).await;
    let _other_job = execution(db, "other", "1.0", &["pc-a"], &[RollingOut]).await;
    let newer = execution(db, "patch", "2.0", &["pc-a"], &[]).await;
    let newer = db.get_execution(&newer).await.expect("read").expect("stored");

    let candidates = db.job_executions_in(&job("patch"), rollout::SUPERSEDABLE).await.expect("candidates");
    let mut candidate_ids: Vec<ExecId> = candidates.iter().map(|row| row.exec_id.clone()).collect();
    candidate_ids.sort();
    let mut want = vec![rolling.clone(), starting.clone(), same_version.clone(), newer.exec_id.clone()];
    want.sort();
    assert_eq!(candidate_ids, want, "the job's executions in a sending status, and no other");
    let mut chosen: Vec<ExecId> =
        candidates.iter().filter(|older| rollout::supersedes(&newer, older)).map(|r| r.exec_id.clone()).collect();
    chosen.sort();
    let mut want = vec![rolling.clone(), starting.clone()];
    want.sort();
    assert_eq!(chosen, want);

    let reason = rollout::superseded_reason(&newer);
    for exec in &chosen {
        let now = Utc::now();
        assert!(db.transition_from(exec, rollout::SUPERSEDABLE, Superseded, Some(&reason), now).await.expect("cas"));
        assert!(
            !db.transition_from(exec, rollout::SUPERSEDABLE, Superseded, Some(&reason), now).await.expect("cas"),
            "a second engine loses the compare-and-set"
        );
        let row = db.get_execution(exec).await.expect("read").expect("stored");
        assert_eq!((row.status, row.status_reason.as_deref()), (Superseded, Some(reason.as_str())));
    }
    let left = db.job_executions_in(&job("patch"), &[Starting]).await.expect("left");
    assert_eq!(left.iter().map(|row| &row.exec_id).collect::<Vec<_>>(), vec![&newer.exec_id]);
}

async fn sqlite() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::connect(&kanade_backend::db::default_url(dir.path())).await.expect("open sqlite");
    (dir, db)
}

#[tokio::test]
async fn the_status_filter_agrees_with_the_shown_status_on_sqlite() {
    let (_dir, db) = sqlite().await;
    the_status_filter_agrees_with_the_shown_status(&db).await;
    db.close().await;
}

#[tokio::test]
async fn the_status_filter_agrees_with_the_shown_status_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    let db = Db::connect(&database.url).await.expect("open postgres");
    the_status_filter_agrees_with_the_shown_status(&db).await;
    db.close().await;
}

#[tokio::test]
async fn superseding_sets_each_older_execution_once_on_sqlite() {
    let (_dir, db) = sqlite().await;
    superseding_reads_the_job_s_unfinished_executions_and_sets_each_once(&db).await;
    db.close().await;
}

#[tokio::test]
async fn superseding_sets_each_older_execution_once_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    let db = Db::connect(&database.url).await.expect("open postgres");
    superseding_reads_the_job_s_unfinished_executions_and_sets_each_once(&db).await;
    db.close().await;
}

/// The tallies the projectors keep (`execution_tallies`) agree with a recount of the targets from `results` and
/// `runs_started` whatever order starts and results arrive in: a start after its result, a second result for a
/// target, a result from an agent that is no target, and a start that is never followed by a result.
async fn tallies_agree_with_a_recount(db: &Db) {
    let exec = execution(db, "patch", "1.0", &["a", "b", "c", "d", "e"], &[ExecStatus::Running]).await;
    let recount = || async {
        let rows = sqlx::query(
            "SELECT CASE WHEN r.status IS NOT NULL THEN r.status WHEN s.pc_id IS NOT NULL THEN 'running' END AS status,
                COUNT(*) AS n
             FROM execution_targets t
             LEFT JOIN results r ON r.exec_id = t.exec_id AND r.pc_id = t.pc_id
             LEFT JOIN runs_started s ON s.exec_id = t.exec_id AND s.pc_id = t.pc_id
             WHERE t.exec_id = $1 GROUP BY 1 ORDER BY 1",
        )
        .bind(exec.as_str())
        .fetch_all(db.pool())
        .await
        .expect("recount");
        use sqlx::Row as _;
        let mut counts: Vec<(Option<String>, i64)> =
            rows.iter().map(|r| (r.try_get("status").unwrap(), r.try_get("n").unwrap())).collect();
        counts.sort();
        counts
    };
    let tallied = || async {
        let mut counts: Vec<(Option<String>, i64)> =
            db.target_counts(&exec).await.expect("tallies").into_iter().map(|(_, s, n)| (s, n)).collect();
        counts.sort();
        counts
    };
    assert_eq!(tallied().await, vec![(None, 5)]);
    begin(db, &exec, "a").await;
    answer(db, &exec, "a", ResultStatus::Ok).await;
    answer(db, &exec, "b", ResultStatus::Failed).await;
    begin(db, &exec, "b").await;
    begin(db, &exec, "c").await;
    begin(db, &exec, "c").await;
    answer(db, &exec, "a", ResultStatus::Failed).await;
    answer(db, &exec, "not-a-target", ResultStatus::Ok).await;
    begin(db, &exec, "not-a-target").await;
    let counts = tallied().await;
    assert_eq!(counts, recount().await);
    assert_eq!(
        counts,
        vec![(None, 2), (Some("failed".into()), 1), (Some("ok".into()), 1), (Some("running".into()), 1)]
    );
    let shown = WaveCounts::from_rows(db.target_counts(&exec).await.unwrap()).total();
    assert_eq!((shown.targets, shown.unanswered()), (5, 3));
    for pc_id in ["c", "d", "e"] {
        answer(db, &exec, pc_id, ResultStatus::Ok).await;
    }
    assert_eq!(tallied().await, recount().await);
    assert_eq!(WaveCounts::from_rows(db.target_counts(&exec).await.unwrap()).total().unanswered(), 0);
}

#[tokio::test]
async fn tallies_agree_with_a_recount_on_sqlite() {
    let (_dir, db) = sqlite().await;
    tallies_agree_with_a_recount(&db).await;
    db.close().await;
}

#[tokio::test]
async fn tallies_agree_with_a_recount_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    let db = Db::connect(&database.url).await.expect("open postgres");
    tallies_agree_with_a_recount(&db).await;
    db.close().await;
}

/// Where a run held for its user's consent stands: the word latest in the stream wins, whatever order the words
/// are committed in (two in one batch, or an older one redelivered later) and whatever the PC's clock said, and it
/// shows only while the target is pending.
async fn the_newest_held_word_wins_and_shows_while_pending(db: &Db) {
    use kanade_shared::wire::{HeldState, RunHeld};
    let exec = execution(db, "updates", "1", &["a", "b"], &[ExecStatus::Running]).await;
    let at = |secs: i64| Utc::now() + chrono::Duration::seconds(secs);
    let deadline = at(3600);
    let word = |pc_id: &str, state: HeldState, said: chrono::DateTime<Utc>, deferrals: u32| RunHeld {
        exec_id: exec.clone(),
        job_id: job("updates"),
        pc_id: pc(pc_id),
        state,
        until: deadline,
        deadline,
        by: (state == HeldState::Deferred).then(|| "ann".to_owned()),
        deferrals,
        at: said,
    };
    let (asked, deferred) = (word("a", HeldState::Asking, at(1), 0), word("a", HeldState::Deferred, at(2), 1));
    db.upsert_held(&[(deferred.clone(), 2), (asked.clone(), 1)]).await.expect("one batch, out of order");
    db.upsert_held(&[(asked, 1)]).await.expect("an older word again");
    db.upsert_held(&[(word("b", HeldState::Quiet, at(1), 0), 3)]).await.expect("b");
    // The PC's clock went back: its later word still wins.
    db.upsert_held(&[(word("a", HeldState::Deferred, at(-600), 2), 5)]).await.expect("a later word, an earlier clock");
    let exec_ref = &exec;
    let held_of = |pc_id: &'static str| async move {
        let exec = exec_ref;
        let filter = kanade_backend::db::TargetFilter { limit: 10, ..Default::default() };
        let page = db.targets(exec, true, &filter, &kanade_shared::access::GroupScope::Fleet).await.expect("targets");
        page.items.into_iter().find(|t| t.pc_id == pc_id).expect("a target").held
    };
    let held = held_of("a").await.expect("a is held");
    assert_eq!((held.state.as_str(), held.by.as_deref(), held.deferrals), ("deferred", Some("ann"), 2));
    assert_eq!(held_of("b").await.expect("b is held").state, "quiet");
    // Begun: its start tells the story now.
    let started = RunStarted {
        exec_id: exec.clone(),
        job_id: job("updates"),
        version: "1".into(),
        pc_id: pc("b"),
        started_at: Utc::now(),
    };
    db.insert_started(&[(started, 4)]).await.expect("started");
    assert!(held_of("b").await.is_none(), "a run that began is not shown held");
}

#[tokio::test]
async fn the_newest_held_word_wins_on_sqlite() {
    let (_dir, db) = sqlite().await;
    the_newest_held_word_wins_and_shows_while_pending(&db).await;
    db.close().await;
}

#[tokio::test]
async fn the_newest_held_word_wins_on_postgres() {
    let database = postgres::TestDatabase::create().await;
    let db = Db::connect(&database.url).await.expect("open postgres");
    the_newest_held_word_wins_and_shows_while_pending(&db).await;
    db.close().await;
}
