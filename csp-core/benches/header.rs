//! Header parse + emit, both versions, and a frame through the packet buffer.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use csp_core::{Addr, Flags, Header, Packet, Port, Prio, Version};

fn header() -> Header {
    Header {
        prio: Prio::Normal,
        src: Addr::new(1).unwrap(),
        dst: Addr::new(2).unwrap(),
        dport: Port::new(10).unwrap(),
        sport: Port::new(20).unwrap(),
        flags: Flags::CRC32,
    }
}

/// The yardstick every core number in docs/PERFORMANCE.md is divided by:
/// copying a 200-byte frame, the least any packet path must do.
fn baseline(c: &mut Criterion) {
    let src = [0x55u8; 200];
    let mut dst = [0u8; 200];
    c.bench_function("baseline/memcpy_200B", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    for version in [Version::V1, Version::V2] {
        let (bytes, n) = header().to_bytes(version).unwrap();
        g.bench_function(format!("parse_emit_{version:?}"), |b| {
            let mut out = [0u8; 6];
            b.iter(|| {
                let h = Header::parse(black_box(&bytes[..n]), version).unwrap();
                h.emit(&mut out, version).unwrap();
                black_box(out)
            })
        });
    }
    let mut frame = [0u8; 206];
    let len = Packet::<262>::with_data(header(), &[0x55; 200])
        .unwrap()
        .frame(Version::V2)
        .map(|f| {
            frame[..f.len()].copy_from_slice(f);
            f.len()
        })
        .unwrap();
    g.bench_function("packet_from_frame_200B_v2", |b| {
        b.iter(|| {
            let mut p = Packet::<262>::from_frame(black_box(&frame[..len]), Version::V2).unwrap();
            black_box(p.frame(Version::V2).unwrap().len())
        })
    });
    g.finish();
}

criterion_group!(benches, baseline, bench);
criterion_main!(benches);
