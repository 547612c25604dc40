//! csp-core's KISS port adapter (`csp_core::adapter::KissPort`) between two
//! nodes over mock serial devices: one side through `embedded-io`
//! (`Read + ReadReady + Write`), the other through `embedded-hal-nb` serial
//! that would block on every other call. Pings of many sizes, a corrupted
//! frame, a failing writer, a babbling line and a frame for another
//! interface.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use csp_core::adapter::{KissPort, PortError, PortRx};
use csp_core::header::{Flags, Prio};
use csp_core::kiss::KissError;
use csp_core::node::{Datagram, Event, IfaceConfig, NodeConfig, SocketOptions};
use csp_core::route::IfaceId;
use csp_core::security::SecurityOptions;
use csp_core::time::Instant;
use csp_core::{Addr, Node, Port, Version};

type TestNode = Node<300, 4, 4, 2, 1, 4, 200, 2, 4>;
const FRAME: usize = 6 + 256;
type Wire = Rc<RefCell<VecDeque<u8>>>;

/// An `embedded-io` serial device: reads one wire, writes another.
struct IoUart {
    rx: Wire,
    tx: Wire,
    fail_writes: bool,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct LinkDown;
impl std::fmt::Display for LinkDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("link down")
    }
}
impl std::error::Error for LinkDown {}
impl embedded_io::Error for LinkDown {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::BrokenPipe
    }
}
impl embedded_hal_nb::serial::Error for LinkDown {
    fn kind(&self) -> embedded_hal_nb::serial::ErrorKind {
        embedded_hal_nb::serial::ErrorKind::Other
    }
}

impl embedded_io::ErrorType for IoUart {
    type Error = LinkDown;
}
impl embedded_io::ReadReady for IoUart {
    fn read_ready(&mut self) -> Result<bool, LinkDown> {
        Ok(!self.rx.borrow().is_empty())
    }
}
impl embedded_io::Read for IoUart {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LinkDown> {
        let mut rx = self.rx.borrow_mut();
        let mut n = 0;
        while n < buf.len() {
            let Some(b) = rx.pop_front() else { break };
            buf[n] = b;
            n += 1;
        }
        Ok(n)
    }
}
impl embedded_io::Write for IoUart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LinkDown> {
        if self.fail_writes {
            return Err(LinkDown);
        }
        self.tx.borrow_mut().extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), LinkDown> {
        Ok(())
    }
}

/// An `embedded-hal-nb` serial device that answers `WouldBlock` on every
/// other call, as a UART whose holding register is busy does.
struct NbUart {
    rx: Wire,
    tx: Wire,
    busy: bool,
    would_block: u32,
}
impl NbUart {
    fn stall(&mut self) -> bool {
        self.busy = !self.busy;
        if self.busy {
            self.would_block += 1;
        }
        self.busy
    }
}
impl embedded_hal_nb::serial::ErrorType for NbUart {
    type Error = LinkDown;
}
impl embedded_hal_nb::serial::Read<u8> for NbUart {
    fn read(&mut self) -> embedded_hal_nb::nb::Result<u8, LinkDown> {
        // A busy read is only a retry for the writer; the reader sees
        // `WouldBlock` when nothing is there.
        self.rx
            .borrow_mut()
            .pop_front()
            .ok_or(embedded_hal_nb::nb::Error::WouldBlock)
    }
}
impl embedded_hal_nb::serial::Write<u8> for NbUart {
    fn write(&mut self, b: u8) -> embedded_hal_nb::nb::Result<(), LinkDown> {
        if self.stall() {
            return Err(embedded_hal_nb::nb::Error::WouldBlock);
        }
        self.tx.borrow_mut().push_back(b);
        Ok(())
    }
    fn flush(&mut self) -> embedded_hal_nb::nb::Result<(), LinkDown> {
        Ok(())
    }
}

fn node(addr: u16) -> (TestNode, IfaceId) {
    let mut n = TestNode::new(NodeConfig::new(addr_of(addr)));
    let iface = n
        .add_iface(IfaceConfig::new("KISS", Version::V2, FRAME))
        .unwrap();
    n.routes_mut().set_default(iface, None).unwrap();
    (n, iface)
}

fn addr_of(a: u16) -> Addr {
    Addr::new(a).unwrap()
}

fn t0() -> Instant {
    Instant::from_millis(0)
}

/// Node A (address 1) on an `embedded-io` port, node B (address 10) on an
/// `embedded-hal-nb` port, wired back to back.
struct Pair {
    a: TestNode,
    a_port: KissPort<FRAME>,
    a_uart: IoUart,
    b: TestNode,
    b_port: KissPort<FRAME>,
    b_uart: NbUart,
    a_rx: Vec<PortRx>,
    b_rx: Vec<PortRx>,
}

impl Pair {
    fn new() -> Pair {
        let (a, ai) = node(1);
        let (b, bi) = node(10);
        let (ab, ba): (Wire, Wire) = Default::default();
        Pair {
            a,
            a_port: KissPort::new(ai, Version::V2),
            a_uart: IoUart {
                rx: ba.clone(),
                tx: ab.clone(),
                fail_writes: false,
            },
            b,
            b_port: KissPort::new(bi, Version::V2),
            b_uart: NbUart {
                rx: ab,
                tx: ba,
                busy: false,
                would_block: 0,
            },
            a_rx: Vec::new(),
            b_rx: Vec::new(),
        }
    }

    /// Moves frames both ways until both wires are empty (bounded).
    fn drive(&mut self) {
        let mut buf = [0u8; 300];
        for _ in 0..100 {
            let now = t0();
            let none = self
                .a_port
                .transmit_io(&mut self.a, now, &mut buf, &mut self.a_uart)
                .unwrap();
            assert_eq!(none, None, "one interface only");
            self.b_port
                .transmit_nb(&mut self.b, now, &mut buf, &mut self.b_uart)
                .unwrap();
            // Settled once a round puts nothing on either wire.
            let sent = self.a_uart.tx.borrow().len() + self.b_uart.tx.borrow().len();
            if sent == 0 {
                return;
            }
            while let Some(rx) = self
                .b_port
                .poll_nb(&mut self.b, now, &mut self.b_uart)
                .unwrap()
            {
                self.b_rx.push(rx);
            }
            while let Some(rx) = self
                .a_port
                .poll_io(&mut self.a, now, &mut self.a_uart)
                .unwrap()
            {
                self.a_rx.push(rx);
            }
        }
        panic!("the link did not settle in 100 rounds");
    }
}

fn ping(a: &mut TestNode, sport: Port, payload: &[u8]) {
    let dg = Datagram {
        dst: addr_of(10),
        dport: Port::PING,
        sport,
        prio: Prio::Normal,
        flags: Flags::NONE,
    };
    a.send_to(&dg, &SecurityOptions::NONE, payload).unwrap();
}

#[test]
fn pings_of_every_size_cross_io_and_nb_ports() {
    let mut p = Pair::new();
    let (sock, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    let sizes: Vec<usize> = (0..=200).step_by(7).chain([199, 200]).collect();
    let mut buf = [0u8; 300];
    for &len in &sizes {
        // Bytes that must be escaped, in every frame.
        let payload: Vec<u8> = (0..len).map(|i| [0xC0, 0xDB, i as u8][i % 3]).collect();
        ping(&mut p.a, sport, &payload);
        p.drive();
        let mut got = None;
        while let Some(ev) = p.a.poll_event() {
            if ev == (Event::Received { socket: sock }) {
                let r = p.a.recv(sock, &mut buf).unwrap();
                got = Some(buf[..r.len].to_vec());
            }
        }
        assert_eq!(got.as_deref(), Some(&payload[..]), "ping of {len} bytes");
    }
    let n = sizes.len();
    assert!(p.b_rx.iter().all(|r| *r == PortRx::Delivered));
    assert!(p.a_rx.iter().all(|r| *r == PortRx::Delivered));
    assert_eq!((p.a_rx.len(), p.b_rx.len()), (n, n));
    assert_eq!(p.a_port.stats().frames_ok as usize, n);
    assert_eq!(p.b_port.stats().frames_ok as usize, n);
    assert!(p.b_uart.would_block > 0, "the nb writer was made to wait");
    let st = p.b.iface_stats(p.b_port.iface()).unwrap();
    assert_eq!((st.rx as usize, st.tx as usize, st.rx_error), (n, n, 0));
}

#[test]
fn corrupted_frame_is_counted_and_the_next_one_delivered() {
    let mut p = Pair::new();
    let (_, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    ping(&mut p.a, sport, b"first");
    let mut buf = [0u8; 300];
    p.a_port
        .transmit_io(&mut p.a, t0(), &mut buf, &mut p.a_uart)
        .unwrap();
    // Flip a data byte (not a delimiter) of the frame on the wire.
    {
        let mut wire = p.b_uart.rx.borrow_mut();
        let i = wire.len() - 4;
        wire[i] ^= 0x01;
    }
    let out = p.b_port.poll_nb(&mut p.b, t0(), &mut p.b_uart).unwrap();
    assert!(
        matches!(out, Some(PortRx::KissDropped(KissError::BadCrc { .. }))),
        "{out:?}"
    );
    let st = p.b.iface_stats(p.b_port.iface()).unwrap();
    assert_eq!((st.rx_error, st.rx), (1, 0));
    assert_eq!(p.b_port.stats().bad_crc, 1);
    ping(&mut p.a, sport, b"second");
    p.drive();
    assert_eq!(p.b_rx, vec![PortRx::Delivered]);
    assert_eq!(p.a_rx, vec![PortRx::Delivered]);
}

#[test]
fn failing_writer_is_an_error_and_a_tx_error() {
    let mut p = Pair::new();
    let (_, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    ping(&mut p.a, sport, b"lost");
    p.a_uart.fail_writes = true;
    let mut buf = [0u8; 300];
    let r = p
        .a_port
        .transmit_io(&mut p.a, t0(), &mut buf, &mut p.a_uart);
    assert_eq!(r, Err(PortError::Link(LinkDown)));
    assert_eq!(p.a.iface_stats(p.a_port.iface()).unwrap().tx_error, 1);
    assert!(p.b_uart.rx.borrow().is_empty());
}

#[test]
fn a_babbling_line_is_read_in_bounded_steps() {
    let mut p = Pair::new();
    let limit = KissPort::<FRAME>::POLL_BYTES_MAX;
    // Garbage without a FEND, more than one poll reads.
    p.b_uart
        .rx
        .borrow_mut()
        .extend(std::iter::repeat_n(0x55, 3 * limit));
    let out = p.b_port.poll_nb(&mut p.b, t0(), &mut p.b_uart).unwrap();
    assert_eq!(out, None);
    assert_eq!(
        p.b_uart.rx.borrow().len(),
        2 * limit,
        "one poll read one bound"
    );
    assert_eq!(p.b_port.stats().garbage_bytes as usize, limit);
    // And over embedded-io.
    p.a_uart
        .rx
        .borrow_mut()
        .extend(std::iter::repeat_n(0x55, 2 * limit));
    assert_eq!(
        p.a_port.poll_io(&mut p.a, t0(), &mut p.a_uart).unwrap(),
        None
    );
    assert_eq!(p.a_uart.rx.borrow().len(), limit);
}

#[test]
fn a_frame_for_another_interface_is_handed_back() {
    let (mut a, kiss) = node(1);
    let can = a
        .add_iface(IfaceConfig::new("CAN", Version::V2, FRAME))
        .unwrap();
    a.routes_mut().add(addr_of(20), 14, can, None).unwrap();
    let (_, sport) = a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    let dg = Datagram {
        dst: addr_of(20),
        dport: Port::PING,
        sport,
        prio: Prio::Normal,
        flags: Flags::NONE,
    };
    a.send_to(&dg, &SecurityOptions::NONE, b"to the CAN side")
        .unwrap();
    let mut port: KissPort<FRAME> = KissPort::new(kiss, Version::V2);
    let wire: Wire = Default::default();
    let mut uart = IoUart {
        rx: Wire::default(),
        tx: wire.clone(),
        fail_writes: false,
    };
    let mut buf = [0u8; 300];
    let t = port
        .transmit_io(&mut a, t0(), &mut buf, &mut uart)
        .unwrap()
        .expect("the CAN frame comes back to the caller");
    assert_eq!(t.iface, can);
    assert!(buf[..t.len].ends_with(b"to the CAN side"));
    assert!(wire.borrow().is_empty(), "nothing went out on KISS");
}
