//! Daemon-wide counters, printed by the STATS control request.

use std::fmt;

/// Counters of packets the daemon handled or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets delivered to a client.
    pub delivered: u64,
    /// Packets sent on through the route table.
    pub forwarded: u64,
    /// Packets for another node with no route.
    pub unroutable: u64,
    /// Packets for this node with no client and no service on the port.
    pub no_listener: u64,
    /// Replies of the built-in services.
    pub service_replies: u64,
    /// DATA refused: spoofed source, not a packet.
    pub rejected_packets: u64,
    /// Frames a link could not send.
    pub link_errors: u64,
    /// IPC connections closed for protocol errors.
    pub ipc_errors: u64,
    /// Connections refused because `ipc.max_clients` were connected.
    pub clients_refused: u64,
    /// Connections closed for not sending HELLO within `ipc.hello_timeout_ms`.
    pub ipc_hello_timeouts: u64,
    /// Connections closed for a frame left half-sent past `ipc.frame_timeout_ms`.
    pub ipc_frame_timeouts: u64,
    /// REGISTERs refused by the per-client quotas.
    pub quota_refused: u64,
    /// Packets from a hub link whose route leads back into that same link
    /// (another node's traffic seen in promiscuous mode, a broadcast, our
    /// own frame echoed by the hub): dropped, as libcsp does, so a hub
    /// never loops a frame.
    pub same_link: u64,
    /// Packets for a client dropped because its queue was full and the
    /// policy is drop-newest (each packet counts once, by its outcome).
    pub queue_dropped: u64,
    /// Packets too large to hand on: to a client (no DATA frame holds
    /// them) or to a service.
    pub too_large: u64,
    /// Service requests taken with no reply (bad CRC, refused, reboot).
    pub service_no_reply: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "delivered {}", self.delivered)?;
        writeln!(f, "forwarded {}", self.forwarded)?;
        writeln!(f, "unroutable {}", self.unroutable)?;
        writeln!(f, "no_listener {}", self.no_listener)?;
        writeln!(f, "service_replies {}", self.service_replies)?;
        writeln!(f, "rejected_packets {}", self.rejected_packets)?;
        writeln!(f, "link_errors {}", self.link_errors)?;
        writeln!(f, "ipc_errors {}", self.ipc_errors)?;
        writeln!(f, "clients_refused {}", self.clients_refused)?;
        writeln!(f, "ipc_hello_timeouts {}", self.ipc_hello_timeouts)?;
        writeln!(f, "ipc_frame_timeouts {}", self.ipc_frame_timeouts)?;
        writeln!(f, "quota_refused {}", self.quota_refused)?;
        writeln!(f, "same_link {}", self.same_link)?;
        writeln!(f, "queue_dropped {}", self.queue_dropped)?;
        writeln!(f, "too_large {}", self.too_large)?;
        writeln!(f, "service_no_reply {}", self.service_no_reply)
    }
}
