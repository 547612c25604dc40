//! A minimal blocking IPC client on the csp-ipc codec, for tests that
//! speak the daemon's protocol frame by frame (host-lib's `Client` is the
//! real one). Every read is bounded by [`WAIT`].

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use csp_core::{Addr, Flags, Header, Port, Prio, Version};
use csp_ipc::{Message, Status};

use crate::WAIT;

/// An owned copy of a decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    HelloAck {
        node_addr: u16,
    },
    RegisterAck {
        status: Status,
        addr: u16,
        port: u8,
    },
    UnregisterAck {
        status: Status,
    },
    Data(Vec<u8>),
    /// The last (or only) page of a control reply.
    ControlReply(String),
    /// A page of a control reply with more to follow.
    ControlPage(String),
    Bye(csp_ipc::ByeReason),
    Error {
        code: csp_ipc::ErrorCode,
        message: String,
    },
    Other(String),
}

pub struct Ipc {
    pub stream: UnixStream,
    buf: Vec<u8>,
    pub node: u16,
}

impl Ipc {
    /// Connect without HELLO.
    pub fn raw(socket: &Path) -> Ipc {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Ipc {
            stream,
            buf: Vec::new(),
            node: 0,
        }
    }

    pub fn connect(socket: &Path, name: &str) -> Ipc {
        let mut c = Ipc::raw(socket);
        c.send(&Message::Hello {
            version: csp_ipc::VERSION,
            name,
        });
        match c.recv() {
            Some(Msg::HelloAck { node_addr }) => c.node = node_addr,
            other => panic!("expected HELLO_ACK, got {other:?}"),
        }
        c
    }

    pub fn send(&mut self, m: &Message<'_>) {
        let bytes = csp_ipc::encode_to_vec(m).unwrap();
        self.stream.write_all(&bytes).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The next message, or None on EOF / timeout.
    pub fn recv(&mut self) -> Option<Msg> {
        loop {
            if let Some((m, n)) = csp_ipc::decode(&self.buf).expect("daemon sent a bad frame") {
                let owned = match m {
                    Message::HelloAck { node_addr, .. } => Msg::HelloAck { node_addr },
                    Message::RegisterAck { status, addr, port } => {
                        Msg::RegisterAck { status, addr, port }
                    }
                    Message::UnregisterAck { status, .. } => Msg::UnregisterAck { status },
                    Message::Data { frame } => Msg::Data(frame.to_vec()),
                    Message::ControlReply {
                        text, more: true, ..
                    } => Msg::ControlPage(text.to_string()),
                    Message::ControlReply { text, .. } => Msg::ControlReply(text.to_string()),
                    Message::Bye(r) => Msg::Bye(r),
                    Message::Error { code, message } => Msg::Error {
                        code,
                        message: message.to_string(),
                    },
                    other => Msg::Other(format!("{other:?}")),
                };
                self.buf.drain(..n);
                return Some(owned);
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next DATA packet, skipping nothing: anything else is a failure.
    pub fn recv_packet(&mut self) -> (Header, Vec<u8>) {
        match self.recv() {
            Some(Msg::Data(frame)) => {
                let h = Header::parse(&frame, Version::V2).unwrap();
                (h, frame[6..].to_vec())
            }
            other => panic!("expected DATA, got {other:?}"),
        }
    }

    pub fn register(&mut self, addr: u16, port: u8) -> (Status, u16, u8) {
        self.send(&Message::Register { addr, port });
        match self.recv() {
            Some(Msg::RegisterAck { status, addr, port }) => (status, addr, port),
            other => panic!("expected REGISTER_ACK, got {other:?}"),
        }
    }

    pub fn unregister(&mut self, addr: u16, port: u8) -> Status {
        self.send(&Message::Unregister { addr, port });
        match self.recv() {
            Some(Msg::UnregisterAck { status }) => status,
            other => panic!("expected UNREGISTER_ACK, got {other:?}"),
        }
    }

    /// A control reply, its pages joined (bounded: the daemon marks the
    /// last page, and a read times out).
    pub fn control(&mut self, c: csp_ipc::Control) -> String {
        self.send(&Message::Control(c));
        let mut text = String::new();
        loop {
            match self.recv() {
                Some(Msg::ControlPage(t)) => text.push_str(&t),
                Some(Msg::ControlReply(t)) => return text + &t,
                other => panic!("expected CONTROL_REPLY, got {other:?}"),
            }
        }
    }

    /// Send `data` from (src, sport) to (dst, dport) with `flags`.
    pub fn send_packet(
        &mut self,
        src: u16,
        sport: u8,
        dst: u16,
        dport: u8,
        flags: Flags,
        data: &[u8],
    ) {
        let h = header(src, sport, dst, dport, flags);
        let mut frame = vec![0u8; 6];
        h.emit(&mut frame, Version::V2).unwrap();
        frame.extend_from_slice(data);
        self.send(&Message::Data { frame: &frame });
    }
}

/// A v2 header, normal priority.
pub fn header(src: u16, sport: u8, dst: u16, dport: u8, flags: Flags) -> Header {
    Header {
        prio: Prio::Normal,
        src: Addr::new(src).unwrap(),
        dst: Addr::new(dst).unwrap(),
        dport: Port::new(dport).unwrap(),
        sport: Port::new(sport).unwrap(),
        flags,
    }
}

impl Ipc {
    /// The next DATA packet within `timeout`, or None.
    pub fn recv_packet_within(&mut self, timeout: Duration) -> Option<(Header, Vec<u8>)> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let got = self.recv();
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        match got {
            Some(Msg::Data(frame)) => {
                let h = Header::parse(&frame, Version::V2).unwrap();
                Some((h, frame[6..].to_vec()))
            }
            None => None,
            other => panic!("expected DATA, got {other:?}"),
        }
    }
}
