//! `kanade-bench signatures`: what a signed command costs the one who signs it and each agent that checks it, per
//! message, against decoding the same command's JSON (which every agent does anyway) measured in the same run. The
//! fan-out benchmark's simulator makes all 10,000 agents' checks on the two cores it shares with the broker and the
//! backend; a real PC makes its own one (BENCHMARKS.md, "Signed commands").

use std::time::{Duration, Instant};

use chrono::Utc;
use kanade_shared::access::{GroupScope, Role};
use kanade_shared::authority::{Act, Agent, Signature, SigningKey, TrustList, TrustedKey, authorise};
use kanade_shared::wire::Command;
use kanade_shared::{Actor, ExecId, GroupName, JobId, PcId, subject};

#[derive(Debug, clap::Args)]
pub struct SignaturesArgs {
    /// Messages per measured run.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Measured runs (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Keys in the trust list the agent checks against (the signer's is the last).
    #[arg(long, default_value_t = 100)]
    pub keys: usize,
}

/// Median time per message of `runs` runs of `work` over `messages` messages, in microseconds.
fn per_message(args: &SignaturesArgs, mut work: impl FnMut(usize)) -> f64 {
    let mut runs: Vec<Duration> = (0..=args.runs)
        .map(|_| {
            let started = Instant::now();
            for i in 0..args.messages {
                work(i);
            }
            started.elapsed()
        })
        .skip(1)
        .collect();
    runs.sort();
    runs[runs.len() / 2].as_secs_f64() * 1e6 / args.messages as f64
}

pub fn main(args: SignaturesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.messages > 0 && args.runs > 0 && args.keys > 0, "--messages, --runs and --keys must be > 0");
    let job = JobId::new("bench-signatures")?;
    let command = crate::fanout::bench_command(&ExecId::generate(), &job);
    let payload = serde_json::to_vec(&command)?;
    let subject_name = subject::command(&subject::Target::All, &job);
    let signer = SigningKey::generate();
    let now = Utc::now();
    let mut keys: Vec<TrustedKey> = (1..args.keys)
        .map(|i| {
            let name = Actor::new(format!("operator-{i}"))?;
            Ok(TrustedKey::new(name, SigningKey::generate().public_key(), Role::Operator, GroupScope::Fleet, now))
        })
        .collect::<anyhow::Result<_>>()?;
    keys.push(TrustedKey::new(Actor::new("backend")?, signer.public_key(), Role::Operator, GroupScope::Fleet, now));
    let trust = TrustList::first(keys, now);
    let pc = PcId::new("bench-pc")?;
    let groups: Vec<GroupName> = Vec::new();
    let agent = Agent { pc: &pc, groups: &groups };
    let lifetime = Duration::from_secs(3600);
    let headers: Vec<(String, String)> = Signature::sign(&signer, &subject_name, &payload, now, lifetime)
        .headers()
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();

    let decode_us = per_message(&args, |_| {
        let decoded: Command = serde_json::from_slice(&payload).expect("the command decodes");
        std::hint::black_box(decoded);
    });
    let sign_us = per_message(&args, |_| {
        std::hint::black_box(Signature::sign(&signer, &subject_name, &payload, now, lifetime));
    });
    let check_us = per_message(&args, |_| {
        let signature =
            Signature::from_headers(|name| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()));
        let approved = authorise(Act::Command, &subject_name, &payload, signature, agent, Some(&trust), Utc::now());
        assert!(approved.is_ok(), "the bench's own command is refused: {approved:?}");
    });

    println!(
        "{} messages per run, median of {} runs; command {} bytes; trust list of {} keys",
        args.messages,
        args.runs,
        payload.len(),
        args.keys
    );
    println!(
        "\n| per message | decode the command's JSON (reference) | sign (CLI, backend) | read + check (agent) | check / decode |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| microseconds | {decode_us:.1} | {sign_us:.1} | {check_us:.1} | {:.1}x |",
        check_us / decode_us.max(f64::MIN_POSITIVE)
    );
    println!(
        "\n10,000 agents' checks of one broadcast, one after another: {:.0} ms of CPU (one each on a real fleet)",
        check_us * 10_000.0 / 1000.0
    );
    Ok(())
}
