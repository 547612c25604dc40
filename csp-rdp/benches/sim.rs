//! Segments per second (wall clock) through the simulated link with no loss:
//! the cost of the state machine plus the simulator, per segment.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use csp_rdp::sim::{LinkConfig, Pair};
use csp_rdp::Options;
use std::hint::black_box;

const BYTES: usize = 100_000;

/// One transfer of `BYTES` client to server, closed at the end; returns
/// the segments both ends wrote.
fn transfer(window: u16) -> u64 {
    let opts = Options {
        window,
        ..Options::default()
    };
    let mut p: Pair<32, 200> = Pair::new(1, LinkConfig::clean(), opts);
    p.client.queue(&vec![0x5a; BYTES]);
    p.client.close_when_done = true;
    assert!(p.drive(10_000_000));
    assert_eq!(p.server.received.len(), BYTES);
    p.segments
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rdp_sim_clean");
    for window in [4u16, 32] {
        g.throughput(Throughput::Elements(transfer(window)));
        g.bench_function(format!("window_{window}_100kB"), |b| {
            b.iter(|| black_box(transfer(black_box(window))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
