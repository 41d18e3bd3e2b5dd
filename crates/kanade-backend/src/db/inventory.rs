//! Inventory in SQL: each PC's latest report per kind (`inventory_reports`), its hardware's queryable fields
//! (`inventory_hardware`), what it has installed (`inventory_software`, one row per item), installs per title and
//! version across the fleet (`software_titles`), and the append-only change log (`inventory_changes`). Written only
//! by the inventory projector, one report at a time, each folded through `kanade_shared::inventory::diff` against
//! what is stored; read by `/api/inventory/...`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kanade_shared::access::GroupScope;
use kanade_shared::api::{ChangeRow, HardwareRow, InventoryReportInfo, SoftwareRow, TitleRow, TitleVersion};
use kanade_shared::inventory::diff::{self, SoftwareChange};
use kanade_shared::inventory::version::{self, Scheme};
use kanade_shared::inventory::{Hardware, KIND_HARDWARE, KIND_SOFTWARE, KIND_STATUS, Software, SoftwareList, Status};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Bind, Db, DbError, and_in_scope, bind_all, clamp, millis, strip_nul};

/// How long a change-log entry is kept, by when it happened: "when did this appear" is asked over months, and at
/// 10,000 PCs with a few changes each a day a year and a month is ~10 M rows. Older entries are deleted by the
/// projector as it stores new ones.
pub const CHANGE_RETENTION: chrono::Duration = chrono::Duration::days(400);

/// One report as the projector decoded and bounded it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInventory {
    pub pc_id: String,
    pub collected_at: DateTime<Utc>,
    pub hash: String,
    pub errors: Vec<String>,
    /// Items left out, by the agent and by the projector's own bounds.
    pub dropped: u64,
    pub data: InventoryData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InventoryData {
    /// Boxed: a hardware record is ten times the size of the others.
    Hardware(Box<Hardware>),
    /// Normalised: sorted and unique by (source, id).
    Software(SoftwareList),
    Status(Status),
}

impl InventoryData {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hardware(_) => KIND_HARDWARE,
            Self::Software(_) => KIND_SOFTWARE,
            Self::Status(_) => KIND_STATUS,
        }
    }
}

/// A change-log row before it is written.
#[derive(Debug, Clone, PartialEq)]
struct NewChange {
    change: &'static str,
    name: String,
    source: String,
    item_id: String,
    old: Option<String>,
    new: Option<String>,
}

impl NewChange {
    fn software(change: &'static str, item: &Software, old: Option<&str>, new: Option<&str>) -> Self {
        Self {
            change,
            name: item.name.clone(),
            source: item.source.clone(),
            item_id: item.id.clone(),
            old: old.map(str::to_owned),
            new: new.map(str::to_owned),
        }
    }
}

/// What a stored report says about the one before the next.
struct Stored {
    hash: String,
    collected_at_ms: i64,
    data_json: Option<String>,
}

/// Installs per (title, version) to add or take away, summed before they are written.
#[derive(Default)]
struct TitleMoves(BTreeMap<(String, String), (String, i64)>);

impl TitleMoves {
    fn add(&mut self, item: &Software, n: i64) {
        let entry = self.0.entry((name_key(&item.name), item.version.clone())).or_insert((item.name.clone(), 0));
        entry.1 += n;
    }
}

/// How titles are matched: case-insensitively.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// Which rows of the software lists to read.
#[derive(Debug, Clone)]
pub struct SoftwareFilter {
    /// Exact `name_key`, or a LIKE pattern when the operator wrote `*`.
    pub name: NameMatch,
    pub source: Option<String>,
    pub pc_id: Option<String>,
    pub version: Option<version::VersionRange>,
    /// The page starts after this (pc_id, source, item_id).
    pub after: Option<(String, String, String)>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameMatch {
    Exact(String),
    /// A LIKE pattern, already escaped, in lower case.
    Like(String),
}

impl NameMatch {
    /// `*` in an operator's name is "any run of characters"; everything else is literal.
    pub fn parse(raw: &str) -> Self {
        let key = name_key(raw);
        if key.contains('*') {
            let escaped = super::like_escape(&key).replace('*', "%");
            Self::Like(escaped)
        } else {
            Self::Exact(key)
        }
    }

    fn condition(&self, column: &str, n: usize) -> String {
        match self {
            Self::Exact(_) => format!("{column} = ${n}"),
            Self::Like(_) => format!("{column} LIKE ${n} ESCAPE '\\'"),
        }
    }

    fn value(&self) -> &str {
        match self {
            Self::Exact(v) | Self::Like(v) => v,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChangeFilter {
    pub since_ms: i64,
    pub until_ms: i64,
    pub pc_id: Option<String>,
    pub name: Option<NameMatch>,
    pub kind: Option<String>,
    pub change: Option<String>,
    /// The page starts after (older than) this (at_ms, pc_id, kind, n).
    pub before: Option<(i64, String, String, i64)>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct HardwareFilter {
    pub os: Option<String>,
    pub os_build: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub memory_below: Option<i64>,
    pub memory_at_least: Option<i64>,
    pub after: Option<String>,
    pub limit: usize,
}

/// The hardware fields `/api/inventory/hardware/summary` counts, and their columns.
pub const SUMMARY_FIELDS: &[(&str, &str)] = &[
    ("os", "os_name"),
    ("os_build", "os_build"),
    ("manufacturer", "manufacturer"),
    ("model", "model"),
    ("memory", "memory_bytes"),
];

impl Db {
    /// Folds reports into the stored state, in order, in one transaction: each is compared with what is stored for
    /// its PC and kind, and only the difference is written (and logged). A report older than the stored one is
    /// ignored; one with the stored hash only moves the report's times. So a redelivered batch changes nothing.
    pub async fn apply_inventory(&self, reports: &[(NewInventory, u64)], now: DateTime<Utc>) -> Result<(), DbError> {
        let mut tx = self.begin_read_write().await?;
        for (report, _) in reports {
            self.apply_one(&mut tx, report, now).await?;
        }
        // A range of `inventory_changes_by_at`: nothing to scan when nothing is that old.
        sqlx::query("DELETE FROM inventory_changes WHERE at_ms < $1")
            .bind((now - CHANGE_RETENTION).timestamp_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn apply_one(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        report: &NewInventory,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        let kind = report.data.kind();
        let now_ms = now.timestamp_millis();
        // An agent's clock far ahead would pin its report as the newest forever.
        let at_ms = report.collected_at.timestamp_millis().min(now_ms);
        let stored = sqlx::query(
            "SELECT hash, collected_at_ms, data_json FROM inventory_reports WHERE pc_id = $1 AND kind = $2",
        )
        .bind(report.pc_id.as_str())
        .bind(kind)
        .fetch_optional(&mut **tx)
        .await?
        .map(|row| -> Result<Stored, sqlx::Error> {
            Ok(Stored { hash: row.try_get(0)?, collected_at_ms: row.try_get(1)?, data_json: row.try_get(2)? })
        })
        .transpose()?;
        if let Some(stored) = &stored
            && stored.collected_at_ms > at_ms
        {
            tracing::debug!(pc_id = report.pc_id, kind, "older inventory report ignored");
            return Ok(());
        }
        let unchanged = stored.as_ref().is_some_and(|s| !s.hash.is_empty() && s.hash == report.hash);
        let mut data_json = None;
        let mut failed_sources = Vec::new();
        if !unchanged {
            let changes = match &report.data {
                InventoryData::Hardware(hw) => {
                    data_json = Some(serde_json::to_string(hw).unwrap_or_default());
                    self.store_hardware(tx, &report.pc_id, hw, at_ms).await?;
                    let old = stored.as_ref().and_then(|s| s.data_json.as_deref());
                    match old.map(serde_json::from_str::<Hardware>) {
                        Some(Ok(old)) => diff::hardware(&old, hw)
                            .into_iter()
                            .map(|c| NewChange {
                                change: "changed",
                                name: c.field,
                                source: String::new(),
                                item_id: String::new(),
                                old: c.old,
                                new: c.new,
                            })
                            .collect(),
                        _ => vec![first_report(KIND_HARDWARE, 1)],
                    }
                }
                InventoryData::Software(list) => {
                    failed_sources = list.failed_sources.clone();
                    self.store_software(tx, &report.pc_id, list, at_ms, stored.is_none()).await?
                }
                InventoryData::Status(status) => {
                    data_json = Some(serde_json::to_string(status).unwrap_or_default());
                    Vec::new()
                }
            };
            self.log_changes(tx, &report.pc_id, kind, at_ms, &changes, now_ms).await?;
        }
        // The stored record stays when the hash says it did not change.
        let keep_data = if unchanged { stored.as_ref().and_then(|s| s.data_json.clone()) } else { data_json };
        sqlx::query(
            "INSERT INTO inventory_reports (pc_id, kind, hash, collected_at_ms, received_at_ms, errors_json, dropped,
                failed_sources_json, data_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (pc_id, kind) DO UPDATE SET hash = excluded.hash, collected_at_ms = excluded.collected_at_ms,
                received_at_ms = excluded.received_at_ms, errors_json = excluded.errors_json,
                dropped = excluded.dropped, failed_sources_json = excluded.failed_sources_json,
                data_json = excluded.data_json",
        )
        .bind(report.pc_id.as_str())
        .bind(kind)
        .bind(strip_nul(&report.hash))
        .bind(at_ms)
        .bind(now_ms)
        .bind(serde_json::to_string(&report.errors).unwrap_or_else(|_| "[]".into()))
        .bind(clamp(report.dropped))
        .bind(serde_json::to_string(&failed_sources).unwrap_or_else(|_| "[]".into()))
        .bind(keep_data)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn store_hardware(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        pc: &str,
        hw: &Hardware,
        at_ms: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO inventory_hardware (pc_id, hostname, os_name, os_version, os_build, manufacturer, model, serial,
                cpu_model, cpu_cores, cpu_threads, memory_bytes, collected_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (pc_id) DO UPDATE SET hostname = excluded.hostname, os_name = excluded.os_name,
                os_version = excluded.os_version, os_build = excluded.os_build,
                manufacturer = excluded.manufacturer, model = excluded.model, serial = excluded.serial,
                cpu_model = excluded.cpu_model, cpu_cores = excluded.cpu_cores, cpu_threads = excluded.cpu_threads,
                memory_bytes = excluded.memory_bytes, collected_at_ms = excluded.collected_at_ms",
        )
        .bind(pc)
        .bind(hw.hostname.as_str())
        .bind(hw.os.name.as_str())
        .bind(hw.os.version.as_str())
        .bind(hw.os.build.as_str())
        .bind(hw.system.manufacturer.as_str())
        .bind(hw.system.model.as_str())
        .bind(hw.system.serial.as_str())
        .bind(hw.cpu.model.as_str())
        .bind(i64::from(hw.cpu.cores))
        .bind(i64::from(hw.cpu.threads))
        .bind(clamp(hw.memory.total_bytes))
        .bind(at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Moves the PC's rows to `list`: inserts, deletes and updates only what differs, moves the titles' counts with
    /// them, and returns the changes to log (one `first_report` entry for a PC's first list, not one per item).
    /// Items of a source the agent could not read this time, or of a scope it could not look at (a signed-out
    /// Windows user's), are left as they are.
    async fn store_software(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        pc: &str,
        list: &SoftwareList,
        at_ms: i64,
        first: bool,
    ) -> Result<Vec<NewChange>, DbError> {
        let rows = sqlx::query(&format!("SELECT {SOFTWARE_COLUMNS} FROM inventory_software WHERE pc_id = $1"))
            .bind(pc)
            .fetch_all(&mut **tx)
            .await?;
        // What the agent could not look at this time is left as it is: neither removed nor compared.
        let seen = |s: &Software| !list.failed_sources.contains(&s.source) && !list.unread_scopes.contains(&s.scope);
        let mut old: Vec<Software> = rows.iter().map(software_item).collect::<Result<_, _>>()?;
        old.retain(seen);
        old.sort();
        let new: Vec<Software> = list.items.iter().filter(|s| seen(s)).cloned().collect();

        let mut titles = TitleMoves::default();
        let mut inserts: Vec<&Software> = Vec::new();
        let mut changes = Vec::new();
        for change in diff::software(&old, &new) {
            match change {
                SoftwareChange::Installed(item) => {
                    titles.add(item, 1);
                    inserts.push(item);
                    changes.push(NewChange::software("installed", item, None, Some(&item.version)));
                }
                SoftwareChange::Removed(item) => {
                    titles.add(item, -1);
                    self.delete_software(tx, pc, item).await?;
                    changes.push(NewChange::software("removed", item, Some(&item.version), None));
                }
                SoftwareChange::VersionChanged { old, new } => {
                    titles.add(old, -1);
                    titles.add(new, 1);
                    self.delete_software(tx, pc, old).await?;
                    inserts.push(new);
                    changes.push(NewChange::software("version_changed", new, Some(&old.version), Some(&new.version)));
                }
                SoftwareChange::Updated { old, new } => {
                    titles.add(old, -1);
                    titles.add(new, 1);
                    // Same version: it keeps the time it was first seen at it.
                    let since: i64 = sqlx::query_scalar(
                        "DELETE FROM inventory_software WHERE pc_id = $1 AND source = $2 AND item_id = $3
                         RETURNING since_ms",
                    )
                    .bind(pc)
                    .bind(old.source.as_str())
                    .bind(old.id.as_str())
                    .fetch_one(&mut **tx)
                    .await?;
                    self.insert_software(tx, pc, &[new], since).await?;
                }
            }
        }
        self.insert_software(tx, pc, &inserts, at_ms).await?;
        self.move_titles(tx, titles).await?;
        if first {
            return Ok(vec![first_report(KIND_SOFTWARE, list.items.len())]);
        }
        Ok(changes)
    }

    async fn delete_software(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        pc: &str,
        item: &Software,
    ) -> Result<(), DbError> {
        sqlx::query("DELETE FROM inventory_software WHERE pc_id = $1 AND source = $2 AND item_id = $3")
            .bind(pc)
            .bind(item.source.as_str())
            .bind(item.id.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Many rows per statement: 12 parameters x 80 rows stays under SQLite's oldest limit of 999.
    async fn insert_software(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        pc: &str,
        items: &[&Software],
        since_ms: i64,
    ) -> Result<(), DbError> {
        for chunk in items.chunks(80) {
            let sql = format!(
                "INSERT INTO inventory_software (pc_id, source, item_id, name, name_key, version, publisher,
                    install_date, location, arch, scope, since_ms) VALUES {}
                 ON CONFLICT (pc_id, source, item_id) DO NOTHING",
                self.dialect.rows(chunk.len(), 12)
            );
            let mut query = sqlx::query(&sql);
            for item in chunk {
                query = query
                    .bind(pc)
                    .bind(item.source.as_str())
                    .bind(item.id.as_str())
                    .bind(item.name.as_str())
                    .bind(name_key(&item.name))
                    .bind(item.version.as_str())
                    .bind(item.publisher.as_str())
                    .bind(item.install_date.as_str())
                    .bind(item.location.as_str())
                    .bind(item.arch.as_str())
                    .bind(item.scope.as_str())
                    .bind(since_ms);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn move_titles(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, moves: TitleMoves) -> Result<(), DbError> {
        let moves: Vec<_> = moves.0.into_iter().filter(|(_, (_, n))| *n != 0).collect();
        for chunk in moves.chunks(200) {
            let sql = format!(
                "INSERT INTO software_titles (name_key, version, name, installs) VALUES {}
                 ON CONFLICT (name_key, version) DO UPDATE SET installs = software_titles.installs + excluded.installs",
                self.dialect.rows(chunk.len(), 4)
            );
            let mut query = sqlx::query(&sql);
            for ((key, version), (name, n)) in chunk {
                query = query.bind(key.as_str()).bind(version.as_str()).bind(name.as_str()).bind(*n);
            }
            query.execute(&mut **tx).await?;
        }
        // A (title, version) nobody has any more goes.
        for ((key, version), (_, n)) in &moves {
            if *n < 0 {
                sqlx::query("DELETE FROM software_titles WHERE name_key = $1 AND version = $2 AND installs <= 0")
                    .bind(key.as_str())
                    .bind(version.as_str())
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Ok(())
    }

    async fn log_changes(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        pc: &str,
        kind: &str,
        at_ms: i64,
        changes: &[NewChange],
        now_ms: i64,
    ) -> Result<(), DbError> {
        let numbered: Vec<(usize, &NewChange)> = changes.iter().enumerate().collect();
        // 12 parameters x 80 rows.
        for chunk in numbered.chunks(80) {
            let sql = format!(
                "INSERT INTO inventory_changes (pc_id, kind, at_ms, n, change, name, name_key, source, item_id,
                    old_value, new_value, recorded_at_ms) VALUES {}
                 ON CONFLICT (pc_id, kind, at_ms, n) DO NOTHING",
                self.dialect.rows(chunk.len(), 12)
            );
            let mut query = sqlx::query(&sql);
            for (n, change) in chunk {
                query = query
                    .bind(pc)
                    .bind(kind)
                    .bind(at_ms)
                    .bind(*n as i64)
                    .bind(change.change)
                    .bind(change.name.as_str())
                    .bind(name_key(&change.name))
                    .bind(change.source.as_str())
                    .bind(change.item_id.as_str())
                    .bind(change.old.as_deref())
                    .bind(change.new.as_deref());
                query = query.bind(now_ms);
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Everything stored about one PC's inventory; `None` when it never reported any.
    pub async fn agent_inventory(&self, pc: &str) -> Result<Option<kanade_shared::api::AgentInventory>, DbError> {
        let reports = sqlx::query(
            "SELECT kind, collected_at_ms, received_at_ms, errors_json, dropped, failed_sources_json, data_json
             FROM inventory_reports WHERE pc_id = $1 ORDER BY kind",
        )
        .bind(pc)
        .fetch_all(&self.pool)
        .await?;
        if reports.is_empty() {
            return Ok(None);
        }
        let mut out = kanade_shared::api::AgentInventory {
            pc_id: pc.to_owned(),
            reports: Vec::new(),
            hardware: None,
            status: None,
            software: Vec::new(),
        };
        for row in &reports {
            let kind: String = row.try_get(0)?;
            let errors: String = row.try_get(3)?;
            let failed: String = row.try_get(5)?;
            let data: Option<String> = row.try_get(6)?;
            match kind.as_str() {
                KIND_HARDWARE => out.hardware = data.and_then(|d| serde_json::from_str(&d).ok()),
                KIND_STATUS => out.status = data.and_then(|d| serde_json::from_str(&d).ok()),
                _ => {}
            }
            out.reports.push(InventoryReportInfo {
                kind,
                collected_at: millis(row.try_get(1)?),
                received_at: millis(row.try_get(2)?),
                errors: serde_json::from_str(&errors).unwrap_or_default(),
                dropped: u64::try_from(row.try_get::<i64, _>(4)?).unwrap_or_default(),
                failed_sources: serde_json::from_str(&failed).unwrap_or_default(),
            });
        }
        let rows = sqlx::query(&format!(
            "SELECT {SOFTWARE_COLUMNS}, pc_id, since_ms FROM inventory_software WHERE pc_id = $1
             ORDER BY name_key, source, item_id"
        ))
        .bind(pc)
        .fetch_all(&self.pool)
        .await?;
        out.software = rows.iter().map(software_row).collect::<Result<_, _>>()?;
        Ok(Some(out))
    }

    /// One page of the titles matching every word of `words`, by name, with their installs on the PCs in `scope`.
    /// The fleet's are the running counts (`software_titles`); a group scope's are counted from the PCs' own
    /// software (the title's name then is the one of its installs that sorts first).
    pub async fn list_titles(
        &self,
        words: &[String],
        after: Option<&str>,
        limit: usize,
        scope: &GroupScope,
    ) -> Result<super::Paged<TitleRow, String>, DbError> {
        let table = if scope.is_fleet() { "software_titles" } else { "inventory_software" };
        // The page's titles first (one row per title), then their versions.
        let mut sql = format!("SELECT DISTINCT name_key FROM {table} WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        if let Some(after) = after {
            binds.push(Bind::Text(after.to_owned()));
            sql.push_str(&format!(" AND name_key > ${}", binds.len()));
        }
        for word in words {
            binds.push(Bind::Text(format!("%{}%", super::like_escape(&name_key(word)))));
            sql.push_str(&format!(" AND name_key LIKE ${} ESCAPE '\\'", binds.len()));
        }
        and_in_scope(&mut sql, &mut binds, "pc_id", scope);
        sql.push_str(&format!(" ORDER BY name_key LIMIT {}", limit + 1));
        let keys: Vec<String> = bind_all(sqlx::query(&sql), binds)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        let page = super::Paged::of(keys, limit as u32, Clone::clone);
        let (Some(first), Some(last)) = (page.items.first(), page.items.last()) else {
            return Ok(super::Paged { items: Vec::new(), next: None });
        };
        // Every version of the page's titles in one range read (one query, not one per title: on PostgreSQL a
        // round trip each made a page of 100 titles take ~60 ms).
        let mut binds = vec![Bind::Text(first.clone()), Bind::Text(last.clone())];
        let sql = if scope.is_fleet() {
            "SELECT name_key, version, name, installs FROM software_titles WHERE name_key >= $1 AND name_key <= $2"
                .to_owned()
        } else {
            let mut sql = "SELECT name_key, version, MIN(name) AS name, COUNT(*) AS installs FROM inventory_software
                 WHERE name_key >= $1 AND name_key <= $2"
                .to_owned();
            and_in_scope(&mut sql, &mut binds, "pc_id", scope);
            sql.push_str(" GROUP BY name_key, version");
            sql
        };
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        let mut by_key: BTreeMap<String, TitleRow> = BTreeMap::new();
        for row in &rows {
            let key: String = row.try_get(0)?;
            let title = by_key.entry(key).or_insert_with(|| TitleRow {
                name: String::new(),
                installs: 0,
                versions: Vec::new(),
            });
            if title.name.is_empty() {
                title.name = row.try_get(2)?;
            }
            let installs: i64 = row.try_get(3)?;
            title.installs += installs;
            title.versions.push(TitleVersion { version: row.try_get(1)?, installs });
        }
        // The range also holds titles the search left out; the page is the keys it found, in order.
        let items: Vec<TitleRow> = page
            .items
            .iter()
            .filter_map(|key| by_key.remove(key))
            .map(|mut title| {
                title.versions.sort_by(|a, b| version::compare(Scheme::Generic, &b.version, &a.version));
                title
            })
            .collect();
        Ok(super::Paged { items, next: page.next })
    }

    /// One page of the installs matching `filter` on the PCs in `scope`, by (pc, source, id). The version range is
    /// applied here, by the item's source's rules, to the title's rows in key order, until the page is full.
    pub async fn list_software(
        &self,
        filter: &SoftwareFilter,
        scope: &GroupScope,
    ) -> Result<super::Paged<SoftwareRow, (String, String, String)>, DbError> {
        // Without a version range a page is the next `limit + 1` rows; with one, the title's rows are read in
        // chunks and filtered here until the page is full or they run out.
        let chunk = if filter.version.is_some() { 2_000 } else { filter.limit + 1 };
        let mut out: Vec<SoftwareRow> = Vec::new();
        let mut after = filter.after.clone();
        loop {
            let mut binds = vec![Bind::Text(filter.name.value().to_owned())];
            let mut sql = format!(
                "SELECT {SOFTWARE_COLUMNS}, pc_id, since_ms FROM inventory_software WHERE {}",
                filter.name.condition("name_key", 1)
            );
            for (column, value) in [("source", &filter.source), ("pc_id", &filter.pc_id)] {
                if let Some(value) = value {
                    binds.push(Bind::Text(value.clone()));
                    sql.push_str(&format!(" AND {column} = ${}", binds.len()));
                }
            }
            if let Some((pc, source, id)) = &after {
                binds.extend([Bind::Text(pc.clone()), Bind::Text(source.clone()), Bind::Text(id.clone())]);
                let n = binds.len();
                sql.push_str(&format!(" AND (pc_id, source, item_id) > (${}, ${}, ${n})", n - 2, n - 1));
            }
            and_in_scope(&mut sql, &mut binds, "pc_id", scope);
            sql.push_str(&format!(" ORDER BY pc_id, source, item_id LIMIT {chunk}"));
            let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
            let read = rows.len();
            for row in &rows {
                let item = software_row(row)?;
                after = Some((item.pc_id.clone(), item.source.clone(), item.id.clone()));
                let wanted = filter
                    .version
                    .as_ref()
                    .is_none_or(|range| range.matches(Scheme::of_source(&item.source), &item.version));
                if wanted {
                    out.push(item);
                    if out.len() > filter.limit {
                        break;
                    }
                }
            }
            if out.len() > filter.limit || read < chunk {
                break;
            }
        }
        Ok(super::Paged::of(out, filter.limit as u32, |r| (r.pc_id.clone(), r.source.clone(), r.id.clone())))
    }

    /// One page of the change log of the PCs in `scope`, newest first.
    pub async fn list_changes(
        &self,
        filter: &ChangeFilter,
        scope: &GroupScope,
    ) -> Result<super::Paged<ChangeRow, (i64, String, String, i64)>, DbError> {
        let mut binds = vec![Bind::Int(filter.since_ms), Bind::Int(filter.until_ms)];
        let mut sql = "SELECT pc_id, kind, at_ms, n, change, name, source, item_id, old_value, new_value
                       FROM inventory_changes WHERE at_ms >= $1 AND at_ms < $2"
            .to_owned();
        for (column, value) in [("pc_id", &filter.pc_id), ("kind", &filter.kind), ("change", &filter.change)] {
            if let Some(value) = value {
                binds.push(Bind::Text(value.clone()));
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        if let Some(name) = &filter.name {
            binds.push(Bind::Text(name.value().to_owned()));
            sql.push_str(&format!(" AND {}", name.condition("name_key", binds.len())));
        }
        if let Some((at, pc, kind, n)) = &filter.before {
            binds.extend([Bind::Int(*at), Bind::Text(pc.clone()), Bind::Text(kind.clone()), Bind::Int(*n)]);
            let last = binds.len();
            sql.push_str(&format!(
                " AND (at_ms, pc_id, kind, n) < (${}, ${}, ${}, ${last})",
                last - 3,
                last - 2,
                last - 1
            ));
        }
        and_in_scope(&mut sql, &mut binds, "pc_id", scope);
        sql.push_str(&format!(" ORDER BY at_ms DESC, pc_id DESC, kind DESC, n DESC LIMIT {}", filter.limit + 1));
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        let rows: Vec<(ChangeRow, i64)> = rows.iter().map(change_row).collect::<Result<_, _>>()?;
        let page = super::Paged::of(rows, filter.limit as u32, |(row, n)| {
            (row.at.timestamp_millis(), row.pc_id.clone(), row.kind.clone(), *n)
        });
        Ok(super::Paged { items: page.items.into_iter().map(|(row, _)| row).collect(), next: page.next })
    }

    /// One page of the hardware of the PCs in `scope` matching `filter`, by pc id.
    pub async fn list_hardware(
        &self,
        filter: &HardwareFilter,
        scope: &GroupScope,
    ) -> Result<super::Paged<HardwareRow, String>, DbError> {
        let mut sql = format!("SELECT {HARDWARE_COLUMNS} FROM inventory_hardware WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        for (column, value) in [
            ("os_name", &filter.os),
            ("os_build", &filter.os_build),
            ("manufacturer", &filter.manufacturer),
            ("model", &filter.model),
            ("pc_id >", &filter.after),
        ] {
            if let Some(value) = value {
                binds.push(Bind::Text(value.clone()));
                let op = if column.contains(' ') { "" } else { " =" };
                sql.push_str(&format!(" AND {column}{op} ${}", binds.len()));
            }
        }
        for (condition, value) in [("memory_bytes <", filter.memory_below), ("memory_bytes >=", filter.memory_at_least)]
        {
            if let Some(value) = value {
                binds.push(Bind::Int(value));
                sql.push_str(&format!(" AND {condition} ${}", binds.len()));
            }
        }
        and_in_scope(&mut sql, &mut binds, "pc_id", scope);
        sql.push_str(&format!(" ORDER BY pc_id LIMIT {}", filter.limit + 1));
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        let rows: Vec<HardwareRow> = rows.iter().map(hardware_row).collect::<Result<_, _>>()?;
        Ok(super::Paged::of(rows, filter.limit as u32, |r| r.pc_id.clone()))
    }

    /// How many PCs in `scope` have each value of one hardware column (one of [`SUMMARY_FIELDS`]), most first.
    pub async fn hardware_summary(
        &self,
        column: &'static str,
        scope: &GroupScope,
    ) -> Result<Vec<(String, i64)>, DbError> {
        let mut sql = format!("SELECT CAST({column} AS TEXT), COUNT(*) AS pcs FROM inventory_hardware WHERE 1 = 1");
        let mut binds = Vec::new();
        and_in_scope(&mut sql, &mut binds, "pc_id", scope);
        sql.push_str(&format!(" GROUP BY {column} ORDER BY pcs DESC, 1 LIMIT 1000"));
        let rows = bind_all(sqlx::query(&sql), binds).fetch_all(&self.pool).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
    }
}

fn change_row(row: &AnyRow) -> Result<(ChangeRow, i64), sqlx::Error> {
    let row_out = ChangeRow {
        pc_id: row.try_get(0)?,
        kind: row.try_get(1)?,
        at: millis(row.try_get(2)?),
        change: row.try_get(4)?,
        name: row.try_get(5)?,
        source: row.try_get(6)?,
        item_id: row.try_get(7)?,
        old: row.try_get(8)?,
        new: row.try_get(9)?,
    };
    Ok((row_out, row.try_get(3)?))
}

fn first_report(kind: &str, items: usize) -> NewChange {
    NewChange {
        change: "first_report",
        name: kind.to_owned(),
        source: String::new(),
        item_id: String::new(),
        old: None,
        new: Some(if kind == KIND_SOFTWARE { format!("{items} items") } else { String::new() }),
    }
}

const SOFTWARE_COLUMNS: &str = "source, item_id, name, version, publisher, install_date, location, arch, scope";

fn software_item(row: &AnyRow) -> Result<Software, sqlx::Error> {
    Ok(Software {
        source: row.try_get(0)?,
        id: row.try_get(1)?,
        name: row.try_get(2)?,
        version: row.try_get(3)?,
        publisher: row.try_get(4)?,
        install_date: row.try_get(5)?,
        location: row.try_get(6)?,
        arch: row.try_get(7)?,
        scope: row.try_get(8)?,
    })
}

/// A row read with `SOFTWARE_COLUMNS, pc_id, since_ms`.
fn software_row(row: &AnyRow) -> Result<SoftwareRow, sqlx::Error> {
    let item = software_item(row)?;
    Ok(SoftwareRow {
        pc_id: row.try_get(9)?,
        since: millis(row.try_get(10)?),
        source: item.source,
        id: item.id,
        name: item.name,
        version: item.version,
        publisher: item.publisher,
        install_date: item.install_date,
        location: item.location,
        arch: item.arch,
        scope: item.scope,
    })
}

const HARDWARE_COLUMNS: &str = "pc_id, hostname, os_name, os_version, os_build, manufacturer, model, serial, cpu_model,
    cpu_cores, cpu_threads, memory_bytes, collected_at_ms";

fn hardware_row(row: &AnyRow) -> Result<HardwareRow, sqlx::Error> {
    Ok(HardwareRow {
        pc_id: row.try_get(0)?,
        hostname: row.try_get(1)?,
        os_name: row.try_get(2)?,
        os_version: row.try_get(3)?,
        os_build: row.try_get(4)?,
        manufacturer: row.try_get(5)?,
        model: row.try_get(6)?,
        serial: row.try_get(7)?,
        cpu_model: row.try_get(8)?,
        cpu_cores: row.try_get(9)?,
        cpu_threads: row.try_get(10)?,
        memory_bytes: row.try_get(11)?,
        collected_at: millis(row.try_get(12)?),
    })
}
