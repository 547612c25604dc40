//! The node's hot paths: a ping request in and its reply out (with and
//! without CRC), and an RDP transfer between two nodes over a perfect
//! in-memory link (window 4 x 200 bytes, firmware-like; window 32 x 480,
//! host-like), frames moved by hand, time advancing 1 ms per round.
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use csp_core::bind::BindPort;
use csp_core::node::{ConnectOptions, Event, IfaceConfig, NodeConfig, SocketOptions};
use csp_core::route::IfaceId;
use csp_core::security::SecurityOptions;
use csp_core::time::Instant;
use csp_core::{Addr, Flags, Header, Node, Packet, Port, Prio, Version};

type Fw = Node<256, 4, 4, 6, 2, 4, 200, 1, 4>;
type Host = Node<512, 8, 8, 8, 2, 32, 480, 1, 4>;

macro_rules! make {
    ($t:ty, $addr:expr) => {{
        let mut n = <$t>::new(NodeConfig {
            seed: $addr,
            ..NodeConfig::new(Addr::new($addr).unwrap())
        });
        let i = n
            .add_iface(IfaceConfig::new("IF", Version::V2, 512))
            .unwrap();
        n.routes_mut().set_default(i, None).unwrap();
        n
    }};
}

fn ping_frame(crc: bool) -> Vec<u8> {
    let h = Header {
        prio: Prio::Normal,
        src: Addr::new(2).unwrap(),
        dst: Addr::new(10).unwrap(),
        dport: Port::PING,
        sport: Port::new(20).unwrap(),
        flags: Flags::NONE,
    };
    let mut p = Packet::<256>::with_data(h, &[0x5a; 100]).unwrap();
    let sec = SecurityOptions {
        crc,
        ..SecurityOptions::NONE
    };
    sec.append(&mut p, Version::V2, 0).unwrap();
    p.frame(Version::V2).unwrap().to_vec()
}

fn ping(c: &mut Criterion) {
    let mut g = c.benchmark_group("node_ping_100B");
    g.throughput(Throughput::Elements(1));
    for crc in [false, true] {
        let frame = ping_frame(crc);
        let mut n = make!(Fw, 10);
        let mut buf = [0u8; 256];
        g.bench_function(if crc { "crc" } else { "plain" }, |b| {
            b.iter(|| {
                n.handle_frame(Instant::ZERO, IfaceId(0), black_box(&frame))
                    .unwrap();
                n.poll_transmit(Instant::ZERO, &mut buf).unwrap().len
            })
        });
    }
    g.finish();
}

macro_rules! transfer {
    ($name:ident, $t:ty, $window:expr, $seg:expr, $bytes:expr) => {
        fn $name() -> usize {
            let (mut a, mut b) = (make!($t, 1), make!($t, 10));
            b.bind(
                BindPort::Port(Port::new(11).unwrap()),
                SocketOptions::listener(),
            )
            .unwrap();
            let opts = ConnectOptions {
                rdp: csp_rdp::Options {
                    window: $window,
                    ..csp_rdp::Options::default()
                },
                ..ConnectOptions::default()
            };
            let mut now = Instant::ZERO;
            let c = a
                .connect(now, Addr::new(10).unwrap(), Port::new(11).unwrap(), &opts)
                .unwrap();
            let chunk = [0xa5u8; $seg];
            let (mut sent, mut got) = (0usize, 0usize);
            let mut buf = [0u8; 512];
            let mut data = [0u8; 512];
            while got < $bytes {
                while sent < $bytes && a.send(now, c, &chunk).is_ok() {
                    sent += $seg;
                }
                while let Some(t) = a.poll_transmit(now, &mut buf) {
                    let _ = b.handle_frame(now, IfaceId(0), &buf[..t.len]);
                }
                while let Some(e) = b.poll_event() {
                    if let Event::Readable { conn } = e {
                        while let Ok(n) = b.recv_conn(conn, &mut data) {
                            got += n;
                        }
                    }
                }
                while let Some(t) = b.poll_transmit(now, &mut buf) {
                    let _ = a.handle_frame(now, IfaceId(0), &buf[..t.len]);
                }
                while a.poll_event().is_some() {}
                now = Instant::from_millis(now.as_millis() + 1);
                a.handle_timeout(now);
                b.handle_timeout(now);
            }
            got
        }
    };
}

transfer!(transfer_fw, Fw, 4, 200, 100_000);
transfer!(transfer_host, Host, 32, 480, 480_000);

fn rdp(c: &mut Criterion) {
    let mut g = c.benchmark_group("node_rdp_transfer");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(100_000));
    g.bench_function("fw_w4_200B_100kB", |b| b.iter(transfer_fw));
    g.throughput(Throughput::Bytes(480_000));
    g.bench_function("host_w32_480B_480kB", |b| b.iter(transfer_host));
    g.finish();
}

criterion_group!(benches, ping, rdp);
criterion_main!(benches);
