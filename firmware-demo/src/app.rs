//! The firmware's application: one [`csp_core::Node`] on one KISS link, an
//! echo service and a sink.
//!
//! Target-independent (no registers, no cortex-m): `main.rs` hands it the
//! received bytes, the time, a [`Board`] for the values only the hardware
//! knows, and the UART to send on. The integration tests compile this same
//! file on the host and drive it without QEMU.
//!
//! Layers, outside in:
//! - **KISS** stays out of the node: csp-core's [`KissPort`] adapter turns
//!   UART bytes into CSP frames for the node (its CRC-32C checked as
//!   libcsp's KISS interface does) and the node's frames back into UART
//!   bytes on an `embedded_io::Write`. Its drops are added to the interface
//!   counters CMP reports.
//! - **Node**: routing (a default route to the UART), the standard services
//!   (ping, memfree, buffer free, uptime, CMP ident and interface stats),
//!   security trailers, RDP connections.
//! - **Application** (here): port [`ECHO_PORT`] echoes connectionless
//!   packets (with the CRC32/HMAC trailers the request carried, HMAC keyed
//!   by the shared demo key) and the data of RDP connections (each received
//!   segment goes back on the same connection; the peer closes, the node
//!   finishes the close); port [`SINK_PORT`] counts what it receives and
//!   answers an empty packet with the counts.
//!
//! One received frame is handled to the end before the next byte is read:
//! its replies and any RDP segments that became due are KISS-encoded onto
//! the link at once (the UART blocks per byte; there is no transmit queue
//! beyond the node's own).

use csp_core::adapter::{KissPort, PortRx};
use csp_core::bind::BindPort;
use csp_core::kiss::FEND;
use csp_core::node::{ConnId, Event, IfaceConfig, NodeConfig, NodeError, SocketId, SocketOptions};
use csp_core::route::IfaceId;
use csp_core::security::{HmacKey, SecurityOptions};
use csp_core::service::Ident;
use csp_core::time::Instant;
use csp_core::{Addr, Node, Port, Version};
use embedded_io::Write;

/// Bytes of data (payload and trailers) a packet may carry: libcsp's default
/// buffer data size.
pub const MTU: usize = 256;
/// Longest frame on the link (v2 header and [`MTU`] bytes): longer ones
/// are dropped by the KISS decoder.
pub const FRAME_MAX: usize = MTU + 6;
/// One packet buffer of the node: header room (6), [`MTU`] bytes, and the
/// 12 bytes the node's service handler keeps free for trailers (HMAC, CRC,
/// XTEA nonce), so that a full-MTU ping is still answered.
pub const PKT: usize = MTU + 6 + 12;
/// Connectionless packets queued for the sockets (shared pool).
pub const RXQ: usize = 2;
/// Outgoing packets queued (service replies, echo replies); RDP segments
/// are pulled from their connections and need no slot.
pub const TXQ: usize = 2;
/// Bound ports: echo and sink (accepted connections share their listener's).
pub const BINDS: usize = 2;
/// RDP connections at once.
pub const CONNS: usize = 2;
/// RDP segments in flight (and held on receive) per connection: libcsp's
/// default window. Not less: the server adopts the client's window, and a
/// client sending more segments than we hold sees them dropped and
/// retransmitted a second later (0.8 KiB/s instead of ~9 with window 2).
pub const WINDOW: usize = 4;
/// How long a connection closed by the peer lingers (RDP time-wait).
pub const CLOSE_WAIT_MS: u64 = 2_000;
/// User bytes per RDP segment. A peer must not send larger ones (csp-rdp
/// negotiates no segment size; libcsp's default MTU would allow 256 - 5).
pub const SEG: usize = 200;
/// Routes: the default route to the UART.
pub const ROUTES: usize = 1;

/// The node, sized for the 16 KiB RAM budget.
pub type DemoNode = Node<PKT, RXQ, TXQ, BINDS, CONNS, WINDOW, SEG, 1, ROUTES>;

/// Echo service: connectionless packets and RDP data come back unchanged.
pub const ECHO_PORT: u8 = 10;
/// Sink: counts what it receives; an empty packet asks for the counts.
pub const SINK_PORT: u8 = 11;
/// Name of the KISS interface (libcsp's default; CMP interface stats).
pub const IFACE_NAME: &str = "KISS";

/// What the application needs from the board.
pub trait Board {
    /// Free memory in bytes (the memfree service).
    fn memfree(&self) -> u32;
    /// Receive interrupts taken so far (the interface's `irq` counter).
    fn irqs(&self) -> u32;
    /// A few bits of timing noise, mixed into the node's PRNG (RDP initial
    /// sequence numbers) as frames arrive.
    fn entropy(&self) -> u64;
}

/// The firmware's fixed settings.
#[derive(Clone, Copy)]
pub struct DemoConfig {
    /// Our CSP address.
    pub addr: Addr,
    /// Header version on the link.
    pub version: Version,
    /// The shared key of HMAC-flagged packets (services and echo).
    pub hmac_key: HmacKey,
    /// CMP ident strings.
    pub ident: Ident<'static>,
    /// Seed of the node's PRNG.
    pub seed: u64,
}

/// What the sink on [`SINK_PORT`] has received.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SinkCounters {
    /// Non-empty packets.
    pub packets: u32,
    /// Their payload bytes (trailers excluded).
    pub bytes: u32,
}

/// What the application counted (wrapping adds).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct AppCounters {
    /// Connectionless packets echoed.
    pub echoed: u32,
    /// RDP segments echoed.
    pub rdp_echoed: u32,
    /// RDP connections accepted.
    pub accepted: u32,
    /// RDP connections that ended (closed or failed).
    pub ended: u32,
    /// Replies or segments the node refused (queue full, too long...).
    pub send_errors: u32,
    /// Frames the node dropped (the node's own counters say why).
    pub rx_dropped: u32,
    /// Reboot or shutdown requests (never acted on).
    pub reboot_requests: u32,
    /// Errors the node reported as events.
    pub node_errors: u32,
}

/// The application: KISS framing, the node, echo and sink.
pub struct Demo {
    node: DemoNode,
    kiss: KissPort<FRAME_MAX>,
    version: Version,
    hmac_key: HmacKey,
    uart: IfaceId,
    echo: Option<SocketId>,
    sink: Option<SocketId>,
    /// Connections with a segment waiting to be echoed while their send
    /// window is full; retried as acknowledgements arrive.
    stalled: [Option<ConnId>; CONNS],
    /// Where received data is copied and outgoing frames are written: one
    /// buffer, used by one step at a time, kept out of the stack.
    scratch: [u8; PKT],
    sink_counts: SinkCounters,
    counters: AppCounters,
}

impl Demo {
    /// A node that has neither interface nor sockets yet: call
    /// [`start`](Self::start). `const`, so the firmware can keep it in a
    /// static.
    pub const fn new(config: DemoConfig) -> Demo {
        let mut nc = NodeConfig::new(config.addr);
        nc.seed = config.seed;
        nc.ident = config.ident;
        Demo {
            node: DemoNode::new(nc),
            kiss: KissPort::new(IfaceId(0), config.version),
            version: config.version,
            hmac_key: config.hmac_key,
            uart: IfaceId(0),
            echo: None,
            sink: None,
            stalled: [None; CONNS],
            scratch: [0; PKT],
            sink_counts: SinkCounters {
                packets: 0,
                bytes: 0,
            },
            counters: AppCounters {
                echoed: 0,
                rdp_echoed: 0,
                accepted: 0,
                ended: 0,
                send_errors: 0,
                rx_dropped: 0,
                reboot_requests: 0,
                node_errors: 0,
            },
        }
    }

    /// The KISS interface, its default route, the services' HMAC key, and
    /// the echo and sink sockets.
    pub fn start(&mut self) -> Result<(), NodeError> {
        let (version, hmac_key) = (self.version, self.hmac_key);
        self.uart = self.node.add_iface(IfaceConfig::new(
            IFACE_NAME,
            version,
            version.header_len() + MTU,
        ))?;
        self.kiss = KissPort::new(self.uart, version);
        self.node
            .routes_mut()
            .set_default(self.uart, None)
            .map_err(|_| NodeError::NoRoute(Addr::LOCAL))?;
        self.node.set_service_hmac_key(Some(hmac_key));
        // Trailers as the peer chooses: none required, the ones flagged are
        // checked, and replies and accepted connections mirror them.
        let security = SecurityOptions {
            hmac: Some(hmac_key),
            accept_missing: true,
            ..SecurityOptions::NONE
        };
        let mut echo = SocketOptions::both().with_security(security);
        // One connection slot: a connection the peer closed waits this long
        // (not the default 10 s) for repeats of the peer's reset before the
        // slot takes the next client.
        echo.rdp_options.close_wait = csp_core::time::Duration::from_millis(CLOSE_WAIT_MS);
        self.echo = Some(self.node.bind(port_of(ECHO_PORT), echo)?);
        let sink = SocketOptions::connectionless().with_security(security);
        self.sink = Some(self.node.bind(port_of(SINK_PORT), sink)?);
        Ok(())
    }

    /// The node (its counters, connection states, interface stats).
    #[allow(dead_code)] // for tests and debuggers
    pub fn node(&self) -> &DemoNode {
        &self.node
    }

    /// What the sink has received.
    #[allow(dead_code)] // for tests and debuggers
    pub fn sink_counters(&self) -> SinkCounters {
        self.sink_counts
    }

    /// What the application counted.
    #[allow(dead_code)] // for tests and debuggers
    pub fn counters(&self) -> &AppCounters {
        &self.counters
    }

    /// The KISS decoder's counters.
    #[allow(dead_code)] // for tests and debuggers
    pub fn kiss_stats(&self) -> &csp_core::kiss::KissStats {
        self.kiss.stats()
    }

    /// One byte from the UART. A complete frame is handed to the node, and
    /// everything it causes is sent on `link` before this returns.
    pub fn receive<B: Board, L: Write>(&mut self, now: Instant, byte: u8, board: &B, link: &mut L) {
        if byte == FEND {
            // A FEND may end a frame: the values the node can not know,
            // fresh for a request that asks.
            self.node.set_memfree(board.memfree());
            self.node.reseed(board.entropy());
            if let Some(st) = self.node.iface_stats_mut(self.uart) {
                st.irq = board.irqs();
            }
        }
        match self.kiss.receive_byte(&mut self.node, now, byte) {
            None => return,
            Some(PortRx::Delivered) => {}
            Some(PortRx::KissDropped(_e)) => {
                fw_log!("kiss: frame dropped: {}", _e);
                return;
            }
            Some(PortRx::NodeDropped(_why)) => {
                fw_log!("node: frame dropped: {}", _why);
                bump(&mut self.counters.rx_dropped);
            }
        }
        self.run(now, link);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due (RDP timers).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }

    /// Let time pass: retransmissions, delayed acknowledgements, timeouts.
    pub fn handle_timeout<L: Write>(&mut self, now: Instant, link: &mut L) {
        self.node.handle_timeout(now);
        self.run(now, link);
    }

    /// Until nothing moves: send what is queued, act on each event, retry
    /// stalled echoes. Every step consumes an event, a queued frame or a
    /// received segment, so this ends.
    fn run<L: Write>(&mut self, now: Instant, link: &mut L) {
        loop {
            self.transmit(now, link);
            self.retry_stalled(now);
            let Some(event) = self.node.poll_event() else {
                self.transmit(now, link);
                return;
            };
            self.on_event(now, event);
        }
    }

    fn on_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Received { socket } => self.on_datagram(socket),
            Event::Accepted { .. } => bump(&mut self.counters.accepted),
            Event::Readable { conn } => {
                if !self.echo_segment(now, conn) {
                    // Window full: held (with the connection's later events)
                    // until an acknowledgement makes room.
                    if let Some(slot) = self.stalled.iter_mut().find(|s| s.is_none()) {
                        *slot = Some(conn);
                    }
                }
            }
            Event::Closed { conn, .. } | Event::Failed { conn, .. } => {
                bump(&mut self.counters.ended);
                for s in self.stalled.iter_mut().filter(|s| **s == Some(conn)) {
                    *s = None;
                }
            }
            Event::Reboot | Event::Shutdown => bump(&mut self.counters.reboot_requests),
            Event::Error(_e) => {
                fw_log!("node: {}", _e);
                bump(&mut self.counters.node_errors);
            }
            // Outgoing connections only; this node opens none.
            Event::Connected { .. } | Event::Acknowledged { .. } => {}
        }
    }

    fn retry_stalled(&mut self, now: Instant) {
        for i in 0..CONNS {
            if let Some(conn) = self.stalled[i] {
                if self.echo_segment(now, conn) {
                    self.stalled[i] = None;
                }
            }
        }
    }

    /// Echo the connection's next segment if its window has room; `false`
    /// if it has to wait. A connection that is gone has nothing to wait for.
    fn echo_segment(&mut self, now: Instant, conn: ConnId) -> bool {
        match self.node.send_capacity(conn) {
            Ok(0) => {
                // Not open (yet or any more): nothing can be sent back; a
                // finished connection reports `Closed` from `recv_conn`.
                if !matches!(
                    self.node.conn_state(conn),
                    Ok(csp_core::node::ConnState::Open)
                ) {
                    let _ = self.node.recv_conn(conn, &mut self.scratch);
                    return true;
                }
                return false;
            }
            Ok(_) => {}
            Err(_) => return true,
        }
        match self.node.recv_conn(conn, &mut self.scratch) {
            Ok(0) => {}
            Ok(n) => match self
                .node
                .send(now, conn, self.scratch.get(..n).unwrap_or_default())
            {
                Ok(_) => bump(&mut self.counters.rdp_echoed),
                Err(_e) => {
                    fw_log!("echo: segment not sent: {}", _e);
                    bump(&mut self.counters.send_errors);
                }
            },
            Err(_) => {}
        }
        true
    }

    /// A connectionless packet on the echo or sink socket.
    fn on_datagram(&mut self, socket: SocketId) {
        let Ok(got) = self.node.recv(socket, &mut self.scratch) else {
            return;
        };
        let data = &self.scratch[..got.len];
        let reply = if Some(socket) == self.echo {
            bump(&mut self.counters.echoed);
            self.node.reply(socket, &got.header, data)
        } else if data.is_empty() {
            let s = self.sink_counts;
            let mut counts = [0u8; 8];
            counts[..4].copy_from_slice(&s.packets.to_be_bytes());
            counts[4..].copy_from_slice(&s.bytes.to_be_bytes());
            self.node.reply(socket, &got.header, &counts)
        } else {
            let s = &mut self.sink_counts;
            bump(&mut s.packets);
            s.bytes = s.bytes.wrapping_add(got.len as u32);
            Ok(())
        };
        if let Err(_e) = reply {
            fw_log!("reply not sent: {}", _e);
            bump(&mut self.counters.send_errors);
        }
    }

    /// Every frame the node has for the link, KISS-encoded onto it.
    fn transmit<L: Write>(&mut self, now: Instant, link: &mut L) {
        // The UART cannot fail; a link that can loses the frame (counted as
        // the interface's tx_error; RDP retransmits, connectionless traffic
        // may be lost). The node has one interface, so no frame is handed
        // back for another.
        let _ = self
            .kiss
            .transmit_io(&mut self.node, now, &mut self.scratch, link);
    }
}

fn port_of(p: u8) -> BindPort {
    match Port::new(p) {
        Ok(p) => BindPort::Port(p),
        Err(_) => BindPort::Any,
    }
}

/// A wrapping `+= 1` on a counter.
fn bump(c: &mut u32) {
    *c = c.wrapping_add(1);
}
