//! The routing table: which interface (and which next hop) a packet for a
//! destination address leaves by.
//!
//! Entries are CIDR-style prefixes over the address width of the header
//! version in force (5 bits in v1, 14 in v2): `addr/bits` covers every
//! address whose top `bits` bits equal those of `addr`. `0/0` is the default
//! route and an entry without `/bits` is a host route (all bits). The longest
//! matching prefix wins, as in libcsp 2.x.
//!
//! A route either delivers straight to the destination over its interface
//! (`via` is `None`) or hands the packet to a neighbour (`via` is that
//! neighbour's address, e.g. the radio node that relays to the spacecraft).
//!
//! The table also reads and prints the libcsp route string,
//! `"0/0 ZMQHUB, 10 CAN, 16/10 KISS 4"`: comma-separated entries of
//! `ADDR[/BITS] IFNAME [VIA]`. Interface names mean nothing to the core, so
//! the caller resolves them; errors carry the byte span of the bad token.

use core::fmt;

use heapless::Vec;

use crate::header::{Addr, Version};

/// Identifies an interface of the node. The core only compares these; which
/// link an id stands for is the owner's business (an index into its list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IfaceId(pub u8);

impl fmt::Display for IfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "if{}", self.0)
    }
}

/// Why a route could not be built or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RouteError {
    /// The prefix address does not fit the table's header version.
    AddrOutOfRange {
        /// The address given.
        addr: u16,
        /// The largest address of the version.
        max: u16,
    },
    /// More prefix bits than the address has.
    BitsOutOfRange {
        /// The prefix length given.
        bits: u8,
        /// The address width of the version.
        max: u8,
    },
    /// The via address does not fit the table's header version.
    ViaOutOfRange {
        /// The via address given.
        via: u16,
        /// The largest address of the version.
        max: u16,
    },
    /// Every slot is taken and the prefix is not already in the table.
    TableFull,
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RouteError::AddrOutOfRange { addr, max } => {
                write!(f, "route address {addr} out of range (max {max})")
            }
            RouteError::BitsOutOfRange { bits, max } => {
                write!(
                    f,
                    "route prefix /{bits} longer than the address (max /{max})"
                )
            }
            RouteError::ViaOutOfRange { via, max } => {
                write!(f, "via address {via} out of range (max {max})")
            }
            RouteError::TableFull => write!(f, "routing table full"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RouteError {}

/// The network mask of a `bits`-long prefix within the address width of
/// `version`. Callers guarantee `bits <= version.addr_bits()`.
fn mask(bits: u8, version: Version) -> u16 {
    let host_bits = version.addr_bits().saturating_sub(bits);
    (version.max_addr() >> host_bits) << host_bits
}

/// An address the caller has already range-checked (or masked into range).
fn addr_in_range(value: u16) -> Addr {
    // Every caller passes a value <= 16383, so the error arm is never taken;
    // falling back to 0 keeps this total without a panic path.
    Addr::new(value).unwrap_or(Addr::LOCAL)
}

/// A destination prefix `addr/bits`, kept canonical: address bits below the
/// prefix are cleared, so `16/3` and `0/3` are the same prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Prefix {
    addr: Addr,
    bits: u8,
}

impl Prefix {
    /// `0/0`: matches every address, loses to every longer prefix.
    pub const DEFAULT: Prefix = Prefix {
        addr: Addr::LOCAL,
        bits: 0,
    };

    /// The prefix of the top `bits` bits of `addr` in the address width of
    /// `version`. Address bits below the prefix are cleared (libcsp accepts
    /// them too and ignores them when matching).
    pub fn new(addr: Addr, bits: u8, version: Version) -> Result<Prefix, RouteError> {
        let max = version.max_addr();
        if addr.get() > max {
            return Err(RouteError::AddrOutOfRange {
                addr: addr.get(),
                max,
            });
        }
        let width = version.addr_bits();
        if bits > width {
            return Err(RouteError::BitsOutOfRange { bits, max: width });
        }
        Ok(Prefix {
            addr: addr_in_range(addr.get() & mask(bits, version)),
            bits,
        })
    }

    /// The host route to `addr`: every address bit is significant.
    pub fn host(addr: Addr, version: Version) -> Result<Prefix, RouteError> {
        Prefix::new(addr, version.addr_bits(), version)
    }

    /// The (canonical) network address.
    pub const fn addr(self) -> Addr {
        self.addr
    }

    /// The prefix length in bits.
    pub const fn bits(self) -> u8 {
        self.bits
    }

    /// True for `0/0`.
    pub const fn is_default(self) -> bool {
        self.bits == 0
    }

    /// True if the prefix names a single address of `version`.
    pub const fn is_host(self, version: Version) -> bool {
        self.bits == version.addr_bits()
    }

    /// True if `addr` falls inside the prefix. Addresses beyond the width of
    /// `version` are never inside: they cannot be put in a header of it.
    pub fn contains(self, addr: Addr, version: Version) -> bool {
        addr.get() <= version.max_addr()
            && self.bits <= version.addr_bits()
            && addr.get() & mask(self.bits, version) == self.addr.get()
    }
}

/// Where a packet goes next: out of `iface`, to `via` if set, else straight
/// to its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Hop {
    /// The interface to send on.
    pub iface: IfaceId,
    /// The neighbour that relays the packet, or `None` to address the
    /// destination itself on the link.
    pub via: Option<Addr>,
}

impl Hop {
    /// The link-layer destination for a packet to `dst`: the via address if
    /// the route has one, else `dst`.
    pub fn next_addr(self, dst: Addr) -> Addr {
        self.via.unwrap_or(dst)
    }
}

/// One routing table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Route {
    /// Destinations this entry covers.
    pub prefix: Prefix,
    /// The interface to send on.
    pub iface: IfaceId,
    /// The neighbour that relays, or `None` to deliver directly.
    pub via: Option<Addr>,
}

impl Route {
    /// The next hop this entry gives.
    pub const fn hop(&self) -> Hop {
        Hop {
            iface: self.iface,
            via: self.via,
        }
    }

    /// The entry in route-string syntax (`16/10 KISS 4`), naming the
    /// interface through `name`. Host routes print without `/bits`, as they
    /// are usually written.
    pub fn display_with<F, D>(&self, version: Version, name: F) -> RouteDisplay<'_, F>
    where
        F: Fn(IfaceId) -> D,
        D: fmt::Display,
    {
        RouteDisplay {
            route: self,
            version,
            name,
        }
    }

    fn write<D: fmt::Display>(
        &self,
        f: &mut fmt::Formatter<'_>,
        version: Version,
        name: D,
    ) -> fmt::Result {
        write!(f, "{}", self.prefix.addr)?;
        if !self.prefix.is_host(version) {
            write!(f, "/{}", self.prefix.bits)?;
        }
        write!(f, " {name}")?;
        if let Some(via) = self.via {
            write!(f, " {via}")?;
        }
        Ok(())
    }
}

/// A [`Route`] printed in route-string syntax; see [`Route::display_with`].
pub struct RouteDisplay<'a, F> {
    route: &'a Route,
    version: Version,
    name: F,
}

impl<F, D> fmt::Display for RouteDisplay<'_, F>
where
    F: Fn(IfaceId) -> D,
    D: fmt::Display,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.route
            .write(f, self.version, (self.name)(self.route.iface))
    }
}

/// A routing table of at most `N` entries for one header version.
///
/// Entries are kept ordered by prefix length, longest first, so a lookup
/// returns the first entry that matches: one linear pass, no allocation,
/// and the cost of ordering is paid at configuration time, not per packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable<const N: usize> {
    version: Version,
    routes: Vec<Route, N>,
    /// `(mask, network)` of `routes[i]`, in the same order: the lookup scans
    /// only these four bytes per entry, with the mask worked out once.
    keys: Vec<(u16, u16), N>,
}

impl<const N: usize> RouteTable<N> {
    /// An empty table for addresses of `version`.
    pub const fn new(version: Version) -> Self {
        RouteTable {
            version,
            routes: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// A table holding the routes of a route string; see [`RouteTable::load`].
    pub fn from_route_string<F>(
        input: &str,
        version: Version,
        names: F,
    ) -> Result<Self, RouteParseError>
    where
        F: FnMut(&str) -> Option<IfaceId>,
    {
        let mut table = RouteTable::new(version);
        table.load(input, names)?;
        Ok(table)
    }

    /// The header version whose address width the prefixes use.
    pub const fn version(&self) -> Version {
        self.version
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// True if there are no entries (every lookup fails).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Maximum number of entries.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.routes.clear();
        self.keys.clear();
    }

    /// The entries, longest prefix first.
    pub fn iter(&self) -> core::slice::Iter<'_, Route> {
        self.routes.iter()
    }

    /// Adds `route`, or replaces the entry with the same prefix (as libcsp
    /// does) and returns the old one. The prefix is re-checked against the
    /// table's version; a full table refuses new prefixes but still accepts
    /// updates.
    pub fn set(&mut self, route: Route) -> Result<Option<Route>, RouteError> {
        let version = self.version;
        let prefix = Prefix::new(route.prefix.addr, route.prefix.bits, version)?;
        if let Some(via) = route.via {
            if via.get() > version.max_addr() {
                return Err(RouteError::ViaOutOfRange {
                    via: via.get(),
                    max: version.max_addr(),
                });
            }
        }
        let route = Route { prefix, ..route };
        if let Some(slot) = self.routes.iter_mut().find(|r| r.prefix == prefix) {
            let old = core::mem::replace(slot, route);
            csp_debug!("route {}/{} updated", prefix.addr.get(), prefix.bits);
            return Ok(Some(old));
        }
        // Insert after every entry at least as long, keeping longest-first
        // order (and, within one length, insertion order).
        let at = self
            .routes
            .iter()
            .position(|r| r.prefix.bits < prefix.bits)
            .unwrap_or(self.routes.len())
            // A no-op that lets the compiler drop `insert`'s panic path.
            .min(self.routes.len());
        self.routes
            .insert(at, route)
            .map_err(|_| RouteError::TableFull)?;
        let key = (mask(prefix.bits, version), prefix.addr.get());
        // Same capacity and length as `routes`, so this can not fail (the
        // check lets the compiler drop `insert`'s panic path).
        if at <= self.keys.len() {
            let _ = self.keys.insert(at, key);
        }
        csp_debug!("route {}/{} added", prefix.addr.get(), prefix.bits);
        Ok(None)
    }

    /// Adds or replaces the route for `addr/bits`.
    pub fn add(
        &mut self,
        addr: Addr,
        bits: u8,
        iface: IfaceId,
        via: Option<Addr>,
    ) -> Result<Option<Route>, RouteError> {
        let prefix = Prefix::new(addr, bits, self.version)?;
        self.set(Route { prefix, iface, via })
    }

    /// Adds or replaces the default route `0/0`.
    pub fn set_default(
        &mut self,
        iface: IfaceId,
        via: Option<Addr>,
    ) -> Result<Option<Route>, RouteError> {
        self.set(Route {
            prefix: Prefix::DEFAULT,
            iface,
            via,
        })
    }

    /// Removes the entry for exactly `prefix` (not the ones it covers).
    pub fn remove(&mut self, prefix: Prefix) -> Option<Route> {
        let at = self.routes.iter().position(|r| r.prefix == prefix)?;
        // `remove`, not `swap_remove`: the order is what makes lookup correct.
        self.keys.remove(at);
        Some(self.routes.remove(at))
    }

    /// The entry for exactly `prefix`.
    pub fn get(&self, prefix: Prefix) -> Option<&Route> {
        self.routes.iter().find(|r| r.prefix == prefix)
    }

    /// The entry with the longest prefix covering `dst`, if any.
    pub fn lookup_route(&self, dst: Addr) -> Option<&Route> {
        let dst = dst.get();
        if dst > self.version.max_addr() {
            return None;
        }
        // Longest first, so the first hit is the longest match.
        let at = self
            .keys
            .iter()
            .position(|&(mask, net)| dst & mask == net)?;
        self.routes.get(at)
    }

    /// Where a packet for `dst` goes next; `None` if no entry covers it
    /// (no default route) or `dst` does not fit the table's version.
    pub fn lookup(&self, dst: Addr) -> Option<Hop> {
        self.lookup_route(dst).map(Route::hop)
    }

    /// Adds or updates the routes of a libcsp route string, e.g.
    /// `"0/0 ZMQHUB, 10 CAN, 16/10 KISS 4"`; `names` resolves interface names.
    /// All or nothing: on error the table is left as it was. Returns the
    /// number of entries read. (The check-then-commit runs on a copy of the
    /// table, so it needs the table's size in stack once more.)
    pub fn load<F>(&mut self, input: &str, names: F) -> Result<usize, RouteParseError>
    where
        F: FnMut(&str) -> Option<IfaceId>,
    {
        let mut staged = self.clone();
        let mut count = 0;
        for entry in parse_routes(input, self.version, names) {
            let (route, span) = entry?;
            staged.set(route).map_err(|e| RouteParseError {
                kind: match e {
                    RouteError::AddrOutOfRange { max, .. } => {
                        RouteParseErrorKind::InvalidAddress { max }
                    }
                    RouteError::BitsOutOfRange { max, .. } => {
                        RouteParseErrorKind::InvalidBits { max }
                    }
                    RouteError::ViaOutOfRange { max, .. } => {
                        RouteParseErrorKind::InvalidVia { max }
                    }
                    RouteError::TableFull => RouteParseErrorKind::TableFull,
                },
                span,
            })?;
            count += 1;
        }
        *self = staged;
        Ok(count)
    }

    /// The table in route-string syntax (entries joined by `", "`, longest
    /// prefix first), naming interfaces through `name`. What it prints,
    /// [`load`](RouteTable::load) reads back into an equal table.
    pub fn display_with<F, D>(&self, name: F) -> TableDisplay<'_, F, N>
    where
        F: Fn(IfaceId) -> D,
        D: fmt::Display,
    {
        TableDisplay { table: self, name }
    }
}

/// A [`RouteTable`] printed as a route string; see [`RouteTable::display_with`].
pub struct TableDisplay<'a, F, const N: usize> {
    table: &'a RouteTable<N>,
    name: F,
}

impl<F, D, const N: usize> fmt::Display for TableDisplay<'_, F, N>
where
    F: Fn(IfaceId) -> D,
    D: fmt::Display,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, route) in self.table.routes.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            route.write(f, self.table.version, (self.name)(route.iface))?;
        }
        Ok(())
    }
}

/// A byte range `start..end` of the parsed input: where the bad token is.
/// Kept as offsets so errors stay `Copy` and allocation-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// The text the span covers in `input` (empty if the span does not fit
    /// `input`, e.g. when given a different string).
    pub fn slice(self, input: &str) -> &str {
        input.get(self.start..self.end).unwrap_or("")
    }
}

/// What is wrong with a route-string token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RouteParseErrorKind {
    /// The destination address is not a decimal number up to `max`.
    InvalidAddress {
        /// The largest address of the version.
        max: u16,
    },
    /// The `/bits` part is not a decimal number up to `max`.
    InvalidBits {
        /// The address width of the version.
        max: u8,
    },
    /// The entry ends before naming an interface.
    MissingInterface,
    /// The interface name is not known to the caller.
    UnknownInterface,
    /// The via address is not a decimal number up to `max`.
    InvalidVia {
        /// The largest address of the version.
        max: u16,
    },
    /// A token after the via address.
    UnexpectedToken,
    /// The table has no room for this entry (the span is the whole entry).
    TableFull,
}

impl fmt::Display for RouteParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RouteParseErrorKind::InvalidAddress { max } => {
                write!(f, "invalid address (expected 0..={max})")
            }
            RouteParseErrorKind::InvalidBits { max } => {
                write!(f, "invalid prefix length (expected 0..={max})")
            }
            RouteParseErrorKind::MissingInterface => write!(f, "missing interface name"),
            RouteParseErrorKind::UnknownInterface => write!(f, "unknown interface"),
            RouteParseErrorKind::InvalidVia { max } => {
                write!(f, "invalid via address (expected 0..={max})")
            }
            RouteParseErrorKind::UnexpectedToken => write!(f, "unexpected token after via address"),
            RouteParseErrorKind::TableFull => write!(f, "routing table full"),
        }
    }
}

/// A route string could not be read: what was wrong, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RouteParseError {
    /// What was wrong.
    pub kind: RouteParseErrorKind,
    /// Where in the input: the bad token (for a missing token, the empty
    /// span where it should have been).
    pub span: Span,
}

impl RouteParseError {
    /// The bad token's text in `input` (the string that was parsed).
    pub fn token(self, input: &str) -> &str {
        self.span.slice(input)
    }

    /// The error with the bad token quoted, e.g.
    /// `unknown interface "CAM" at bytes 14..17`.
    pub fn display_in(self, input: &str) -> ParseErrorDisplay<'_> {
        ParseErrorDisplay { error: self, input }
    }
}

impl fmt::Display for RouteParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at bytes {}..{}",
            self.kind, self.span.start, self.span.end
        )
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RouteParseError {}

/// A [`RouteParseError`] shown with its token; see [`RouteParseError::display_in`].
pub struct ParseErrorDisplay<'a> {
    error: RouteParseError,
    input: &'a str,
}

impl fmt::Display for ParseErrorDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.error;
        write!(
            f,
            "{} {:?} at bytes {}..{}",
            e.kind,
            e.token(self.input),
            e.span.start,
            e.span.end
        )
    }
}

/// Reads the entries of a route string one by one; see [`parse_routes`].
pub struct RouteParser<'a, F> {
    input: &'a str,
    pos: usize,
    version: Version,
    names: F,
    done: bool,
}

/// The entries of a libcsp route string, in order, each with the span of
/// its entry text. Comma-separated entries are `ADDR[/BITS] IFNAME [VIA]`,
/// tokens split by ASCII whitespace; blank entries (e.g. after a trailing
/// comma) are skipped. `names` maps an interface name to its id (whether
/// names are case-sensitive is up to it). The first error ends the iteration.
pub fn parse_routes<F>(input: &str, version: Version, names: F) -> RouteParser<'_, F>
where
    F: FnMut(&str) -> Option<IfaceId>,
{
    RouteParser {
        input,
        pos: 0,
        version,
        names,
        done: false,
    }
}

/// A decimal number of at most `max`, or `None`. Only ASCII digits: no sign,
/// no hex, no whitespace, so every accepted token prints back the same value.
fn parse_decimal(token: &str, max: u16) -> Option<u16> {
    if token.is_empty() {
        return None;
    }
    let mut value: u16 = 0;
    for b in token.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u16::from(b - b'0'))?;
    }
    (value <= max).then_some(value)
}

/// The whitespace-separated tokens of `input[start..end]`, as spans.
/// Splitting on ASCII bytes keeps every offset on a char boundary, since
/// UTF-8 continuation bytes are never ASCII.
struct Tokens<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl Iterator for Tokens<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        while self.pos < self.end && self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        if self.pos >= self.end {
            return None;
        }
        let start = self.pos;
        while self.pos < self.end && !self.bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        Some(Span {
            start,
            end: self.pos,
        })
    }
}

impl<F> RouteParser<'_, F>
where
    F: FnMut(&str) -> Option<IfaceId>,
{
    fn entry(&mut self, start: usize, end: usize) -> Result<Option<Route>, RouteParseError> {
        let version = self.version;
        let max = version.max_addr();
        let width = version.addr_bits();
        let input = self.input;
        let err = |kind, span| RouteParseError { kind, span };
        let mut tokens = Tokens {
            bytes: input.as_bytes(),
            pos: start,
            end,
        };
        let Some(dest) = tokens.next() else {
            return Ok(None); // blank entry
        };

        // ADDR[/BITS]: without `/bits` it is a host route.
        let text = dest.slice(input);
        let (addr_span, bits_span) = match text.find('/') {
            Some(slash) => (
                Span {
                    start: dest.start,
                    end: dest.start + slash,
                },
                Some(Span {
                    start: dest.start + slash + 1,
                    end: dest.end,
                }),
            ),
            None => (dest, None),
        };
        let addr = parse_decimal(addr_span.slice(input), max).ok_or_else(|| {
            // An empty address part ("/5") has nothing to point at: name the token.
            let span = if addr_span.start == addr_span.end {
                dest
            } else {
                addr_span
            };
            err(RouteParseErrorKind::InvalidAddress { max }, span)
        })?;
        let bits = match bits_span {
            None => width,
            Some(span) => parse_decimal(span.slice(input), u16::from(width))
                .map(|b| b as u8)
                .ok_or_else(|| {
                    let span = if span.start == span.end { dest } else { span };
                    err(RouteParseErrorKind::InvalidBits { max: width }, span)
                })?,
        };

        let name = tokens.next().ok_or(err(
            RouteParseErrorKind::MissingInterface,
            Span { start: end, end },
        ))?;
        let iface = (self.names)(name.slice(input))
            .ok_or(err(RouteParseErrorKind::UnknownInterface, name))?;

        let via = match tokens.next() {
            None => None,
            Some(span) => Some(
                parse_decimal(span.slice(input), max)
                    .ok_or(err(RouteParseErrorKind::InvalidVia { max }, span))?,
            ),
        };
        if let Some(extra) = tokens.next() {
            return Err(err(RouteParseErrorKind::UnexpectedToken, extra));
        }

        let prefix = Prefix {
            addr: addr_in_range(addr & mask(bits, version)),
            bits,
        };
        Ok(Some(Route {
            prefix,
            iface,
            via: via.map(addr_in_range),
        }))
    }
}

impl<F> Iterator for RouteParser<'_, F>
where
    F: FnMut(&str) -> Option<IfaceId>,
{
    type Item = Result<(Route, Span), RouteParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let start = self.pos;
            let bytes = self.input.as_bytes();
            let end = match bytes
                .get(start..)
                .and_then(|rest| rest.iter().position(|&b| b == b','))
            {
                Some(n) => {
                    self.pos = start + n + 1;
                    start + n
                }
                None => {
                    self.done = true;
                    self.input.len()
                }
            };
            match self.entry(start, end) {
                Ok(None) => continue,
                Ok(Some(route)) => {
                    // The entry without the blanks around it.
                    let mut span = Span { start, end };
                    while span.start < span.end && bytes[span.start].is_ascii_whitespace() {
                        span.start += 1;
                    }
                    while span.end > span.start && bytes[span.end - 1].is_ascii_whitespace() {
                        span.end -= 1;
                    }
                    return Some(Ok((route, span)));
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::format;
    use std::string::ToString;
    use std::vec::Vec as StdVec;

    const ZMQ: IfaceId = IfaceId(0);
    const CAN: IfaceId = IfaceId(1);
    const KISS: IfaceId = IfaceId(2);

    fn names(name: &str) -> Option<IfaceId> {
        match name {
            "ZMQHUB" => Some(ZMQ),
            "CAN" => Some(CAN),
            "KISS" => Some(KISS),
            _ => None,
        }
    }

    fn name_of(id: IfaceId) -> &'static str {
        match id {
            ZMQ => "ZMQHUB",
            CAN => "CAN",
            KISS => "KISS",
            _ => "?",
        }
    }

    fn a(v: u16) -> Addr {
        Addr::new(v).unwrap()
    }

    #[test]
    fn libcsp_example_string() {
        let s = "0/0 ZMQHUB, 10 CAN, 16/10 KISS 4";
        let t = RouteTable::<8>::from_route_string(s, Version::V2, names).unwrap();
        assert_eq!(t.len(), 3);
        // 16/10 in 14 bits covers 16..=31.
        for dst in [16, 20, 31] {
            assert_eq!(
                t.lookup(a(dst)),
                Some(Hop {
                    iface: KISS,
                    via: Some(a(4))
                })
            );
        }
        assert_eq!(
            t.lookup(a(10)),
            Some(Hop {
                iface: CAN,
                via: None
            })
        );
        for dst in [0, 9, 11, 15, 32, 16383] {
            assert_eq!(
                t.lookup(a(dst)),
                Some(Hop {
                    iface: ZMQ,
                    via: None
                }),
                "{dst}"
            );
        }
        assert_eq!(
            t.display_with(name_of).to_string(),
            "10 CAN, 16/10 KISS 4, 0/0 ZMQHUB"
        );
    }

    #[test]
    fn prefix_bits_count_from_the_top_of_the_address_width() {
        // v1: 5-bit addresses, so /3 keeps the top three of five bits.
        let p = Prefix::new(a(0b10110), 3, Version::V1).unwrap();
        assert_eq!(p.addr(), a(0b10100));
        assert!(p.contains(a(0b10111), Version::V1));
        assert!(!p.contains(a(0b11000), Version::V1));
        // v2: /10 of 14 bits leaves four host bits.
        let p = Prefix::new(a(0x3FFF), 10, Version::V2).unwrap();
        assert_eq!(p.addr(), a(0x3FF0));
        assert!(p.contains(a(0x3FF5), Version::V2));
        assert!(!p.contains(a(0x3FE5), Version::V2));
        assert!(Prefix::DEFAULT.contains(a(16383), Version::V2));
        assert!(!Prefix::DEFAULT.contains(a(32), Version::V1));
    }

    #[test]
    fn longest_prefix_wins_regardless_of_insertion_order() {
        let mut t = RouteTable::<8>::new(Version::V2);
        t.add(a(10), 14, CAN, None).unwrap();
        t.add(a(0), 8, KISS, Some(a(3))).unwrap();
        t.set_default(ZMQ, None).unwrap();
        t.add(a(8), 12, KISS, None).unwrap();
        assert_eq!(t.lookup(a(10)).unwrap().iface, CAN);
        assert_eq!(
            t.lookup(a(9)).unwrap(),
            Hop {
                iface: KISS,
                via: None
            }
        );
        assert_eq!(
            t.lookup(a(60)).unwrap(),
            Hop {
                iface: KISS,
                via: Some(a(3))
            }
        );
        assert_eq!(t.lookup(a(1000)).unwrap().iface, ZMQ);
        let bits: StdVec<u8> = t.iter().map(|r| r.prefix.bits()).collect();
        assert_eq!(bits, [14, 12, 8, 0]);
    }

    #[test]
    fn same_prefix_replaces() {
        let mut t = RouteTable::<2>::new(Version::V2);
        assert_eq!(t.add(a(16), 10, CAN, None), Ok(None));
        // 17/10 is the same prefix as 16/10.
        let old = t.add(a(17), 10, KISS, Some(a(5))).unwrap().unwrap();
        assert_eq!(old.iface, CAN);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.lookup(a(20)),
            Some(Hop {
                iface: KISS,
                via: Some(a(5))
            })
        );
    }

    #[test]
    fn full_table_refuses_new_prefixes_but_takes_updates() {
        let mut t = RouteTable::<2>::new(Version::V1);
        t.add(a(1), 5, CAN, None).unwrap();
        t.add(a(2), 5, CAN, None).unwrap();
        assert_eq!(t.add(a(3), 5, CAN, None), Err(RouteError::TableFull));
        assert!(t.add(a(2), 5, KISS, None).unwrap().is_some());
        assert_eq!(t.lookup(a(2)).unwrap().iface, KISS);
        assert_eq!(t.lookup(a(3)), None);
    }

    #[test]
    fn range_errors() {
        let mut t = RouteTable::<4>::new(Version::V1);
        assert_eq!(
            t.add(a(32), 5, CAN, None),
            Err(RouteError::AddrOutOfRange { addr: 32, max: 31 })
        );
        assert_eq!(
            t.add(a(1), 6, CAN, None),
            Err(RouteError::BitsOutOfRange { bits: 6, max: 5 })
        );
        assert_eq!(
            t.add(a(1), 5, CAN, Some(a(40))),
            Err(RouteError::ViaOutOfRange { via: 40, max: 31 })
        );
        // A v2 host prefix is too long for a v1 table.
        let p = Prefix::host(a(1), Version::V2).unwrap();
        assert!(t
            .set(Route {
                prefix: p,
                iface: CAN,
                via: None
            })
            .is_err());
        assert!(t.is_empty());
        // Lookups of addresses a v1 header cannot carry find nothing.
        t.set_default(CAN, None).unwrap();
        assert_eq!(t.lookup(a(32)), None);
        assert!(t.lookup(a(31)).is_some());
    }

    #[test]
    fn remove_get_clear() {
        let mut t = RouteTable::<4>::new(Version::V2);
        t.add(a(10), 14, CAN, None).unwrap();
        t.set_default(ZMQ, None).unwrap();
        let host = Prefix::host(a(10), Version::V2).unwrap();
        assert_eq!(t.get(host).unwrap().iface, CAN);
        assert_eq!(t.remove(host).unwrap().iface, CAN);
        assert_eq!(t.remove(host), None);
        assert_eq!(t.lookup(a(10)).unwrap().iface, ZMQ);
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.lookup(a(10)), None);
    }

    fn parse_err(s: &str) -> (RouteParseErrorKind, &str) {
        let e = RouteTable::<4>::from_route_string(s, Version::V2, names).unwrap_err();
        (e.kind, e.token(s))
    }

    #[test]
    fn parse_errors_name_the_token() {
        use RouteParseErrorKind::*;
        let max = 16383;
        assert_eq!(parse_err("0/0 ZMQHUB, 10 CAM"), (UnknownInterface, "CAM"));
        assert_eq!(parse_err("x1 CAN"), (InvalidAddress { max }, "x1"));
        assert_eq!(parse_err("16384 CAN"), (InvalidAddress { max }, "16384"));
        assert_eq!(
            parse_err("99999999 CAN"),
            (InvalidAddress { max }, "99999999")
        );
        assert_eq!(parse_err("/3 CAN"), (InvalidAddress { max }, "/3"));
        assert_eq!(parse_err("5/15 CAN"), (InvalidBits { max: 14 }, "15"));
        assert_eq!(parse_err("5/ CAN"), (InvalidBits { max: 14 }, "5/"));
        assert_eq!(parse_err("5/1/2 CAN"), (InvalidBits { max: 14 }, "1/2"));
        assert_eq!(parse_err("5 CAN -1"), (InvalidVia { max }, "-1"));
        assert_eq!(parse_err("5 CAN 1 2"), (UnexpectedToken, "2"));
        let (kind, token) = parse_err("10 CAN, 5 ,7 KISS");
        assert_eq!((kind, token), (MissingInterface, ""));
        let e = RouteTable::<4>::from_route_string("5", Version::V2, names).unwrap_err();
        assert_eq!(e.span, Span { start: 1, end: 1 });
        assert_eq!(
            RouteTable::<4>::from_route_string("1 CAN, 2 CAN", Version::V1, names).map(|t| t.len()),
            Ok(2)
        );
        assert_eq!(
            RouteTable::<4>::from_route_string("1 CAN, 32 CAN", Version::V1, names)
                .unwrap_err()
                .kind,
            InvalidAddress { max: 31 }
        );
    }

    #[test]
    fn error_display_quotes_the_token() {
        let s = "0/0 ZMQHUB, 10 CAM";
        let e = RouteTable::<4>::from_route_string(s, Version::V2, names).unwrap_err();
        assert_eq!(e.to_string(), "unknown interface at bytes 15..18");
        assert_eq!(
            e.display_in(s).to_string(),
            "unknown interface \"CAM\" at bytes 15..18"
        );
    }

    #[test]
    fn load_is_all_or_nothing_and_counts_full() {
        let mut t = RouteTable::<2>::new(Version::V2);
        t.load("1 CAN", names).unwrap();
        let before = t.clone();
        let s = "2 KISS, 3 CAN";
        let e = t.load(s, names).unwrap_err();
        assert_eq!(e.kind, RouteParseErrorKind::TableFull);
        assert_eq!(e.token(s), "3 CAN");
        assert_eq!(t, before);
        let e = t.load("1 KISS, 2 NOPE", names).unwrap_err();
        assert_eq!(e.kind, RouteParseErrorKind::UnknownInterface);
        assert_eq!(t, before, "the update of 1 must not stick either");
        // Updates fit even when full; blank entries are skipped.
        assert_eq!(t.load(" 1 KISS , , 2 CAN,", names), Ok(2));
        assert_eq!(t.lookup(a(1)).unwrap().iface, KISS);
        assert_eq!(t.load("", names), Ok(0));
        assert_eq!(t.load(" \t ", names), Ok(0));
    }

    #[test]
    fn whitespace_and_non_ascii() {
        let t =
            RouteTable::<4>::from_route_string("\t10\tCAN\n,\n0/0   ZMQHUB  ", Version::V2, names)
                .unwrap();
        assert_eq!(t.len(), 2);
        // A non-breaking space is not a separator: the token stays whole and
        // the span lands on char boundaries.
        let s = "10\u{a0}CAN";
        let e = RouteTable::<4>::from_route_string(s, Version::V2, names).unwrap_err();
        assert_eq!(e.token(s), "10\u{a0}CAN");
        let s = "10 CÄN";
        let e = RouteTable::<4>::from_route_string(s, Version::V2, names).unwrap_err();
        assert_eq!(e.token(s), "CÄN");
    }

    // ---- properties ----

    /// The obvious model: a list of (network, bits, hop); a lookup takes the
    /// matching entry with the most bits. Matching by shifting (not masking)
    /// keeps the model independent of the code under test.
    #[derive(Default)]
    struct Model {
        routes: StdVec<(u16, u8, Hop)>,
    }

    impl Model {
        fn set(&mut self, version: Version, cap: usize, addr: u16, bits: u8, hop: Hop) -> bool {
            let shift = version.addr_bits() - bits;
            let net = addr >> shift;
            if let Some(r) = self.routes.iter_mut().find(|r| r.0 == net && r.1 == bits) {
                r.2 = hop;
                return true;
            }
            if self.routes.len() == cap {
                return false;
            }
            self.routes.push((net, bits, hop));
            true
        }

        fn remove(&mut self, version: Version, addr: u16, bits: u8) {
            let net = addr >> (version.addr_bits() - bits);
            self.routes.retain(|r| !(r.0 == net && r.1 == bits));
        }

        fn lookup(&self, version: Version, dst: u16) -> Option<Hop> {
            if dst > version.max_addr() {
                return None;
            }
            self.routes
                .iter()
                .filter(|r| dst >> (version.addr_bits() - r.1) == r.0)
                .max_by_key(|r| r.1)
                .map(|r| r.2)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u16, u8, u8, Option<u16>),
        Remove(u16, u8),
    }

    fn arb_ops(version: Version) -> impl Strategy<Value = StdVec<Op>> {
        let max = version.max_addr();
        let width = version.addr_bits();
        // Addresses from a few clusters, so prefixes overlap and nest.
        let addr = prop_oneof![0..=max, 0..=max / 4, (max - max / 4)..=max];
        let op = prop_oneof![
            4 => (addr.clone(), 0..=width, 0u8..4, proptest::option::of(0..=max))
                .prop_map(|(a, b, i, v)| Op::Set(a, b, i, v)),
            1 => (addr, 0..=width).prop_map(|(a, b)| Op::Remove(a, b)),
        ];
        proptest::collection::vec(op, 0..60)
    }

    fn check_against_model(
        version: Version,
        ops: &[Op],
        dsts: &[u16],
    ) -> Result<(), TestCaseError> {
        const CAP: usize = 16;
        let mut table = RouteTable::<CAP>::new(version);
        let mut model = Model::default();
        for op in ops {
            match *op {
                Op::Set(addr, bits, iface, via) => {
                    let hop = Hop {
                        iface: IfaceId(iface),
                        via: via.map(a),
                    };
                    let ok = model.set(version, CAP, addr, bits, hop);
                    let got = table.add(a(addr), bits, hop.iface, hop.via);
                    prop_assert_eq!(got.is_ok(), ok, "{:?} -> {:?}", op, got);
                    if !ok {
                        prop_assert_eq!(got, Err(RouteError::TableFull));
                    }
                }
                Op::Remove(addr, bits) => {
                    model.remove(version, addr, bits);
                    table.remove(Prefix::new(a(addr), bits, version).unwrap());
                }
            }
            prop_assert_eq!(table.len(), model.routes.len());
        }
        let from_routes = model.routes.iter().map(|r| {
            let shift = version.addr_bits() - r.1;
            // An address inside the route, somewhere in its host part.
            (r.0 << shift) | (0x2A5A & ((1u16 << shift) - 1))
        });
        for dst in dsts.iter().copied().chain(from_routes) {
            prop_assert_eq!(
                table.lookup(a(dst)),
                model.lookup(version, dst),
                "dst {}",
                dst
            );
        }
        Ok(())
    }

    fn parse_iface(name: &str) -> Option<IfaceId> {
        name.strip_prefix("IF")?.parse().ok().map(IfaceId)
    }

    proptest! {
        #[test]
        fn lookup_agrees_with_naive_model_v1(
            ops in arb_ops(Version::V1),
            dsts in proptest::collection::vec(0u16..=40, 0..40),
        ) {
            check_against_model(Version::V1, &ops, &dsts)?;
        }

        #[test]
        fn lookup_agrees_with_naive_model_v2(
            ops in arb_ops(Version::V2),
            dsts in proptest::collection::vec(0u16..=16383, 0..40),
        ) {
            check_against_model(Version::V2, &ops, &dsts)?;
        }

        #[test]
        fn print_parse_round_trip(ops in arb_ops(Version::V2), v1 in any::<bool>()) {
            let version = if v1 { Version::V1 } else { Version::V2 };
            let mut table = RouteTable::<16>::new(version);
            for op in ops {
                if let Op::Set(addr, bits, iface, via) = op {
                    // Fold the v2 values into the v1 range rather than lose them.
                    let m = version.max_addr();
                    let bits = bits.min(version.addr_bits());
                    let via = via.map(|v| a(v & m));
                    table.add(a(addr & m), bits, IfaceId(iface), via).unwrap_or(None);
                }
            }
            let text = table.display_with(|id| format!("IF{}", id.0)).to_string();
            let back = RouteTable::<16>::from_route_string(&text, version, parse_iface);
            prop_assert_eq!(back.as_ref(), Ok(&table), "{}", text);
            for route in table.iter() {
                let one = route.display_with(version, |id| format!("IF{}", id.0)).to_string();
                let parsed: StdVec<_> = parse_routes(&one, version, parse_iface).collect();
                prop_assert_eq!(parsed.len(), 1);
                prop_assert_eq!(parsed[0].map(|(r, _)| r), Ok(*route));
            }
        }

        #[test]
        fn parse_never_panics_and_spans_fit(s in "\\PC{0,40}|[0-9/ ,A-Z\u{e9}\t]{0,40}") {
            for version in [Version::V1, Version::V2] {
                match RouteTable::<4>::from_route_string(&s, version, parse_iface) {
                    Ok(t) => prop_assert!(t.len() <= 4),
                    Err(e) => {
                        prop_assert!(e.span.start <= e.span.end && e.span.end <= s.len());
                        // The span is a real slice of the input (char boundaries).
                        prop_assert!(s.get(e.span.start..e.span.end).is_some());
                        let token = e.token(&s);
                        let shown = e.display_in(&s).to_string();
                        let quoted = format!("{:?}", token);
                        prop_assert!(shown.contains(&quoted), "{}", shown);
                    }
                }
            }
        }

        #[test]
        fn near_miss_strings_give_precise_errors(
            entries in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::sample::select(&[
                        "0", "10", "16/10", "0/0", "31/5", "16383", "16384", "7/15",
                        "/", "5/", "x", "IF1", "IF22", "CAN", "4", "-1", "1/2/3",
                    ][..]),
                    0..5,
                ),
                0..6,
            ),
            sep in proptest::sample::select(&[" ", "  ", "\t"][..]),
        ) {
            let s = entries
                .iter()
                .map(|e| e.join(sep))
                .collect::<StdVec<_>>()
                .join(", ");
            for version in [Version::V1, Version::V2] {
                match RouteTable::<8>::from_route_string(&s, version, parse_iface) {
                    Ok(t) => prop_assert!(t.len() <= 8),
                    Err(e) => {
                        let token = e.token(&s);
                        match e.kind {
                            // Nothing to point at: an empty span at the entry's end.
                            RouteParseErrorKind::MissingInterface => {
                                prop_assert_eq!(token, "");
                                let after = s[e.span.end..].chars().next();
                                prop_assert!(after.is_none() || after == Some(','));
                            }
                            RouteParseErrorKind::TableFull => prop_assert!(!token.is_empty()),
                            // Otherwise exactly one token (or its part after '/').
                            _ => {
                                prop_assert!(!token.is_empty());
                                prop_assert!(!token.contains([' ', '\t', ',']), "{:?}", token);
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn bad_interface_token_is_reported(name in "[a-z]{1,8}", addr in 0u16..32) {
            let s = format!("{addr} CAN, {addr}/3 {name} 1");
            let e = RouteTable::<4>::from_route_string(&s, Version::V1, names).unwrap_err();
            prop_assert_eq!(e.kind, RouteParseErrorKind::UnknownInterface);
            prop_assert_eq!(e.token(&s), name.as_str());
        }
    }
}
