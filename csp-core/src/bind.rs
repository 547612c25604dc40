//! The port table: which socket (or daemon client) an incoming packet for
//! (destination address, destination port) belongs to.
//!
//! A binding names a local address or any address, and a port or any port
//! (libcsp's `CSP_ANY`, 255, a wildcard that never appears on the wire).
//! The more specific binding wins, in this order:
//!
//! 1. exact address, exact port (a daemon client bound to one node address);
//! 2. any address, exact port (firmware's `csp_bind(sock, port)`);
//! 3. exact address, any port (a client owning a whole node address);
//! 4. any address, any port (the catch-all socket).
//!
//! Ports up to [`BindConfig::max_bind_port`] may be bound explicitly; the
//! ones above are reserved for ephemeral (outgoing connection) ports, which
//! the table hands out itself from a configurable range. Unlike libcsp
//! (issue #987), the wildcard is a variant of its own and is never mistaken
//! for a port number above the limit.

use core::fmt;

use heapless::Vec;

use crate::header::{Addr, Port};

/// libcsp's wildcard port number for binds (`CSP_ANY`); never on the wire.
pub const CSP_ANY: u8 = 255;

/// The port side of a binding: one port, or every port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BindPort {
    /// Exactly this port.
    Port(Port),
    /// Every port without a binding of its own (`CSP_ANY`).
    Any,
}

impl BindPort {
    /// The bind port of a libcsp-style number: [`CSP_ANY`] is the wildcard,
    /// 0..=63 a port, anything else an error. The wildcard is recognised
    /// before any range check (libcsp #987).
    pub const fn from_raw(raw: u8) -> Result<BindPort, BindError> {
        if raw == CSP_ANY {
            return Ok(BindPort::Any);
        }
        match Port::new(raw) {
            Ok(port) => Ok(BindPort::Port(port)),
            Err(_) => Err(BindError::PortOutOfRange {
                port: raw,
                max: Port::MAX,
            }),
        }
    }

    /// The libcsp number: the port, or [`CSP_ANY`].
    pub const fn to_raw(self) -> u8 {
        match self {
            BindPort::Port(p) => p.get(),
            BindPort::Any => CSP_ANY,
        }
    }
}

impl From<Port> for BindPort {
    fn from(port: Port) -> Self {
        BindPort::Port(port)
    }
}

impl fmt::Display for BindPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindPort::Port(p) => write!(f, "{p}"),
            BindPort::Any => f.write_str("ANY"),
        }
    }
}

/// The address side of a binding: one local address, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BindAddr {
    /// Packets to this destination address only.
    Addr(Addr),
    /// Packets to any of the node's addresses.
    Any,
}

impl BindAddr {
    /// True if traffic for one could also be traffic for the other: a
    /// wildcard overlaps everything, addresses only themselves.
    const fn overlaps(self, other: BindAddr) -> bool {
        match (self, other) {
            (BindAddr::Addr(a), BindAddr::Addr(b)) => a.get() == b.get(),
            _ => true,
        }
    }
}

impl From<Addr> for BindAddr {
    fn from(addr: Addr) -> Self {
        BindAddr::Addr(addr)
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Addr(a) => write!(f, "{a}"),
            BindAddr::Any => f.write_str("ANY"),
        }
    }
}

/// What a binding is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BindKey {
    /// Destination address matched.
    pub addr: BindAddr,
    /// Destination port matched.
    pub port: BindPort,
}

impl BindKey {
    /// How well the key matches (dst, dport): 0 best .. 3 worst (the order in
    /// the module docs), or `None` if it does not match at all.
    fn rank(&self, dst: Addr, dport: Port) -> Option<u8> {
        let addr_exact = match self.addr {
            BindAddr::Addr(a) if a == dst => true,
            BindAddr::Addr(_) => return None,
            BindAddr::Any => false,
        };
        let port_exact = match self.port {
            BindPort::Port(p) if p == dport => true,
            BindPort::Port(_) => return None,
            BindPort::Any => false,
        };
        // The port is the stronger criterion: a bound port beats an address
        // owner's catch-all, so a service on (ANY, port) keeps its traffic.
        Some(match (addr_exact, port_exact) {
            (true, true) => 0,
            (false, true) => 1,
            (true, false) => 2,
            (false, false) => 3,
        })
    }
}

impl fmt::Display for BindKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

/// Why a bind, unbind or ephemeral allocation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BindError {
    /// Exactly this (address, port) is already bound.
    PortInUse(BindKey),
    /// The port is above the largest bindable one (the ports above are
    /// reserved for ephemeral use, or do not exist on the wire).
    PortOutOfRange {
        /// The port asked for.
        port: u8,
        /// The largest port that may be bound.
        max: u8,
    },
    /// Every slot of the table is taken.
    TableFull,
    /// Nothing is bound with that key.
    NotBound,
    /// Every port of the ephemeral range is taken for that address.
    EphemeralExhausted,
    /// A [`BindConfig`] whose ranges overlap, are empty, or exceed port 63.
    InvalidConfig,
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BindError::PortInUse(key) => write!(f, "port {key} already bound"),
            BindError::PortOutOfRange { port, max } => {
                write!(
                    f,
                    "port {port} can not be bound (bindable 0..={max} or ANY)"
                )
            }
            BindError::TableFull => f.write_str("port table full"),
            BindError::NotBound => f.write_str("port not bound"),
            BindError::EphemeralExhausted => f.write_str("no free ephemeral port"),
            BindError::InvalidConfig => f.write_str("invalid port configuration"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BindError {}

/// Which ports may be bound and which are handed out as ephemeral ports.
///
/// Ports `0..=max_bind_port` are bindable; the ephemeral range
/// `ephemeral_first..=ephemeral_last` must lie above them, within 0..=63.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BindConfig {
    max_bind_port: u8,
    ephemeral_first: u8,
    ephemeral_last: u8,
}

impl BindConfig {
    /// libcsp's default `CSP_PORT_MAX_BIND`: ports 0..=16 are for services.
    pub const DEFAULT_MAX_BIND_PORT: u8 = 16;

    /// libcsp 2.x in its default build: bind up to 16, outgoing connections
    /// use 17..=24. Only eight concurrent outgoing connections per address,
    /// so it is not the default here; use it to mimic a libcsp node exactly.
    pub const LIBCSP2: BindConfig = BindConfig {
        max_bind_port: 16,
        ephemeral_first: 17,
        ephemeral_last: 24,
    };

    /// The default: libcsp's bind limit (0..=16) and every port above it,
    /// 17..=63, as ephemeral range: those ports can not be bound anyway, and
    /// a ground daemon with many clients needs the room.
    pub const DEFAULT: BindConfig = BindConfig {
        max_bind_port: Self::DEFAULT_MAX_BIND_PORT,
        ephemeral_first: Self::DEFAULT_MAX_BIND_PORT + 1,
        ephemeral_last: Port::MAX,
    };

    /// A configuration, checked: `max_bind_port < ephemeral_first <=
    /// ephemeral_last <= 63`.
    pub const fn new(
        max_bind_port: u8,
        ephemeral_first: u8,
        ephemeral_last: u8,
    ) -> Result<BindConfig, BindError> {
        if max_bind_port >= ephemeral_first
            || ephemeral_first > ephemeral_last
            || ephemeral_last > Port::MAX
        {
            return Err(BindError::InvalidConfig);
        }
        Ok(BindConfig {
            max_bind_port,
            ephemeral_first,
            ephemeral_last,
        })
    }

    /// The largest port that may be bound explicitly.
    pub const fn max_bind_port(&self) -> u8 {
        self.max_bind_port
    }

    /// First port of the ephemeral range.
    pub const fn ephemeral_first(&self) -> u8 {
        self.ephemeral_first
    }

    /// Last port of the ephemeral range (inclusive).
    pub const fn ephemeral_last(&self) -> u8 {
        self.ephemeral_last
    }
}

impl Default for BindConfig {
    fn default() -> Self {
        BindConfig::DEFAULT
    }
}

/// One entry of the table: a key and its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Binding<T> {
    /// What it matches.
    pub key: BindKey,
    /// Who gets the packets: a socket or client handle of the caller's.
    pub owner: T,
    /// True if the port was handed out by [`PortTable::bind_ephemeral`].
    pub ephemeral: bool,
}

/// At most `N` bindings of (address, port) to an owner `T` (a small handle:
/// socket index, client id).
#[derive(Debug, Clone)]
pub struct PortTable<T, const N: usize> {
    config: BindConfig,
    bindings: Vec<Binding<T>, N>,
    /// Where the next ephemeral search starts. Moving it past each port
    /// handed out means a port just freed is the last to be reused, so late
    /// packets of an old connection do not reach a new one.
    next_ephemeral: u8,
}

impl<T, const N: usize> Default for PortTable<T, N> {
    fn default() -> Self {
        PortTable::new(BindConfig::DEFAULT)
    }
}

impl<T, const N: usize> PortTable<T, N> {
    /// An empty table.
    pub const fn new(config: BindConfig) -> Self {
        PortTable {
            config,
            bindings: Vec::new(),
            next_ephemeral: config.ephemeral_first,
        }
    }

    /// The port configuration.
    pub const fn config(&self) -> BindConfig {
        self.config
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    /// True if nothing is bound.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Maximum number of bindings.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// The bindings, in no particular order.
    pub fn iter(&self) -> core::slice::Iter<'_, Binding<T>> {
        self.bindings.iter()
    }

    /// Removes every binding (the ephemeral rotation keeps its place).
    pub fn clear(&mut self) {
        self.bindings.clear();
    }

    fn position(&self, key: BindKey) -> Option<usize> {
        self.bindings.iter().position(|b| b.key == key)
    }

    /// Binds (addr, port) to `owner`. Only the very same key conflicts: a
    /// more specific binding may sit beside a wildcard one and takes its
    /// traffic (see the module docs). On error `owner` is dropped, which is
    /// why it should be a handle.
    pub fn bind(&mut self, addr: BindAddr, port: BindPort, owner: T) -> Result<(), BindError> {
        if let BindPort::Port(p) = port {
            if p.get() > self.config.max_bind_port {
                return Err(BindError::PortOutOfRange {
                    port: p.get(),
                    max: self.config.max_bind_port,
                });
            }
        }
        self.insert(BindKey { addr, port }, owner, false)
    }

    /// [`bind`](PortTable::bind) with a libcsp-style port number, where
    /// [`CSP_ANY`] is the wildcard.
    pub fn bind_raw(&mut self, addr: BindAddr, port: u8, owner: T) -> Result<(), BindError> {
        let port = match BindPort::from_raw(port) {
            Ok(p) => p,
            // Report the configured limit, not the wire limit: it is the one
            // the caller ran into.
            Err(_) => {
                return Err(BindError::PortOutOfRange {
                    port,
                    max: self.config.max_bind_port,
                })
            }
        };
        self.bind(addr, port, owner)
    }

    fn insert(&mut self, key: BindKey, owner: T, ephemeral: bool) -> Result<(), BindError> {
        if self.position(key).is_some() {
            return Err(BindError::PortInUse(key));
        }
        self.bindings
            .push(Binding {
                key,
                owner,
                ephemeral,
            })
            .map_err(|_| BindError::TableFull)?;
        csp_debug!("bound {}:{}", key.addr, key.port);
        Ok(())
    }

    /// True if binding `port` on `addr` would take traffic from, or lose it
    /// to, an existing binding of the same port.
    fn port_taken(&self, addr: BindAddr, port: Port) -> bool {
        self.bindings
            .iter()
            .any(|b| b.key.port == BindPort::Port(port) && b.key.addr.overlaps(addr))
    }

    /// Hands out a free port of the ephemeral range for `addr` (a source port
    /// for an outgoing connection) and binds it to `owner`. Ports rotate
    /// through the range, so the port freed last is reused last. A port is
    /// free if no binding of that port overlaps `addr`, so different node
    /// addresses may use the same ephemeral port at once.
    pub fn bind_ephemeral(&mut self, addr: BindAddr, owner: T) -> Result<Port, BindError> {
        if self.bindings.is_full() {
            return Err(BindError::TableFull);
        }
        let (first, last) = (self.config.ephemeral_first, self.config.ephemeral_last);
        let span = u16::from(last - first) + 1;
        let start = if (first..=last).contains(&self.next_ephemeral) {
            self.next_ephemeral - first
        } else {
            0
        };
        for i in 0..span {
            let raw = first + ((u16::from(start) + i) % span) as u8;
            let Ok(port) = Port::new(raw) else {
                // Ranges are checked to end at 63 or below; nothing to find beyond.
                break;
            };
            if self.port_taken(addr, port) {
                continue;
            }
            self.insert(
                BindKey {
                    addr,
                    port: BindPort::Port(port),
                },
                owner,
                true,
            )?;
            self.next_ephemeral = if raw == last { first } else { raw + 1 };
            return Ok(port);
        }
        Err(BindError::EphemeralExhausted)
    }

    /// Removes the binding with exactly this key and returns its owner.
    pub fn unbind(&mut self, addr: BindAddr, port: BindPort) -> Result<T, BindError> {
        let at = self
            .position(BindKey { addr, port })
            // Always true; lets the compiler drop `swap_remove`'s panic path.
            .filter(|&at| at < self.bindings.len())
            .ok_or(BindError::NotBound)?;
        Ok(self.bindings.swap_remove(at).owner)
    }

    /// Removes every binding for which `remove(key, owner)` is true and
    /// returns how many went.
    pub fn unbind_where<F>(&mut self, mut remove: F) -> usize
    where
        F: FnMut(&BindKey, &T) -> bool,
    {
        let before = self.bindings.len();
        self.bindings.retain(|b| !remove(&b.key, &b.owner));
        before - self.bindings.len()
    }

    /// The owner bound to exactly this key (no wildcard matching).
    pub fn get(&self, addr: BindAddr, port: BindPort) -> Option<&T> {
        self.position(BindKey { addr, port })
            .and_then(|i| self.bindings.get(i))
            .map(|b| &b.owner)
    }

    /// The binding a packet to (dst, dport) is delivered to: the most
    /// specific matching one (order in the module docs).
    pub fn lookup_binding(&self, dst: Addr, dport: Port) -> Option<&Binding<T>> {
        let mut best: Option<(u8, &Binding<T>)> = None;
        for b in &self.bindings {
            if let Some(rank) = b.key.rank(dst, dport) {
                if rank == 0 {
                    return Some(b);
                }
                if best.is_none_or(|(r, _)| rank < r) {
                    best = Some((rank, b));
                }
            }
        }
        best.map(|(_, b)| b)
    }

    /// The owner of the packets to (dst, dport), if any.
    pub fn lookup(&self, dst: Addr, dport: Port) -> Option<&T> {
        self.lookup_binding(dst, dport).map(|b| &b.owner)
    }
}

impl<T: PartialEq, const N: usize> PortTable<T, N> {
    /// Removes every binding of `owner` (a closed client frees all its
    /// ports at once) and returns how many went.
    pub fn unbind_owner(&mut self, owner: &T) -> usize {
        self.unbind_where(|_, o| o == owner)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;
    use std::vec::Vec as StdVec;

    fn a(v: u16) -> Addr {
        Addr::new(v).unwrap()
    }
    fn p(v: u8) -> Port {
        Port::new(v).unwrap()
    }
    fn at(v: u16) -> BindAddr {
        BindAddr::Addr(a(v))
    }
    fn port(v: u8) -> BindPort {
        BindPort::Port(p(v))
    }

    #[test]
    fn lookup_order_exact_then_wildcards() {
        let mut t = PortTable::<&str, 8>::default();
        t.bind(BindAddr::Any, BindPort::Any, "catch-all").unwrap();
        t.bind(at(5), BindPort::Any, "addr-owner").unwrap();
        t.bind(BindAddr::Any, port(10), "service").unwrap();
        t.bind(at(5), port(10), "client").unwrap();
        assert_eq!(t.lookup(a(5), p(10)), Some(&"client"));
        assert_eq!(t.lookup(a(6), p(10)), Some(&"service"));
        assert_eq!(t.lookup(a(5), p(11)), Some(&"addr-owner"));
        assert_eq!(t.lookup(a(6), p(11)), Some(&"catch-all"));
        // Peel them off one by one: the next in order takes over.
        t.unbind(at(5), port(10)).unwrap();
        assert_eq!(t.lookup(a(5), p(10)), Some(&"service"));
        t.unbind(BindAddr::Any, port(10)).unwrap();
        assert_eq!(t.lookup(a(5), p(10)), Some(&"addr-owner"));
        t.unbind(at(5), BindPort::Any).unwrap();
        assert_eq!(t.lookup(a(5), p(10)), Some(&"catch-all"));
        t.unbind(BindAddr::Any, BindPort::Any).unwrap();
        assert_eq!(t.lookup(a(5), p(10)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn port_in_use_only_for_the_same_key() {
        let mut t = PortTable::<u32, 8>::default();
        t.bind(BindAddr::Any, port(10), 1).unwrap();
        assert_eq!(
            t.bind(BindAddr::Any, port(10), 2),
            Err(BindError::PortInUse(BindKey {
                addr: BindAddr::Any,
                port: port(10)
            }))
        );
        t.bind(at(3), port(10), 3).unwrap();
        assert_eq!(
            t.bind(at(3), port(10), 4),
            Err(BindError::PortInUse(BindKey {
                addr: at(3),
                port: port(10)
            }))
        );
        t.bind(at(4), port(10), 5).unwrap();
        t.bind(BindAddr::Any, BindPort::Any, 6).unwrap();
        assert!(matches!(
            t.bind(BindAddr::Any, BindPort::Any, 7),
            Err(BindError::PortInUse(_))
        ));
        assert_eq!(t.get(at(3), port(10)), Some(&3));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn port_out_of_range_and_the_any_wildcard() {
        let mut t = PortTable::<u32, 8>::default();
        // 17 is above the default bind limit of 16: reserved for ephemeral use.
        assert_eq!(
            t.bind(BindAddr::Any, port(17), 1),
            Err(BindError::PortOutOfRange { port: 17, max: 16 })
        );
        t.bind(BindAddr::Any, port(16), 1).unwrap();
        assert_eq!(
            t.bind_raw(BindAddr::Any, 64, 1),
            Err(BindError::PortOutOfRange { port: 64, max: 16 })
        );
        assert_eq!(
            t.bind_raw(BindAddr::Any, 254, 1),
            Err(BindError::PortOutOfRange { port: 254, max: 16 })
        );
        // libcsp #987: CSP_ANY is above every limit numerically, yet binds.
        t.bind_raw(BindAddr::Any, CSP_ANY, 2).unwrap();
        assert_eq!(t.lookup(a(1), p(40)), Some(&2));
        assert_eq!(BindPort::from_raw(CSP_ANY), Ok(BindPort::Any));
        assert_eq!(BindPort::Any.to_raw(), 255);
        assert_eq!(BindPort::from_raw(63).map(BindPort::to_raw), Ok(63));
        assert_eq!(
            BindPort::from_raw(64),
            Err(BindError::PortOutOfRange { port: 64, max: 63 })
        );
        // A larger bind limit moves the line.
        let mut t = PortTable::<u32, 8>::new(BindConfig::new(47, 48, 63).unwrap());
        t.bind(BindAddr::Any, port(47), 1).unwrap();
        assert!(t.bind(BindAddr::Any, port(48), 1).is_err());
    }

    #[test]
    fn table_full_and_not_bound() {
        let mut t = PortTable::<u32, 2>::default();
        t.bind(BindAddr::Any, port(1), 1).unwrap();
        t.bind(BindAddr::Any, port(2), 1).unwrap();
        assert_eq!(t.bind(BindAddr::Any, port(3), 1), Err(BindError::TableFull));
        assert_eq!(
            t.bind_ephemeral(BindAddr::Any, 1),
            Err(BindError::TableFull)
        );
        assert_eq!(t.unbind(BindAddr::Any, port(3)), Err(BindError::NotBound));
        assert_eq!(t.unbind(at(1), port(1)), Err(BindError::NotBound));
        assert_eq!(t.unbind(BindAddr::Any, port(1)), Ok(1));
        assert_eq!(t.unbind(BindAddr::Any, port(1)), Err(BindError::NotBound));
        t.bind(BindAddr::Any, port(3), 1).unwrap();
    }

    #[test]
    fn config_is_checked() {
        assert_eq!(BindConfig::new(16, 16, 24), Err(BindError::InvalidConfig));
        assert_eq!(BindConfig::new(16, 25, 24), Err(BindError::InvalidConfig));
        assert_eq!(BindConfig::new(16, 17, 64), Err(BindError::InvalidConfig));
        assert_eq!(
            BindConfig::new(62, 63, 63).map(|c| c.ephemeral_first()),
            Ok(63)
        );
        assert_eq!(BindConfig::new(16, 17, 24), Ok(BindConfig::LIBCSP2));
        assert_eq!(BindConfig::new(16, 17, 63), Ok(BindConfig::default()));
    }

    #[test]
    fn ephemeral_rotates_and_exhausts() {
        let cfg = BindConfig::new(16, 17, 20).unwrap();
        let mut t = PortTable::<u32, 16>::new(cfg);
        let got: StdVec<u8> = (0..4)
            .map(|i| t.bind_ephemeral(at(1), i).unwrap().get())
            .collect();
        assert_eq!(got, [17, 18, 19, 20]);
        assert_eq!(
            t.bind_ephemeral(at(1), 9),
            Err(BindError::EphemeralExhausted)
        );
        // A wildcard-address request overlaps address 1: nothing free either.
        assert_eq!(
            t.bind_ephemeral(BindAddr::Any, 9),
            Err(BindError::EphemeralExhausted)
        );
        // Another address has the whole range to itself.
        assert_eq!(t.bind_ephemeral(at(2), 9).map(Port::get), Ok(17));
        // Free 18 and 19: the shared cursor sits at 18, so they come back in
        // rotation order.
        t.unbind(at(1), port(18)).unwrap();
        t.unbind(at(1), port(19)).unwrap();
        assert_eq!(t.bind_ephemeral(at(1), 5).map(Port::get), Ok(18));
        assert_eq!(t.bind_ephemeral(at(1), 6).map(Port::get), Ok(19));
        // A freed port is not handed out again while others are free.
        t.unbind(at(1), port(19)).unwrap();
        let next = t.bind_ephemeral(at(3), 7).unwrap().get();
        assert_ne!(next, 19);
        assert_eq!(t.iter().filter(|b| b.ephemeral).count(), 5);
        // A wildcard-address ephemeral port is taken for every address.
        let mut t = PortTable::<u32, 16>::new(BindConfig::new(16, 17, 18).unwrap());
        assert_eq!(t.bind_ephemeral(BindAddr::Any, 1).map(Port::get), Ok(17));
        assert_eq!(t.bind_ephemeral(at(7), 2).map(Port::get), Ok(18));
        assert_eq!(t.bind_ephemeral(at(8), 3).map(Port::get), Ok(18));
        assert_eq!(
            t.bind_ephemeral(at(7), 4),
            Err(BindError::EphemeralExhausted)
        );
        t.bind(at(7), port(5), 5).unwrap();
        assert!(!t.iter().find(|b| b.owner == 5).unwrap().ephemeral);
    }

    #[test]
    fn ephemeral_just_freed_is_reused_last() {
        let cfg = BindConfig::new(16, 17, 24).unwrap();
        let mut t = PortTable::<u32, 16>::new(cfg);
        let first = t.bind_ephemeral(at(1), 1).unwrap();
        t.unbind(at(1), BindPort::Port(first)).unwrap();
        // Seven other ports come first, then the freed one again.
        let mut seen = StdVec::new();
        for i in 0..8 {
            let got = t.bind_ephemeral(at(1), 10 + i).unwrap();
            seen.push(got.get());
        }
        assert_eq!(seen, [18, 19, 20, 21, 22, 23, 24, 17]);
    }

    #[test]
    fn unbind_owner_frees_everything_of_a_client() {
        let mut t = PortTable::<u32, 8>::default();
        t.bind(at(5), port(10), 1).unwrap();
        t.bind(at(5), port(11), 2).unwrap();
        t.bind(at(5), BindPort::Any, 1).unwrap();
        t.bind_ephemeral(at(5), 1).unwrap();
        assert_eq!(t.unbind_owner(&1), 3);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(a(5), p(10)), None);
        assert_eq!(t.lookup(a(5), p(11)), Some(&2));
        assert_eq!(t.unbind_owner(&1), 0);
        assert_eq!(t.unbind_where(|k, _| k.port == port(11)), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn display() {
        let key = BindKey {
            addr: BindAddr::Any,
            port: port(10),
        };
        assert_eq!(key.to_string(), "ANY:10");
        assert_eq!(
            BindError::PortInUse(BindKey {
                addr: at(3),
                port: BindPort::Any
            })
            .to_string(),
            "port 3:ANY already bound"
        );
        assert_eq!(
            BindError::PortOutOfRange { port: 20, max: 16 }.to_string(),
            "port 20 can not be bound (bindable 0..=16 or ANY)"
        );
    }

    /// The naive model: try the four keys in priority order.
    fn model_lookup(bound: &[(BindKey, u32)], dst: Addr, dport: Port) -> Option<u32> {
        let order = [
            (BindAddr::Addr(dst), BindPort::Port(dport)),
            (BindAddr::Any, BindPort::Port(dport)),
            (BindAddr::Addr(dst), BindPort::Any),
            (BindAddr::Any, BindPort::Any),
        ];
        order.iter().find_map(|&(addr, port)| {
            bound
                .iter()
                .find(|(k, _)| *k == BindKey { addr, port })
                .map(|(_, o)| *o)
        })
    }

    fn arb_key() -> impl Strategy<Value = BindKey> {
        let addr = prop_oneof![Just(BindAddr::Any), (0u16..4).prop_map(at)];
        let port = prop_oneof![Just(BindPort::Any), (0u8..4).prop_map(port)];
        (addr, port).prop_map(|(addr, port)| BindKey { addr, port })
    }

    proptest! {
        #[test]
        fn lookup_agrees_with_model(
            ops in proptest::collection::vec((any::<bool>(), arb_key()), 0..40),
            probes in proptest::collection::vec((0u16..5, 0u8..5), 1..20),
        ) {
            let mut t = PortTable::<u32, 12>::default();
            let mut model: StdVec<(BindKey, u32)> = StdVec::new();
            for (i, (bind, key)) in ops.into_iter().enumerate() {
                let owner = i as u32;
                if bind {
                    let r = t.bind(key.addr, key.port, owner);
                    if model.iter().any(|(k, _)| *k == key) {
                        prop_assert_eq!(r, Err(BindError::PortInUse(key)));
                    } else if model.len() == 12 {
                        prop_assert_eq!(r, Err(BindError::TableFull));
                    } else {
                        prop_assert_eq!(r, Ok(()));
                        model.push((key, owner));
                    }
                } else {
                    let r = t.unbind(key.addr, key.port);
                    match model.iter().position(|(k, _)| *k == key) {
                        Some(i) => prop_assert_eq!(r, Ok(model.remove(i).1)),
                        None => prop_assert_eq!(r, Err(BindError::NotBound)),
                    }
                }
            }
            for (dst, dport) in probes {
                prop_assert_eq!(
                    t.lookup(a(dst), p(dport)).copied(),
                    model_lookup(&model, a(dst), p(dport))
                );
            }
        }

        #[test]
        fn ephemeral_ports_stay_in_range_and_unique(
            first in 17u8..64, len in 0u8..8, requests in proptest::collection::vec((0u16..3, any::<bool>()), 0..40),
        ) {
            let last = first.saturating_add(len).min(63);
            let cfg = BindConfig::new(16, first, last).unwrap();
            let mut t = PortTable::<u32, 64>::new(cfg);
            for (i, (addr, free_one)) in requests.into_iter().enumerate() {
                let addr = if addr == 0 { BindAddr::Any } else { at(addr) };
                match t.bind_ephemeral(addr, i as u32) {
                    Ok(got) => {
                        prop_assert!((first..=last).contains(&got.get()));
                        // No overlapping binding holds the same port.
                        let clashes = t.iter().filter(|b| {
                            b.key.port == BindPort::Port(got) && b.key.addr.overlaps(addr)
                        }).count();
                        prop_assert_eq!(clashes, 1);
                        if free_one {
                            t.unbind(addr, BindPort::Port(got)).unwrap();
                        }
                    }
                    Err(e) => {
                        prop_assert_eq!(e, BindError::EphemeralExhausted);
                        // Really exhausted: every port overlaps a binding.
                        for raw in first..=last {
                            prop_assert!(t.port_taken(addr, p(raw)));
                        }
                    }
                }
            }
        }
    }
}
