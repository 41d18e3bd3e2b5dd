//! The last two minutes of host samples an agent keeps in memory, so a live view opens with its charts drawn.

use std::collections::VecDeque;

use kanade_shared::perf::{HISTORY_SPAN, HostSample, MAX_HISTORY};

#[derive(Debug, Default)]
pub struct History {
    samples: VecDeque<HostSample>,
}

impl History {
    /// Adds the newest sample and drops what is older than [`HISTORY_SPAN`] before it, or beyond [`MAX_HISTORY`].
    pub fn push(&mut self, sample: HostSample) {
        let oldest = sample.at - chrono::Duration::from_std(HISTORY_SPAN).unwrap_or_default();
        self.samples.push_back(sample);
        while self.samples.front().is_some_and(|s| s.at < oldest) || self.samples.len() > MAX_HISTORY {
            self.samples.pop_front();
        }
    }

    /// Oldest first.
    pub fn samples(&self) -> Vec<HostSample> {
        self.samples.iter().cloned().collect()
    }

    pub fn latest(&self) -> Option<&HostSample> {
        self.samples.back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::PcId;

    fn at(secs: i64) -> HostSample {
        let mut sample = HostSample::empty(PcId::new("pc-1").unwrap());
        sample.at = chrono::DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap();
        sample
    }

    #[test]
    fn two_minutes_are_kept() {
        let mut history = History::default();
        for secs in 0..=200 {
            history.push(at(secs));
        }
        let kept = history.samples();
        assert_eq!(kept.len(), 121, "from 80 s to 200 s");
        assert_eq!(kept[0].at, at(80).at);
        assert_eq!(history.latest().map(|s| s.at), Some(at(200).at));
    }

    #[test]
    fn a_fast_interval_keeps_at_most_the_cap() {
        let mut history = History::default();
        for n in 0..2000 {
            history.push(at(n / 10));
        }
        assert_eq!(history.samples().len(), MAX_HISTORY);
    }
}
