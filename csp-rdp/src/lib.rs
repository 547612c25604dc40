//! Sans-IO RDP (the Reliable Datagram Protocol as CSP puts it on the wire).
//!
//! This crate is a leaf: it knows its own 5-byte header ([`header`]) and the
//! connection state machine ([`Connection`]), and it is the home of the
//! protocol core's time types ([`time`]).
//!
//! A connection is driven like quinn-proto's: feed it received segments
//! ([`Connection::handle_segment`]) and time ([`Connection::handle_timeout`]),
//! then drain [`Connection::poll_transmit`], [`Connection::poll_event`] and
//! [`Connection::poll_timeout`]. It never reads a clock, allocates or blocks.
//!
//! Where libcsp is wrong, this one is not: a send is reported
//! [`Event::Acknowledged`] only when the peer has it, retransmission is
//! bounded and backs off, a dead peer fails the connection with an
//! [`Event::Failed`], out-of-order segments are held and delivered once,
//! and every input, however malformed, is counted and ignored.
//!
//! ```
//! use csp_rdp::{Connection, Event, Options, time::Instant};
//!
//! // Room for 8 segments in flight of up to 200 user bytes each.
//! type Rdp = Connection<8, 200>;
//! let now = Instant::from_millis(0);
//! let mut buf = [0u8; Rdp::MAX_SEGMENT_LEN];
//!
//! // The ISNs would come from an RNG.
//! let mut client = Rdp::connect(now, Options::default(), 0x1234).unwrap();
//! let syn = client.poll_transmit(now, &mut buf).unwrap();
//! let mut server = Rdp::accept(now, &buf[..syn.len], Options::default(), 0x4321).unwrap();
//!
//! // Shuttle segments until both ends are quiet.
//! fn pump(from: &mut Rdp, to: &mut Rdp, now: Instant, buf: &mut [u8]) {
//!     while let Some(t) = from.poll_transmit(now, buf) {
//!         to.handle_segment(now, &buf[..t.len]);
//!     }
//! }
//! pump(&mut server, &mut client, now, &mut buf);
//! pump(&mut client, &mut server, now, &mut buf);
//! assert_eq!(client.poll_event(), Some(Event::Connected));
//! assert_eq!(server.poll_event(), Some(Event::Connected));
//!
//! let seq = client.send(now, b"hello").unwrap();
//! pump(&mut client, &mut server, now, &mut buf);
//! match server.poll_event() {
//!     Some(Event::Data(p)) => assert_eq!(&p[..], b"hello"),
//!     other => panic!("{other:?}"),
//! }
//! // The server delays its ACK (libcsp's default 250 ms); time passes.
//! let later = server.poll_timeout().unwrap();
//! server.handle_timeout(later);
//! pump(&mut server, &mut client, later, &mut buf);
//! assert_eq!(client.poll_event(), Some(Event::Acknowledged { through: seq }));
//! ```
//!
//! With the `sim` feature (which needs `std`), [`sim`] provides a seeded
//! lossy link and a two-connection test harness for other crates' tests.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(feature = "std", test))]
extern crate std;

mod conn;
mod event;
pub mod header;
pub mod options;
mod ring;
pub mod seq;
#[cfg(feature = "sim")]
pub mod sim;
pub mod time;
mod timer;

pub use conn::{AcceptError, AcceptPlan, Connection, Counters, Role, State};
pub use event::{CloseReason, Event, FailReason, Payload, SendError, Transmit};
pub use header::{Flags, HeaderError, RdpHeader, SynOptions};
pub use options::{Options, OptionsError};
