//! Goodput through the simulated link at 0%, 5% and 20% loss (each way),
//! in simulated time, over several seeds; also the wall-clock segment rate.
//!
//! `cargo run --release -p csp-rdp --example sim_throughput`

use csp_rdp::sim::{End, LinkConfig, Pair};
use csp_rdp::time::Duration;
use csp_rdp::Options;
use std::time::Instant as Wall;

const BYTES: usize = 50_000;
const SEEDS: u64 = 20;

fn main() {
    println!(
        "{BYTES} bytes client->server, 200-byte segments, 10 ms one-way delay, {SEEDS} seeds each"
    );
    println!(
        "{:<28} {:>5} {:>12} {:>10} {:>9} {:>9} {:>12}",
        "options", "loss", "goodput B/s", "sim s", "segments", "failed", "wall seg/s"
    );
    let libcsp = Options::default();
    let ours = Options {
        window: 32,
        packet_timeout: Duration::from_millis(100),
        ack_timeout: Duration::from_millis(20),
        ack_delay_count: 4,
        ..Options::default()
    };
    // Unlimited rate: latency bound (window / RTT). 100 kB/s: a fast radio.
    for (name, opts, rate) in [
        ("libcsp defaults (w4, 1 s)", libcsp, 0),
        ("w32, 100 ms packet timeout", ours, 0),
        // The packet timeout must exceed the queueing delay of a full
        // window (32 x 205 B at 100 kB/s = 66 ms) plus the round trip.
        (
            "w32, 250 ms, 100 kB/s link",
            Options {
                packet_timeout: Duration::from_millis(250),
                ..ours
            },
            100_000,
        ),
    ] {
        for loss in [0.0, 0.05, 0.2] {
            let (mut sim_ms, mut segs, mut failed, mut delivered) = (0u64, 0u64, 0u64, 0usize);
            let wall = Wall::now();
            for seed in 0..SEEDS {
                let link = LinkConfig {
                    rate,
                    ..LinkConfig::lossy(loss)
                };
                let mut p: Pair<32, 200> = Pair::new(seed, link, opts);
                p.client.queue(&vec![0xa5; BYTES]);
                p.client.close_when_done = true;
                assert!(p.drive(50_000_000), "seed {seed} did not finish");
                if matches!(p.client.end, Some(End::Failed(_))) {
                    failed += 1;
                }
                delivered += p.server.received.len();
                // Time until the last byte was acknowledged is what a user
                // waits for; the close handshake after it is not counted.
                sim_ms += p.client.all_acked_at.unwrap_or(p.now).as_millis();
                segs += p.segments;
            }
            let secs = wall.elapsed().as_secs_f64();
            println!(
                "{:<28} {:>4.0}% {:>12.0} {:>10.2} {:>9} {:>9} {:>12.0}",
                name,
                loss * 100.0,
                delivered as f64 / (sim_ms as f64 / 1000.0),
                sim_ms as f64 / 1000.0 / SEEDS as f64,
                segs / SEEDS,
                failed,
                segs as f64 / secs
            );
        }
    }
}
