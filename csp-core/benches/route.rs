//! Route lookup in tables of 16 and 64 entries (hit near the end of the
//! longest-first order and the default route), and parsing a route string.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use csp_core::route::{IfaceId, RouteTable};
use csp_core::{Addr, Version};

/// `n` routes of mixed lengths plus a default route: host routes, /10s and
/// /6s spread over the 14-bit space, so a lookup passes many near-misses.
fn table<const N: usize>() -> RouteTable<N> {
    let mut t = RouteTable::<N>::new(Version::V2);
    t.set_default(IfaceId(0), None).unwrap();
    let mut i: u32 = 0;
    while t.len() < N {
        let (addr, bits) = match i % 3 {
            0 => (i * 37 % 16384, 14),
            1 => (i * 613 % 16384, 10),
            _ => (i * 1531 % 16384, 6),
        };
        let addr = Addr::new(addr as u16).unwrap();
        // Same prefix twice just updates; the loop runs until the table is full.
        t.add(addr, bits, IfaceId((i % 4) as u8), None).unwrap();
        i += 1;
    }
    t
}

fn names(name: &str) -> Option<IfaceId> {
    match name {
        "ZMQHUB" => Some(IfaceId(0)),
        "CAN" => Some(IfaceId(1)),
        "KISS" => Some(IfaceId(2)),
        "UDP" => Some(IfaceId(3)),
        _ => None,
    }
}

fn lookup<const N: usize>(c: &mut Criterion) {
    let t = table::<N>();
    let mut g = c.benchmark_group(format!("route_lookup_{N}"));
    g.throughput(Throughput::Elements(1));
    // The shortest non-default entry: found at the end of the scan.
    let last = t.iter().rev().nth(1).unwrap().prefix.addr();
    // An address no specific entry covers: the default route, full scan.
    let miss = (0..16384)
        .map(|a| Addr::new(a).unwrap())
        .find(|&a| t.lookup_route(a).is_some_and(|r| r.prefix.is_default()))
        .unwrap();
    for (name, dst) in [("last_specific", last), ("default", miss)] {
        g.bench_function(name, |b| b.iter(|| t.lookup(black_box(dst))));
    }
    g.finish();
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_parse");
    let short = "0/0 ZMQHUB, 10 CAN, 16/10 KISS 4";
    let long = "0/0 ZMQHUB, 10 CAN, 16/10 KISS 4, 11 CAN, 12 CAN 3, 64/8 UDP, \
                128/8 UDP 7, 1024/4 KISS 2, 8000 UDP, 8001 UDP, 8002 UDP, 9000/12 CAN, \
                16383 ZMQHUB, 5 KISS, 6 KISS, 7 KISS";
    for (name, s) in [("libcsp_example_3", short), ("entries_16", long)] {
        g.throughput(Throughput::Bytes(s.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                RouteTable::<16>::from_route_string(black_box(s), Version::V2, names)
                    .unwrap()
                    .len()
            })
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    lookup::<16>(c);
    lookup::<64>(c);
    parse(c);
}

criterion_group!(benches, bench);
criterion_main!(benches);
