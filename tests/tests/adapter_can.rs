//! csp-core's CAN port adapter (`csp_core::adapter::CanPort`) between two
//! nodes over an in-memory CAN bus. Each node has a mock controller that
//! implements `embedded_can::nb::Can` as a controller with a few transmit
//! mailboxes does: `WouldBlock` when they are full, and either sending them
//! in the order they were queued (FIFO mode, which CFP needs) or sending the
//! pending frame with the lowest id first and handing back a queued frame
//! of lower priority when a higher-priority one takes its mailbox. Pings of
//! many sizes (multi-frame packets) in both CFP versions, a controller
//! that would block, bus errors on receive and transmit, a displaced
//! frame, frames that are not CFP's, a half-received packet that times
//! out, and an RDP transfer.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use csp_core::adapter::{CanPort, CanRx, PortError};
use csp_core::bind::BindPort;
use csp_core::cfp::CfpError;
use csp_core::header::{Flags, Prio};
use csp_core::node::{
    ConnectOptions, Datagram, Event, IfaceConfig, NodeConfig, NodeError, SocketId, SocketOptions,
};
use csp_core::route::IfaceId;
use csp_core::security::SecurityOptions;
use csp_core::time::Instant;
use csp_core::{Addr, Node, Port, Version};
use csp_rdp::SendError;
use embedded_can::{ExtendedId, Id, StandardId};

type TestNode = Node<300, 4, 4, 2, 1, 4, 200, 2, 4>;
/// CSP frames of up to a v2 header and 256 bytes.
const MTU: usize = 6 + 256;
type Port2 = CanPort<4, MTU>;

/// A frame on the mock bus.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MockFrame {
    id: Id,
    remote: bool,
    data: Vec<u8>,
}

impl MockFrame {
    /// The arbitration order: the lower raw id wins (standard ids ahead of
    /// extended ones with the same base, which these tests never mix).
    fn rank(&self) -> u32 {
        match self.id {
            Id::Standard(s) => u32::from(s.as_raw()) << 18,
            Id::Extended(e) => e.as_raw(),
        }
    }
}

impl embedded_can::Frame for MockFrame {
    fn new(id: impl Into<Id>, data: &[u8]) -> Option<Self> {
        (data.len() <= 8).then(|| MockFrame {
            id: id.into(),
            remote: false,
            data: data.to_vec(),
        })
    }
    fn new_remote(id: impl Into<Id>, dlc: usize) -> Option<Self> {
        (dlc <= 8).then(|| MockFrame {
            id: id.into(),
            remote: true,
            data: vec![0; dlc],
        })
    }
    fn is_extended(&self) -> bool {
        matches!(self.id, Id::Extended(_))
    }
    fn is_remote_frame(&self) -> bool {
        self.remote
    }
    fn id(&self) -> Id {
        self.id
    }
    fn dlc(&self) -> usize {
        self.data.len()
    }
    fn data(&self) -> &[u8] {
        if self.remote {
            &[]
        } else {
            &self.data
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BusOff;
impl embedded_can::Error for BusOff {
    fn kind(&self) -> embedded_can::ErrorKind {
        embedded_can::ErrorKind::Other
    }
}

type Wire = Rc<RefCell<VecDeque<MockFrame>>>;

/// How a controller picks the next of its pending frames for the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// In the order they were queued (bxCAN's TXFP, for one); never
    /// displaces a queued frame.
    Fifo,
    /// The lowest id first, as arbitration between mailboxes does; a frame
    /// of higher priority displaces the lowest-priority pending one.
    Priority,
}

/// A controller on the bus: receives from one wire, sends onto another
/// through `mailboxes` transmit buffers.
struct MockCan {
    rx: Wire,
    tx: Wire,
    mailboxes: usize,
    order: Order,
    pending: Vec<MockFrame>,
    would_block: u32,
    fail_next_receive: bool,
    fail_next_transmit: bool,
    /// A broken controller: takes every frame and hands it straight back.
    hands_back: bool,
}

impl MockCan {
    fn new(rx: Wire, tx: Wire, mailboxes: usize, order: Order) -> MockCan {
        MockCan {
            rx,
            tx,
            mailboxes,
            order,
            pending: Vec::new(),
            would_block: 0,
            fail_next_receive: false,
            fail_next_transmit: false,
            hands_back: false,
        }
    }

    /// The bus sends up to `n` pending frames.
    fn tick(&mut self, n: usize) -> usize {
        let mut sent = 0;
        while sent < n && !self.pending.is_empty() {
            let i = match self.order {
                Order::Fifo => 0,
                Order::Priority => {
                    let by_rank = self
                        .pending
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, f)| f.rank());
                    by_rank.unwrap().0
                }
            };
            let f = self.pending.remove(i);
            self.tx.borrow_mut().push_back(f);
            sent += 1;
        }
        sent
    }
}

impl embedded_can::nb::Can for MockCan {
    type Frame = MockFrame;
    type Error = BusOff;

    fn transmit(&mut self, frame: &MockFrame) -> nb::Result<Option<MockFrame>, BusOff> {
        if std::mem::take(&mut self.fail_next_transmit) {
            return Err(nb::Error::Other(BusOff));
        }
        if self.hands_back {
            return Ok(Some(frame.clone()));
        }
        if self.pending.len() < self.mailboxes {
            self.pending.push(frame.clone());
            return Ok(None);
        }
        if self.order == Order::Fifo {
            self.would_block += 1;
            return Err(nb::Error::WouldBlock);
        }
        // Full: a pending frame of lower priority gives way.
        let (i, lowest) = self
            .pending
            .iter()
            .enumerate()
            .max_by_key(|(_, f)| f.rank())
            .unwrap();
        if frame.rank() < lowest.rank() {
            let old = std::mem::replace(&mut self.pending[i], frame.clone());
            return Ok(Some(old));
        }
        self.would_block += 1;
        Err(nb::Error::WouldBlock)
    }

    fn receive(&mut self) -> nb::Result<MockFrame, BusOff> {
        if std::mem::take(&mut self.fail_next_receive) {
            return Err(nb::Error::Other(BusOff));
        }
        self.rx
            .borrow_mut()
            .pop_front()
            .ok_or(nb::Error::WouldBlock)
    }
}

fn addr_of(a: u16) -> Addr {
    Addr::new(a).unwrap()
}

fn t0() -> Instant {
    Instant::from_millis(0)
}

fn node(addr: u16, version: Version) -> (TestNode, IfaceId) {
    let mut n = TestNode::new(NodeConfig::new(addr_of(addr)));
    let iface = n.add_iface(IfaceConfig::new("CAN", version, MTU)).unwrap();
    n.routes_mut().set_default(iface, None).unwrap();
    (n, iface)
}

/// Node A (address 1) and node B (address 10), each with a CAN port and a
/// controller, on one bus (a wire each way).
struct Pair {
    a: TestNode,
    a_port: Port2,
    a_can: MockCan,
    b: TestNode,
    b_port: Port2,
    b_can: MockCan,
    a_rx: Vec<CanRx>,
    b_rx: Vec<CanRx>,
}

impl Pair {
    fn new(version: Version, mailboxes: usize, order: Order) -> Pair {
        let (a, ai) = node(1, version);
        let (b, bi) = node(10, version);
        let (ab, ba): (Wire, Wire) = Default::default();
        Pair {
            a,
            a_port: CanPort::new(ai, version, addr_of(1)),
            a_can: MockCan::new(ba.clone(), ab.clone(), mailboxes, order),
            b,
            b_port: CanPort::new(bi, version, addr_of(10)),
            b_can: MockCan::new(ab, ba, mailboxes, order),
            a_rx: Vec::new(),
            b_rx: Vec::new(),
        }
    }

    /// Hands each port's packets to its controller, lets the bus send a
    /// frame from each, and reads what arrived; until nothing moves
    /// (bounded).
    fn drive(&mut self) {
        let mut buf = [0u8; 300];
        for _ in 0..10_000 {
            let now = t0();
            let other = self
                .a_port
                .transmit(&mut self.a, now, &mut buf, &mut self.a_can)
                .unwrap();
            assert_eq!(other, None, "one interface only");
            self.b_port
                .transmit(&mut self.b, now, &mut buf, &mut self.b_can)
                .unwrap();
            // One frame each per round: the controllers fill up and block.
            let sent = self.a_can.tick(1) + self.b_can.tick(1);
            let before = self.a_rx.len() + self.b_rx.len();
            while let Some(rx) = self.b_port.poll(&mut self.b, now, &mut self.b_can).unwrap() {
                self.b_rx.push(rx);
            }
            while let Some(rx) = self.a_port.poll(&mut self.a, now, &mut self.a_can).unwrap() {
                self.a_rx.push(rx);
            }
            let busy = self.a_port.is_sending() || self.b_port.is_sending();
            let read = self.a_rx.len() + self.b_rx.len() - before;
            if sent == 0 && read == 0 && !busy {
                return;
            }
        }
        panic!("the bus did not settle in 10000 rounds");
    }
}

fn send(a: &mut TestNode, dst: u16, dport: Port, sport: Port, prio: Prio, payload: &[u8]) {
    let dg = Datagram {
        dst: addr_of(dst),
        dport,
        sport,
        prio,
        flags: Flags::NONE,
    };
    a.send_to(&dg, &SecurityOptions::NONE, payload).unwrap();
}

/// Every packet queued on `sock`, in order.
fn received(n: &mut TestNode, sock: SocketId) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 300];
    let mut out = Vec::new();
    while let Some(ev) = n.poll_event() {
        if ev == (Event::Received { socket: sock }) {
            let r = n.recv(sock, &mut buf).unwrap();
            out.push(buf[..r.len].to_vec());
        }
    }
    out
}

fn pings_of_every_size(version: Version, mailboxes: usize) {
    let mut p = Pair::new(version, mailboxes, Order::Fifo);
    let (sock, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    let sizes: Vec<usize> = (0..=200).step_by(9).chain([1, 2, 3, 199, 200]).collect();
    for &len in &sizes {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        send(&mut p.a, 10, Port::PING, sport, Prio::Normal, &payload);
        p.drive();
        assert_eq!(
            received(&mut p.a, sock),
            vec![payload],
            "{version:?}: ping of {len} bytes"
        );
    }
    let n = sizes.len();
    assert!(
        p.b_rx.iter().all(|r| *r == CanRx::Delivered),
        "{:?}",
        p.b_rx
    );
    assert!(
        p.a_rx.iter().all(|r| *r == CanRx::Delivered),
        "{:?}",
        p.a_rx
    );
    assert_eq!((p.a_rx.len(), p.b_rx.len()), (n, n));
    assert_eq!(p.a_port.cfp_stats().completed as usize, n);
    assert_eq!(p.b_port.cfp_stats().lost, 0);
    assert!(
        p.a_can.would_block > 0 && p.b_can.would_block > 0,
        "the controllers were made to wait"
    );
    // Every frame went through a mailbox and none was handed back.
    let st = p.a_port.stats();
    assert_eq!(st.tx_frames, p.b_port.stats().rx_frames);
    assert_eq!((st.displaced, st.ignored), (0, 0));
    let st = p.b.iface_stats(p.b_port.iface()).unwrap();
    assert_eq!((st.rx as usize, st.tx as usize), (n, n));
    assert_eq!((st.rx_error, st.tx_error, st.frame), (0, 0, 0));
}

#[test]
fn pings_of_every_size_cfp2_three_mailboxes() {
    pings_of_every_size(Version::V2, 3);
}

#[test]
fn pings_of_every_size_cfp1_three_mailboxes() {
    pings_of_every_size(Version::V1, 3);
}

#[test]
fn pings_of_every_size_cfp2_one_mailbox() {
    pings_of_every_size(Version::V2, 1);
}

#[test]
fn a_multi_frame_packet_arrives_whole_on_a_bound_port() {
    let mut p = Pair::new(Version::V2, 2, Order::Fifo);
    let sink =
        p.b.bind(
            BindPort::Port(Port::new(11).unwrap()),
            SocketOptions::connectionless(),
        )
        .unwrap();
    let (_, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    // 250 bytes: a first frame and 31 more (CFP2 carries 4 in the first,
    // 8 in each other).
    let payload: Vec<u8> = (0..250u32).map(|i| (i ^ 0xA5) as u8).collect();
    send(
        &mut p.a,
        10,
        Port::new(11).unwrap(),
        sport,
        Prio::Normal,
        &payload,
    );
    let mut buf = [0u8; 300];
    // Two mailboxes: the port queues two frames and leaves the rest.
    p.a_port
        .transmit(&mut p.a, t0(), &mut buf, &mut p.a_can)
        .unwrap();
    assert!(p.a_port.is_sending());
    assert_eq!(p.a_port.stats().tx_frames, 2);
    assert_eq!(p.a_can.would_block, 1);
    p.drive();
    assert!(!p.a_port.is_sending());
    assert_eq!(received(&mut p.b, sink), vec![payload]);
    assert_eq!(p.a_port.stats().tx_frames, 32);
    assert_eq!(p.b_port.stats().rx_frames, 32);
}

#[test]
fn bus_errors_are_counted_and_the_port_goes_on() {
    let mut p = Pair::new(Version::V2, 3, Order::Fifo);
    let (sock, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    // Receive: the controller reports an error once.
    send(&mut p.a, 10, Port::PING, sport, Prio::Normal, b"first");
    p.b_can.fail_next_receive = true;
    let mut buf = [0u8; 300];
    p.a_port
        .transmit(&mut p.a, t0(), &mut buf, &mut p.a_can)
        .unwrap();
    p.a_can.tick(10);
    assert_eq!(
        p.b_port.poll(&mut p.b, t0(), &mut p.b_can),
        Err(PortError::Link(BusOff))
    );
    let st = p.b.iface_stats(p.b_port.iface()).unwrap();
    assert_eq!((st.rx_error, st.rx), (1, 0));
    // The frames are still in the controller: the next poll gets them.
    p.drive();
    assert_eq!(received(&mut p.a, sock), vec![b"first".to_vec()]);

    // Transmit: the controller fails on the first frame of a packet; the
    // packet is dropped and counted, the next one goes through.
    send(&mut p.a, 10, Port::PING, sport, Prio::Normal, &[7; 100]);
    p.a_can.fail_next_transmit = true;
    assert_eq!(
        p.a_port.transmit(&mut p.a, t0(), &mut buf, &mut p.a_can),
        Err(PortError::Link(BusOff))
    );
    assert!(!p.a_port.is_sending(), "the failed packet is given up");
    assert_eq!(p.a.iface_stats(p.a_port.iface()).unwrap().tx_error, 1);
    send(&mut p.a, 10, Port::PING, sport, Prio::Normal, b"second");
    p.drive();
    assert_eq!(received(&mut p.a, sock), vec![b"second".to_vec()]);
    assert_eq!(
        p.b_port.cfp_stats().lost,
        0,
        "nothing of the failed packet left"
    );
}

#[test]
fn a_bus_error_mid_packet_leaves_a_partial_packet_that_times_out() {
    let mut p = Pair::new(Version::V2, 1, Order::Fifo);
    let (_, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    send(&mut p.a, 10, Port::PING, sport, Prio::Normal, &[9; 60]);
    let mut buf = [0u8; 300];
    // One mailbox: one frame queued, then WouldBlock.
    p.a_port
        .transmit(&mut p.a, t0(), &mut buf, &mut p.a_can)
        .unwrap();
    p.a_can.tick(1);
    p.a_can.fail_next_transmit = true;
    assert_eq!(
        p.a_port.transmit(&mut p.a, t0(), &mut buf, &mut p.a_can),
        Err(PortError::Link(BusOff))
    );
    // B has the first frame only.
    assert_eq!(p.b_port.poll(&mut p.b, t0(), &mut p.b_can), Ok(None));
    let deadline = p.b_port.poll_timeout().expect("a packet in reassembly");
    let just_before = Instant::from_millis(deadline.as_millis() - 1);
    assert_eq!(p.b_port.handle_timeout(just_before), 0);
    assert_eq!(p.b_port.handle_timeout(deadline), 1);
    let cfp = p.b_port.cfp_stats();
    assert_eq!((cfp.timeouts, cfp.lost, cfp.completed), (1, 1, 0));
    assert_eq!(p.b_port.poll_timeout(), None);
}

#[test]
fn a_displaced_frame_is_queued_again_and_both_packets_arrive() {
    // Priority order is safe here: each packet takes 6 frames, fewer than
    // CFP2's 3-bit fragment index wraps at, so its ids grow frame by frame.
    let mut p = Pair::new(Version::V2, 3, Order::Priority);
    let sink_port = Port::new(11).unwrap();
    let sink =
        p.b.bind(BindPort::Port(sink_port), SocketOptions::connectionless())
            .unwrap();
    let (_, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    let normal: Vec<u8> = (0..40).collect();
    let urgent: Vec<u8> = (100..140).collect();
    send(&mut p.a, 10, sink_port, sport, Prio::Low, &normal);
    send(&mut p.a, 10, sink_port, sport, Prio::Critical, &urgent);
    let mut buf = [0u8; 300];
    // The low-priority packet's frames fill the mailboxes; the bus sends
    // them one by one until its last frames are queued, then the critical
    // packet's first frame takes the mailbox of the low one's last.
    for _ in 0..20 {
        p.a_port
            .transmit(&mut p.a, t0(), &mut buf, &mut p.a_can)
            .unwrap();
        if p.a_port.stats().displaced > 0 {
            break;
        }
        p.a_can.tick(1);
    }
    assert_eq!(p.a_port.stats().displaced, 1);
    assert!(p.a_port.is_sending(), "the displaced frame is held");
    p.drive();
    let mut got = received(&mut p.b, sink);
    got.sort();
    assert_eq!(got, vec![normal, urgent]);
    assert_eq!(p.b_port.cfp_stats().lost, 0);
    // The critical packet overtook the other on the bus.
    assert_eq!(p.b_rx, vec![CanRx::Delivered, CanRx::Delivered]);
}

#[test]
fn frames_that_are_not_cfp_are_ignored() {
    let mut p = Pair::new(Version::V2, 3, Order::Fifo);
    let (sock, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    {
        let mut wire = p.b_can.rx.borrow_mut();
        wire.push_back(MockFrame {
            id: Id::Standard(StandardId::new(0x123).unwrap()),
            remote: false,
            data: vec![1, 2, 3],
        });
        wire.push_back(MockFrame {
            id: Id::Extended(ExtendedId::new(0x1234).unwrap()),
            remote: true,
            data: vec![0; 8],
        });
    }
    assert_eq!(p.b_port.poll(&mut p.b, t0(), &mut p.b_can), Ok(None));
    assert_eq!(p.b_port.stats().ignored, 2);
    // A continuation frame with no packet begun is CFP's to count.
    p.b_can.rx.borrow_mut().push_back(MockFrame {
        // CFP2: fragment 1, neither begin nor end.
        id: Id::Extended(ExtendedId::new(1 << 2).unwrap()),
        remote: false,
        data: vec![0; 8],
    });
    assert_eq!(
        p.b_port.poll(&mut p.b, t0(), &mut p.b_can),
        Ok(Some(CanRx::CfpDropped(CfpError::Orphan)))
    );
    let st = p.b.iface_stats(p.b_port.iface()).unwrap();
    assert_eq!((st.frame, st.rx_error, st.rx), (1, 0, 0));
    // And the port still carries CSP.
    send(&mut p.a, 10, Port::PING, sport, Prio::Normal, b"after");
    p.drive();
    assert_eq!(received(&mut p.a, sock), vec![b"after".to_vec()]);
}

#[test]
fn a_packet_cfp1_can_not_carry_is_a_tx_error() {
    // A v1 frame longer than the port's MTU never reaches the controller.
    let (mut a, iface) = node(1, Version::V1);
    let mut port: CanPort<2, 40> = CanPort::new(iface, Version::V1, addr_of(1));
    let (_, sport) = a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    send(&mut a, 10, Port::PING, sport, Prio::Normal, &[1; 100]);
    send(&mut a, 10, Port::PING, sport, Prio::Normal, &[2; 10]);
    let (rx, tx): (Wire, Wire) = Default::default();
    let mut can = MockCan::new(rx, tx.clone(), 8, Order::Fifo);
    let mut buf = [0u8; 300];
    port.transmit(&mut a, t0(), &mut buf, &mut can).unwrap();
    assert_eq!(a.iface_stats(iface).unwrap().tx_error, 1);
    can.tick(8);
    // Only the 10-byte packet: BEGIN (header, length, 2 bytes) + 1 MORE.
    assert_eq!(tx.borrow().len(), 2);
}

#[test]
fn a_poll_reads_a_bounded_number_of_frames() {
    let mut p = Pair::new(Version::V2, 3, Order::Fifo);
    let limit = Port2::POLL_FRAMES_MAX;
    for _ in 0..3 * limit {
        p.b_can.rx.borrow_mut().push_back(MockFrame {
            id: Id::Standard(StandardId::new(0x7FF).unwrap()),
            remote: false,
            data: vec![],
        });
    }
    assert_eq!(p.b_port.poll(&mut p.b, t0(), &mut p.b_can), Ok(None));
    assert_eq!(
        p.b_can.rx.borrow().len(),
        2 * limit,
        "one poll read one bound"
    );
}

#[test]
fn rdp_transfer_through_would_blocking_controllers() {
    // Window 4 of 200-byte segments (26 frames each) both ways through
    // controllers with two FIFO mailboxes, which the bus empties one frame
    // per millisecond: most `transmit` calls leave a packet part-way out.
    let mut p = Pair::new(Version::V2, 2, Order::Fifo);
    let port12 = Port::new(12).unwrap();
    let listener =
        p.b.bind(BindPort::Port(port12), SocketOptions::both())
            .unwrap();
    let mut now = t0();
    let conn =
        p.a.connect(now, addr_of(10), port12, &ConnectOptions::default())
            .unwrap();
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let (mut sent, mut got) = (0, Vec::new());
    let mut server = None;
    let mut buf = [0u8; 300];
    for _ in 0..200_000 {
        if got.len() == data.len() {
            break;
        }
        now = Instant::from_millis(now.as_millis() + 1);
        for (n, port) in [(&mut p.a, &mut p.a_port), (&mut p.b, &mut p.b_port)] {
            if n.poll_timeout().is_some_and(|t| t <= now) {
                n.handle_timeout(now);
            }
            if port.poll_timeout().is_some_and(|t| t <= now) {
                port.handle_timeout(now);
            }
        }
        while let Some(ev) = p.a.poll_event() {
            assert!(!matches!(ev, Event::Failed { .. }), "{ev:?}");
        }
        while sent < data.len() {
            let end = (sent + 200).min(data.len());
            match p.a.send(now, conn, &data[sent..end]) {
                Ok(_) => sent = end,
                Err(NodeError::WouldBlock | NodeError::Send(SendError::NotConnected)) => break,
                Err(e) => panic!("send: {e:?}"),
            }
        }
        while let Some(ev) = p.b.poll_event() {
            match ev {
                Event::Accepted { socket, conn } => {
                    assert_eq!(socket, listener);
                    server = Some(conn);
                }
                Event::Readable { conn } => {
                    while let Ok(n) = p.b.recv_conn(conn, &mut buf) {
                        got.extend_from_slice(&buf[..n]);
                    }
                }
                Event::Failed { .. } => panic!("{ev:?}"),
                _ => {}
            }
        }
        p.a_port
            .transmit(&mut p.a, now, &mut buf, &mut p.a_can)
            .unwrap();
        p.b_port
            .transmit(&mut p.b, now, &mut buf, &mut p.b_can)
            .unwrap();
        p.a_can.tick(1);
        p.b_can.tick(1);
        while let Some(rx) = p.b_port.poll(&mut p.b, now, &mut p.b_can).unwrap() {
            assert_eq!(rx, CanRx::Delivered);
        }
        while let Some(rx) = p.a_port.poll(&mut p.a, now, &mut p.a_can).unwrap() {
            assert_eq!(rx, CanRx::Delivered);
        }
    }
    eprintln!(
        "20 KB over RDP in {} ms simulated; A would-block {}",
        now.as_millis(),
        p.a_can.would_block
    );
    assert!(server.is_some(), "the listener accepted the connection");
    assert_eq!(got.len(), data.len(), "all data arrived in time");
    assert!(got == data, "byte-exact");
    assert!(p.a_can.would_block > 100, "{}", p.a_can.would_block);
    let cfp = p.b_port.cfp_stats();
    assert_eq!((cfp.lost, cfp.out_of_order, cfp.orphans), (0, 0, 0));
}

#[test]
fn a_controller_that_keeps_handing_frames_back_does_not_hold_the_loop() {
    let mut p = Pair::new(Version::V2, 3, Order::Fifo);
    let (_, sport) = p.a.bind_ephemeral(SocketOptions::connectionless()).unwrap();
    send(&mut p.a, 10, Port::PING, sport, Prio::Normal, &[5; 100]);
    p.a_can.hands_back = true;
    let mut buf = [0u8; 300];
    for call in 1..=3 {
        let r = p.a_port.transmit(&mut p.a, t0(), &mut buf, &mut p.a_can);
        assert_eq!(r, Ok(None), "call {call}");
        assert!(p.a_port.is_sending());
    }
    // Each call queues a bounded number of frames again.
    let displaced = p.a_port.stats().displaced;
    assert!((3..=3 * 9).contains(&displaced), "{displaced}");
    // Fixed, the controller takes the held frame and the rest of the packet.
    p.a_can.hands_back = false;
    p.drive();
    assert!(!p.a_port.is_sending());
    assert_eq!(p.b_rx, vec![CanRx::Delivered]);
}
