//! Security trailers: CRC-32C over 200 B and 1 KiB, HMAC-SHA1 append over
//! 200 B, XTEA over 200 B, and the full HMAC+CRC append/verify round.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use csp_core::security::{
    append_hmac, crc32c, xtea_crypt, Cover, HmacKey, SecurityOptions, XteaKey,
};
use csp_core::{Header, Packet, Version};

fn payload<const L: usize>() -> [u8; L] {
    core::array::from_fn(|i| (i * 7 + 3) as u8)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("security");

    let small: [u8; 200] = payload();
    let large: [u8; 1024] = payload();
    g.throughput(Throughput::Bytes(200));
    g.bench_function("crc32c_200B", |b| b.iter(|| crc32c(black_box(&small))));
    g.throughput(Throughput::Bytes(1024));
    g.bench_function("crc32c_1KiB", |b| b.iter(|| crc32c(black_box(&large))));

    g.throughput(Throughput::Bytes(200));
    let key = HmacKey::from_key_string(b"secret");
    let base = Packet::<262>::with_data(Header::default(), &small).unwrap();
    g.bench_function("hmac_sha1_append_200B", |b| {
        b.iter(|| {
            let mut p = base.clone();
            append_hmac(&mut p, black_box(&key), Cover::Data).unwrap();
            black_box(p.len())
        })
    });

    let xkey = XteaKey::from_key_string(b"secret");
    g.bench_function("xtea_200B", |b| {
        let mut buf = small;
        b.iter(|| {
            xtea_crypt(black_box(&xkey), [0x1122_3344, 1], &mut buf);
            black_box(buf[199])
        })
    });

    let opts = SecurityOptions {
        crc: true,
        hmac: Some(key),
        ..SecurityOptions::NONE
    };
    g.bench_function("hmac_crc_append_verify_200B", |b| {
        b.iter(|| {
            let mut p = base.clone();
            opts.append(&mut p, Version::V2, 0).unwrap();
            black_box(opts.verify(&mut p, Version::V2).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
