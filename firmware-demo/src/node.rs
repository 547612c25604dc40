//! A small CSP node on one KISS interface, built from csp-core's pieces.
//!
//! Stand-in for `csp_core::Node`, which does not exist yet: once it does,
//! this module goes and `main.rs` hands the node the same three things it
//! hands this one (received bytes, a [`Board`] for the service values, the
//! UART to send on), plus `clock::millis()` for RDP. Everything here is
//! target-independent (no registers, no cortex-m), which is why it can be
//! swapped without touching the board code.
//!
//! What it does with one received frame (KISS CRC already checked by the
//! decoder, as libcsp's KISS interface does):
//! 1. drop it unless it is for our address (or broadcast);
//! 2. check and strip the security trailers its header flags announce
//!    (CSP CRC32; HMAC with the shared demo key; XTEA is refused);
//! 3. drop RDP segments: RDP is not served yet (csp-rdp's state machine is
//!    being written; the echo port will then also accept connections);
//! 4. dispatch on the destination port: services 0..=6, echo ([`ECHO_PORT`]),
//!    sink ([`SINK_PORT`]); anything else is dropped;
//! 5. the reply gets the request's CRC32/HMAC options and goes back through
//!    the KISS encoder, one byte at a time (no transmit buffer).
//!
//! Nothing is allocated: the frame being received lives in the decoder, the
//! request and its reply are `Packet`s on the stack while one frame is handled.

use csp_core::header::MAX_HEADER_LEN;
use csp_core::kiss::{Encoder, KissDecoder, KissStats};
use csp_core::security::{HmacKey, SecurityError, SecurityOptions};
use csp_core::service::{Ident, IfStats, ServiceConfig, ServiceContext, ServiceOutcome, Services};
use csp_core::{Addr, Flags, Packet, Port, Version};
use embedded_io::Write;

/// Bytes of data (payload and trailers) a packet may carry: libcsp's default
/// buffer data size.
pub const MTU: usize = 256;

/// A packet of up to [`MTU`] data bytes.
pub type Buf = Packet<{ MTU + MAX_HEADER_LEN }>;

/// Echo service: connectionless packets come back unchanged.
pub const ECHO_PORT: u8 = 10;
/// Sink: counts what it receives; an empty packet asks for the counts.
pub const SINK_PORT: u8 = 11;
/// Ports 0..=6 are the standard services (CMP, ping, ps, memfree, reboot,
/// buffer free, uptime).
const LAST_SERVICE_PORT: u8 = Port::UPTIME.get();
/// Name of the KISS interface in CMP interface statistics (libcsp's default).
pub const IFACE_NAME: &str = "KISS";
/// Packet buffers the node has: the request and its reply.
pub const BUFFERS: u32 = 2;

/// What the node needs from the board to answer the standard services.
pub trait Board {
    /// Seconds since boot.
    fn uptime_s(&self) -> u32;
    /// Free memory in bytes.
    fn memfree(&self) -> u32;
    /// Identification strings.
    fn ident(&self) -> Ident<'static>;
    /// Receive interrupts taken so far (reported as the interface's `irq`).
    fn irqs(&self) -> u32;
}

/// The node's fixed settings.
#[derive(Clone, Copy)]
pub struct NodeConfig {
    /// Our CSP address.
    pub addr: Addr,
    /// Header version on the link.
    pub version: Version,
    /// Key of packets flagged HMAC, both ways.
    pub hmac_key: HmacKey,
}

/// Counters of what happened to received packets (wrapping adds).
#[derive(Clone, Copy, Default)]
pub struct NodeCounters {
    /// Bytes received on the link, framing included.
    pub rx_bytes: u32,
    /// Packets sent.
    pub tx_packets: u32,
    /// Bytes sent on the link, framing included.
    pub tx_bytes: u32,
    /// Frames too short for a header or too long for a packet.
    pub malformed: u32,
    /// Packets for another address.
    pub not_for_us: u32,
    /// Packets whose HMAC did not match.
    pub auth_errors: u32,
    /// Packets with any other trailer error (CRC32, XTEA, truncated).
    pub security_errors: u32,
    /// RDP segments (not served yet).
    pub rdp_refused: u32,
    /// Packets to a port nothing listens on.
    pub unknown_port: u32,
    /// Requests the services did not answer (as libcsp would not either).
    pub no_reply: u32,
    /// Replies that could not be built (trailers would not fit).
    pub tx_errors: u32,
}

/// What the sink on [`SINK_PORT`] has received.
#[derive(Clone, Copy, Default)]
pub struct SinkCounters {
    /// Non-empty packets.
    pub packets: u32,
    /// Their payload bytes (trailers excluded).
    pub bytes: u32,
}

/// The node: KISS receiver, service handler and counters.
pub struct Node<const FRAME_MAX: usize> {
    config: NodeConfig,
    kiss: KissDecoder<FRAME_MAX>,
    services: Services,
    sink: SinkCounters,
    counters: NodeCounters,
}

impl<const FRAME_MAX: usize> Node<FRAME_MAX> {
    /// A node that has received nothing yet.
    pub const fn new(config: NodeConfig) -> Self {
        Node {
            config,
            kiss: KissDecoder::new(config.version),
            services: Services::new(ServiceConfig::new(config.version, config.addr)),
            sink: SinkCounters {
                packets: 0,
                bytes: 0,
            },
            counters: NodeCounters {
                rx_bytes: 0,
                tx_packets: 0,
                tx_bytes: 0,
                malformed: 0,
                not_for_us: 0,
                auth_errors: 0,
                security_errors: 0,
                rdp_refused: 0,
                unknown_port: 0,
                no_reply: 0,
                tx_errors: 0,
            },
        }
    }

    // The three readers below: the firmware reports its counters through
    // CMP interface stats (`if_stats`); these are for tests and debuggers.

    /// What happened to received packets so far.
    #[allow(dead_code)]
    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// What the sink has received.
    #[allow(dead_code)]
    pub fn sink_counters(&self) -> &SinkCounters {
        &self.sink
    }

    /// The KISS decoder's counters (frames delivered and dropped).
    #[allow(dead_code)]
    pub fn kiss_stats(&self) -> &KissStats {
        self.kiss.stats()
    }

    /// Takes one byte from the link; a complete request is answered on `link`.
    pub fn receive<B: Board, W: Write>(&mut self, byte: u8, board: &B, link: &mut W) {
        self.counters.rx_bytes = self.counters.rx_bytes.wrapping_add(1);
        let version = self.config.version;
        // Copy the frame out of the decoder (it is overwritten by the next
        // byte) into a packet we may strip trailers from.
        let request = match self.kiss.push(byte) {
            None => return,
            Some(Err(_e)) => {
                fw_log!("kiss: frame dropped: {:?}", _e);
                return;
            }
            Some(Ok(frame)) => Buf::from_frame(frame, version),
        };
        let Ok(request) = request else {
            self.counters.malformed = self.counters.malformed.wrapping_add(1);
            return;
        };
        if let Some(mut reply) = self.handle(request, board) {
            self.send(&mut reply, link);
        }
    }

    /// Steps 1 to 4 of the module doc: the reply to send, if any.
    fn handle<B: Board>(&mut self, mut request: Buf, board: &B) -> Option<Buf> {
        let version = self.config.version;
        let header = request.header;
        let c = &mut self.counters;
        if header.dst != self.config.addr && !header.dst.is_broadcast(version) {
            c.not_for_us = c.not_for_us.wrapping_add(1);
            return None;
        }
        // Trailers as flagged: nothing is required, what is there is checked.
        let accept = SecurityOptions {
            hmac: Some(self.config.hmac_key),
            accept_missing: true,
            ..SecurityOptions::NONE
        };
        if let Err(e) = accept.verify(&mut request, version) {
            fw_log!(
                "security: dropped packet from {}: {:?}",
                header.src.get(),
                e
            );
            let counter = match e {
                SecurityError::HmacMismatch => &mut c.auth_errors,
                _ => &mut c.security_errors,
            };
            *counter = counter.wrapping_add(1);
            return None;
        }
        if header.flags.contains(Flags::RDP) {
            c.rdp_refused = c.rdp_refused.wrapping_add(1);
            return None;
        }

        let reply_header = self.services.reply_header(&header);
        let mut reply = match header.dport.get() {
            0..=LAST_SERVICE_PORT => self.service(&request, board)?,
            ECHO_PORT => Buf::with_data(reply_header, request.data()).ok()?,
            SINK_PORT => self.sink(&request, reply_header)?,
            _ => {
                let c = &mut self.counters;
                c.unknown_port = c.unknown_port.wrapping_add(1);
                return None;
            }
        };

        // The reply carries the trailers the request carried (libcsp's
        // CSP_O_SAME), so a client asking for HMAC gets an HMAC'd answer.
        let send = SecurityOptions {
            crc: header.flags.contains(Flags::CRC32),
            hmac: header
                .flags
                .contains(Flags::HMAC)
                .then_some(self.config.hmac_key),
            ..SecurityOptions::NONE
        };
        if send.append(&mut reply, version, 0).is_err() {
            let c = &mut self.counters;
            c.tx_errors = c.tx_errors.wrapping_add(1);
            return None;
        }
        Some(reply)
    }

    /// Ports 0..=6 through csp-core's service handler.
    fn service<B: Board>(&mut self, request: &Buf, board: &B) -> Option<Buf> {
        let mut ctx = Context {
            board,
            iface: self.if_stats(board),
        };
        let mut out = [0u8; MTU];
        match self
            .services
            .handle(&request.header, request.data(), &mut ctx, &mut out)
        {
            ServiceOutcome::Reply(r) => Buf::with_data(r.header, out.get(..r.len)?).ok(),
            _other => {
                fw_log!("service: no reply: {:?}", _other);
                let c = &mut self.counters;
                c.no_reply = c.no_reply.wrapping_add(1);
                None
            }
        }
    }

    /// Port 11: count non-empty packets; answer an empty one with the counts
    /// (packets, then bytes, u32 big-endian each).
    fn sink(&mut self, request: &Buf, reply_header: csp_core::Header) -> Option<Buf> {
        let s = &mut self.sink;
        if request.is_empty() {
            let mut counts = [0u8; 8];
            counts[..4].copy_from_slice(&s.packets.to_be_bytes());
            counts[4..].copy_from_slice(&s.bytes.to_be_bytes());
            return Buf::with_data(reply_header, &counts).ok();
        }
        s.packets = s.packets.wrapping_add(1);
        s.bytes = s.bytes.wrapping_add(request.len() as u32);
        None
    }

    /// KISS-encodes `reply` onto the link.
    fn send<W: Write>(&mut self, reply: &mut Buf, link: &mut W) {
        let version = self.config.version;
        let encoded = reply
            .frame(version)
            .ok()
            .and_then(|frame| Encoder::new(frame, version).ok());
        let Some(encoder) = encoded else {
            self.counters.tx_errors = self.counters.tx_errors.wrapping_add(1);
            return;
        };
        let mut sent = 0u32;
        for byte in encoder {
            // The UART cannot fail; a link that can just loses the frame.
            if link.write_all(&[byte]).is_err() {
                self.counters.tx_errors = self.counters.tx_errors.wrapping_add(1);
                return;
            }
            sent = sent.wrapping_add(1);
        }
        let c = &mut self.counters;
        c.tx_packets = c.tx_packets.wrapping_add(1);
        c.tx_bytes = c.tx_bytes.wrapping_add(sent);
    }

    /// The KISS interface's counters in libcsp's terms.
    fn if_stats<B: Board>(&self, board: &B) -> IfStats {
        let k: &KissStats = self.kiss.stats();
        let c = &self.counters;
        IfStats {
            tx: c.tx_packets,
            rx: k.frames_ok,
            tx_error: c.tx_errors,
            rx_error: k.bad_crc,
            drop: c
                .not_for_us
                .wrapping_add(c.rdp_refused)
                .wrapping_add(c.unknown_port)
                .wrapping_add(c.security_errors)
                .wrapping_add(c.malformed),
            autherr: c.auth_errors,
            frame: k
                .oversize
                .wrapping_add(k.bad_escape)
                .wrapping_add(k.too_short),
            txbytes: c.tx_bytes,
            rxbytes: c.rx_bytes,
            irq: board.irqs(),
        }
    }
}

/// What the service handler asks for, answered from the board and the node.
struct Context<'a, B> {
    board: &'a B,
    iface: IfStats,
}

impl<B: Board> ServiceContext for Context<'_, B> {
    fn uptime_s(&self) -> u32 {
        self.board.uptime_s()
    }

    fn memfree(&self) -> u32 {
        self.board.memfree()
    }

    /// The request's buffer is in use while it is being answered.
    fn buf_free(&self) -> u32 {
        BUFFERS - 1
    }

    fn ident(&self) -> Ident<'_> {
        self.board.ident()
    }

    fn if_stats(&self, name: &str) -> Option<IfStats> {
        (name == IFACE_NAME).then_some(self.iface)
    }
}
