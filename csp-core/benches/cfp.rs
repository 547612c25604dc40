//! CFP: fragment a 200-byte packet into CAN frames and reassemble them, for
//! both layouts; throughput in packet data bytes. Run with the `header`
//! bench, whose `baseline/memcpy_200B` is the ratio's denominator.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use csp_core::cfp::{fragment, Reassembler, TxLink};
use csp_core::time::Instant;
use csp_core::{Addr, Flags, Header, Port, Prio, Version};

const DATA_LEN: usize = 200;

fn bench(c: &mut Criterion) {
    let header = Header {
        prio: Prio::Normal,
        src: Addr::new(1).unwrap(),
        dst: Addr::new(2).unwrap(),
        dport: Port::new(10).unwrap(),
        sport: Port::new(20).unwrap(),
        flags: Flags::NONE,
    };
    let data: [u8; DATA_LEN] = core::array::from_fn(|i| (i * 7 + 3) as u8);
    let link = TxLink {
        via: None,
        iface_addr: Addr::new(1).unwrap(),
        counter: 0,
    };
    let mut g = c.benchmark_group("cfp");
    g.throughput(Throughput::Bytes(DATA_LEN as u64));
    for version in [Version::V1, Version::V2] {
        let mut rx: Reassembler<4, 256> = Reassembler::new(version);
        let now = Instant::from_millis(0);
        g.bench_function(format!("fragment_reassemble_200B_{version:?}"), |b| {
            b.iter(|| {
                let mut got = 0;
                for frame in fragment(version, &header, black_box(&data), link).unwrap() {
                    if let Ok(Some(p)) = rx.push(now, &frame) {
                        got = p.data.len();
                    }
                }
                assert_eq!(got, DATA_LEN);
                black_box(got)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
