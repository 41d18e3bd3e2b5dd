//! `kanade-bench output`: what decoding a script's output costs the agent per MiB (`kanade_agent::output_text`:
//! UTF-8 until a read that is not, then the OEM code page), against `String::from_utf8_lossy` over the same bytes
//! (what the agent did before), measured in the same run. The output is read in the executor's 8 KiB reads.

use std::time::{Duration, Instant};

use kanade_agent::output_text::OutputDecoder;

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// MiB of output per measured run.
    #[arg(long, default_value_t = 64)]
    pub mib: usize,
    /// Measured runs (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// The executor's read size (`executor::READ_CHUNK`).
const READ: usize = 16 * 1024;

/// Median time of `runs` runs of `work`, in milliseconds per MiB.
fn per_mib(args: &OutputArgs, mut work: impl FnMut() -> usize) -> f64 {
    let mut runs: Vec<Duration> = (0..=args.runs)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(work());
            started.elapsed()
        })
        .skip(1)
        .collect();
    runs.sort();
    runs[runs.len() / 2].as_secs_f64() * 1e3 / args.mib as f64
}

/// `text` repeated to `mib` MiB.
fn output(text: &[u8], mib: usize) -> Vec<u8> {
    text.iter().copied().cycle().take(mib * 1024 * 1024).collect()
}

pub fn main(args: OutputArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.mib > 0 && args.runs > 0, "--mib and --runs must be > 0");
    // A log-like line in UTF-8; the same in cp850 (Größe: 0xE1 0x9A... as DOS writes it) and in cp932.
    let utf8 =
        output("2026-12-06 12:00:00 copied C:\\Users\\größe\\ディスク\\file.txt (4096 bytes)\r\n".as_bytes(), args.mib);
    let cp850 = output(b"2026-12-06 12:00:00 copied C:\\Users\\gr\x94\xe1e\\file.txt (4096 bytes)\r\n", args.mib);
    let cp932 =
        output(b"2026-12-06 12:00:00 copied C:\\Users\\\x83f\x83B\x83X\x83N\\file.txt (4096 bytes)\r\n", args.mib);
    let decode = |bytes: &[u8], code_page: Option<u16>| {
        let mut decoder = OutputDecoder::new(code_page);
        let mut chars = 0;
        for read in bytes.chunks(READ) {
            chars += decoder.push(read).len();
        }
        chars + decoder.finish().len()
    };
    let reference = per_mib(&args, || String::from_utf8_lossy(&utf8).len());
    let rows = [
        ("UTF-8 output, whole (from_utf8_lossy: the reference)", reference),
        ("UTF-8 output through the decoder", per_mib(&args, || decode(&utf8, Some(850)))),
        ("cp850 output, decoded as cp850", per_mib(&args, || decode(&cp850, Some(850)))),
        ("cp932 output, decoded as cp932", per_mib(&args, || decode(&cp932, Some(932)))),
        ("cp850 output, no code page (lossy UTF-8, Linux)", per_mib(&args, || decode(&cp850, None))),
    ];
    println!("{:<55} {:>10} {:>10}", "output", "ms/MiB", "vs ref");
    for (name, ms) in rows {
        println!("{name:<55} {ms:>10.3} {:>9.1}x", ms / reference);
    }
    Ok(())
}
