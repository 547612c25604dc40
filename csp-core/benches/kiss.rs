//! KISS encode (slice and streaming) and byte-at-a-time decode of a 200-byte
//! CSP frame (v2 header + 194 data bytes), throughput in frame bytes.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use csp_core::kiss::{encode, max_encoded_len, Encoder, KissDecoder};
use csp_core::{Addr, Flags, Header, Port, Prio, Version};

const FRAME_LEN: usize = 200;

fn frame() -> [u8; FRAME_LEN] {
    let header = Header {
        prio: Prio::Normal,
        src: Addr::new(1).unwrap(),
        dst: Addr::new(2).unwrap(),
        dport: Port::new(10).unwrap(),
        sport: Port::new(20).unwrap(),
        flags: Flags::NONE,
    };
    let mut f = [0u8; FRAME_LEN];
    let n = header.emit(&mut f, Version::V2).unwrap();
    // A spread of byte values, so that a few need escaping (as on a real link).
    for (i, b) in f[n..].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    f
}

fn bench(c: &mut Criterion) {
    let f = frame();
    let mut g = c.benchmark_group("kiss");
    g.throughput(Throughput::Bytes(FRAME_LEN as u64));

    let mut out = [0u8; max_encoded_len(FRAME_LEN)];
    g.bench_function("encode_200B", |b| {
        b.iter(|| black_box(encode(black_box(&f), Version::V2, &mut out).unwrap()))
    });
    g.bench_function("encode_stream_200B", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for byte in Encoder::new(black_box(&f), Version::V2).unwrap() {
                sum = sum.wrapping_add(u32::from(byte));
            }
            black_box(sum)
        })
    });

    let n = encode(&f, Version::V2, &mut out).unwrap();
    let wire = &out[..n];
    g.bench_function("decode_200B", |b| {
        let mut dec = KissDecoder::<256>::new(Version::V2);
        b.iter(|| {
            let mut got = 0;
            for &byte in black_box(wire) {
                if let Some(Ok(frame)) = dec.push(byte) {
                    got = frame.len();
                }
            }
            assert_eq!(got, FRAME_LEN);
            black_box(got)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
