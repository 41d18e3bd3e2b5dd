//! The rule for a rollout's waves, in one place. A job manifest's `rollout.waves`, the waves of `POST /api/exec`
//! and `POST /api/jobs/{id}/preview`, and each `kanade exec --wave` are all checked by [`check`] (or, for one wave
//! on its own, [`check_one`]); the dashboard's dialog shows what the backend's preview says of them.

use std::time::Duration;

use crate::GroupName;
use crate::manifest::{MAX_SPREAD, Wave};

/// The most waves one rollout may have.
pub const MAX_WAVES: usize = 50;

/// The failure percentage of a wave that gives none: 100, so it never halts the rollout.
pub const DEFAULT_MAX_FAILURE_PCT: f64 = 100.0;

/// One wave as an operator gives it, before it is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveSpec {
    pub group: GroupName,
    /// How long after the previous wave this one is sent (none: at once).
    pub delay: Option<Duration>,
    /// Halt the rollout when more than this percentage of the wave's targets fail (none: never).
    pub max_failure_pct: Option<f64>,
}

/// Why waves cannot be a rollout. [`WaveError::field`] says where, relative to the list of waves.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WaveError {
    #[error("is empty")]
    Empty,
    #[error("{0} waves given; the limit is {MAX_WAVES}")]
    TooMany(usize),
    #[error("group `{group}` has a wave already")]
    Duplicate { index: usize, group: GroupName },
    /// The wave's group is not among those the rollout targets; the caller words it for its own fields.
    #[error("group `{group}` is not among the groups targeted")]
    NotTargeted { index: usize, group: GroupName },
    #[error("is longer than {}", humantime::format_duration(MAX_SPREAD))]
    DelayTooLong { index: usize },
    #[error("must be between 0 and 100")]
    FailurePct { index: usize },
}

impl WaveError {
    /// Where the problem is, relative to the list: `""` (the list itself), `"[1]"`, `"[1].delay"`,
    /// `"[1].max_failure_pct"`.
    pub fn field(&self) -> String {
        match self {
            Self::Empty | Self::TooMany(_) => String::new(),
            Self::Duplicate { index, .. } | Self::NotTargeted { index, .. } => format!("[{index}]"),
            Self::DelayTooLong { index } => format!("[{index}].delay"),
            Self::FailurePct { index } => format!("[{index}].max_failure_pct"),
        }
    }
}

/// Checks one wave on its own (`index` is its place in the list): its delay and failure percentage, with their
/// defaults filled in.
pub fn check_one(index: usize, spec: WaveSpec) -> Result<Wave, WaveError> {
    let delay = spec.delay.unwrap_or_default();
    if delay > MAX_SPREAD {
        return Err(WaveError::DelayTooLong { index });
    }
    let max_failure_pct = spec.max_failure_pct.unwrap_or(DEFAULT_MAX_FAILURE_PCT);
    // `contains` is false for NaN too.
    if !(0.0..=100.0).contains(&max_failure_pct) {
        return Err(WaveError::FailurePct { index });
    }
    Ok(Wave { group: spec.group, delay, max_failure_pct })
}

/// Checks a rollout: at least one wave and at most [`MAX_WAVES`], one wave per group, every group among `within`
/// (`None`: any group, as when the rollout targets every agent or its waves' groups are its targets), and each
/// wave as [`check_one`] checks it. The first problem, in the order of the list, is the error.
pub fn check(specs: Vec<WaveSpec>, within: Option<&[GroupName]>) -> Result<Vec<Wave>, WaveError> {
    if specs.is_empty() {
        return Err(WaveError::Empty);
    }
    if specs.len() > MAX_WAVES {
        return Err(WaveError::TooMany(specs.len()));
    }
    let mut waves: Vec<Wave> = Vec::with_capacity(specs.len());
    for (index, spec) in specs.into_iter().enumerate() {
        if waves.iter().any(|w| w.group == spec.group) {
            return Err(WaveError::Duplicate { index, group: spec.group });
        }
        if within.is_some_and(|groups| !groups.contains(&spec.group)) {
            return Err(WaveError::NotTargeted { index, group: spec.group });
        }
        waves.push(check_one(index, spec)?);
    }
    Ok(waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(group: &str) -> WaveSpec {
        WaveSpec { group: GroupName::new(group).unwrap(), delay: None, max_failure_pct: None }
    }

    #[test]
    fn defaults_are_at_once_and_never_halting() {
        let waves = check(vec![spec("canary"), spec("rest")], None).unwrap();
        assert_eq!(waves.len(), 2);
        assert_eq!(waves[1].delay, Duration::ZERO);
        assert_eq!(waves[1].max_failure_pct, DEFAULT_MAX_FAILURE_PCT);
    }

    #[test]
    fn each_problem_names_its_wave_and_field() {
        let group = |g: &str| GroupName::new(g).unwrap();
        // (the waves, the groups they must lie in, the error, the field it names)
        type Case = (Vec<WaveSpec>, Option<Vec<GroupName>>, WaveError, &'static str);
        let cases: Vec<Case> = vec![
            (vec![], None, WaveError::Empty, ""),
            ((0..51).map(|i| spec(&format!("g{i}"))).collect(), None, WaveError::TooMany(51), ""),
            (vec![spec("a"), spec("a")], None, WaveError::Duplicate { index: 1, group: group("a") }, "[1]"),
            (
                vec![spec("a"), spec("b")],
                Some(vec![group("a")]),
                WaveError::NotTargeted { index: 1, group: group("b") },
                "[1]",
            ),
            (
                vec![WaveSpec { delay: Some(MAX_SPREAD + Duration::from_secs(1)), ..spec("a") }],
                None,
                WaveError::DelayTooLong { index: 0 },
                "[0].delay",
            ),
            (
                vec![WaveSpec { max_failure_pct: Some(100.5), ..spec("a") }],
                None,
                WaveError::FailurePct { index: 0 },
                "[0].max_failure_pct",
            ),
            (
                vec![WaveSpec { max_failure_pct: Some(-1.0), ..spec("a") }],
                None,
                WaveError::FailurePct { index: 0 },
                "[0].max_failure_pct",
            ),
            (
                vec![WaveSpec { max_failure_pct: Some(f64::NAN), ..spec("a") }],
                None,
                WaveError::FailurePct { index: 0 },
                "[0].max_failure_pct",
            ),
        ];
        for (specs, within, expected, field) in cases {
            let err = check(specs, within.as_deref()).unwrap_err();
            assert_eq!(err, expected);
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn the_limits_themselves_are_allowed() {
        let edge = WaveSpec { delay: Some(MAX_SPREAD), max_failure_pct: Some(0.0), ..spec("a") };
        let most: Vec<WaveSpec> = (0..MAX_WAVES).map(|i| spec(&format!("g{i}"))).collect();
        assert!(check(vec![edge], Some(&[GroupName::new("a").unwrap()])).is_ok());
        assert_eq!(check(most, None).unwrap().len(), MAX_WAVES);
    }
}
