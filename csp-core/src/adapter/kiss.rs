//! KISS on a byte stream (a UART, a USB CDC port): the decoder in front of
//! [`Node::handle_frame`], the encoder behind [`Node::poll_transmit`].

#[cfg(any(feature = "embedded-io", feature = "embedded-hal-nb"))]
use super::PortError;
use crate::kiss::{Encoder, KissDecoder, KissError, KissStats};
use crate::node::RxDrop;
#[cfg(any(feature = "embedded-io", feature = "embedded-hal-nb"))]
use crate::node::Transmit;
use crate::route::IfaceId;
use crate::time::Instant;
use crate::{Node, Version};

/// What became of a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PortRx {
    /// The node took the frame (its events and transmissions are ready).
    Delivered,
    /// The KISS layer dropped a frame: counted in the port's
    /// [`stats`](KissPort::stats) and the interface's `rx_error` (bad CRC)
    /// or `frame` (anything else), as libcsp's KISS interface counts.
    KissDropped(KissError),
    /// The node dropped the frame (counted by the node; the reason is for
    /// logging).
    NodeDropped(RxDrop),
}

/// A KISS interface of a [`Node`]: owns the receive state of one serial
/// link (`FRAME` is the longest frame, header and data, it accepts) and
/// nothing else.
///
/// Without a HAL, hand it each received byte with
/// [`receive_byte`](Self::receive_byte) and send what
/// [`encode_frame`](Self::encode_frame) yields. With the `embedded-io`
/// feature, over a UART that implements `embedded_io`'s traits:
///
/// ```
/// # #[cfg(feature = "embedded-io")] {
/// use csp_core::adapter::KissPort;
/// use csp_core::node::{IfaceConfig, NodeConfig};
/// use csp_core::{Addr, Node, Version};
/// use embedded_io::{ErrorType, Read, ReadReady, Write};
///
/// // A UART of your HAL; here a loop back to itself.
/// struct Uart(heapless::Deque<u8, 1024>);
/// impl ErrorType for Uart { type Error = core::convert::Infallible; }
/// impl ReadReady for Uart {
///     fn read_ready(&mut self) -> Result<bool, Self::Error> { Ok(!self.0.is_empty()) }
/// }
/// impl Read for Uart {
///     fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
///         let mut n = 0;
///         while n < buf.len() {
///             let Some(b) = self.0.pop_front() else { break };
///             buf[n] = b;
///             n += 1;
///         }
///         Ok(n)
///     }
/// }
/// impl Write for Uart {
///     fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
///         for &b in buf { let _ = self.0.push_back(b); }
///         Ok(buf.len())
///     }
///     fn flush(&mut self) -> Result<(), Self::Error> { Ok(()) }
/// }
///
/// let mut node: Node<128, 2, 2, 2, 1, 4, 100, 1, 1> =
///     Node::new(NodeConfig::new(Addr::new(10).unwrap()));
/// let iface = node.add_iface(IfaceConfig::new("KISS", Version::V2, 6 + 100)).unwrap();
/// node.routes_mut().set_default(iface, None).unwrap();
/// let mut port: KissPort<106> = KissPort::new(iface, Version::V2);
/// let mut uart = Uart(heapless::Deque::new());
/// let mut buf = [0u8; 128];
///
/// // The main loop: read, let the node answer, write.
/// # let mut rounds = 0;
/// loop {
///     let now = csp_core::time::Instant::from_millis(0);
///     while let Some(_rx) = port.poll_io(&mut node, now, &mut uart).unwrap() {
///         // Application events here: `node.poll_event()`.
///         port.transmit_io(&mut node, now, &mut buf, &mut uart).unwrap();
///     }
///     port.transmit_io(&mut node, now, &mut buf, &mut uart).unwrap();
/// #   rounds += 1;
/// #   if rounds == 2 { break; }
/// }
/// # }
/// ```
///
/// Over `embedded-hal-nb` serial ([`poll_nb`](Self::poll_nb),
/// [`transmit_nb`](Self::transmit_nb)) the loop is the same (example on
/// `poll_nb`).
#[derive(Debug, Clone)]
pub struct KissPort<const FRAME: usize> {
    iface: IfaceId,
    version: Version,
    decoder: KissDecoder<FRAME>,
}

impl<const FRAME: usize> KissPort<FRAME> {
    /// The most bytes one `poll_*` call reads: a whole frame of the largest
    /// size the port takes, every byte escaped, with its CRC and delimiters,
    /// so a call gets through one frame but never spins on a babbling line.
    pub const POLL_BYTES_MAX: usize = 2 * (FRAME + 4) + 3;

    /// A port for the node's interface `iface`, whose frames carry headers
    /// of `version`. `const`, so firmware can keep it in a static.
    pub const fn new(iface: IfaceId, version: Version) -> Self {
        KissPort {
            iface,
            version,
            decoder: KissDecoder::new(version),
        }
    }

    /// The node interface this port feeds.
    pub const fn iface(&self) -> IfaceId {
        self.iface
    }

    /// What the KISS decoder delivered and dropped.
    pub const fn stats(&self) -> &KissStats {
        self.decoder.stats()
    }

    /// Forget a partial frame (after the device was reopened).
    pub fn reset(&mut self) {
        self.decoder.reset();
    }

    /// One received byte. When it completes a frame, the frame goes to
    /// `node` and the outcome comes back; `None` otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn receive_byte<
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &mut self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        byte: u8,
    ) -> Option<PortRx> {
        let frame = match self.decoder.push(byte)? {
            Ok(frame) => frame,
            Err(e) => {
                if let Some(st) = node.iface_stats_mut(self.iface) {
                    let c = match e {
                        KissError::BadCrc { .. } => &mut st.rx_error,
                        _ => &mut st.frame,
                    };
                    *c = c.wrapping_add(1);
                }
                return Some(PortRx::KissDropped(e));
            }
        };
        Some(match node.handle_frame(now, self.iface, frame) {
            Ok(()) => PortRx::Delivered,
            Err(d) => PortRx::NodeDropped(d),
        })
    }

    /// The bytes to send for `frame` (header | data): FEND, command, the
    /// escaped frame and its KISS CRC, FEND. `Err` only for a frame shorter
    /// than its header.
    pub fn encode_frame<'a>(&self, frame: &'a [u8]) -> Result<Encoder<'a>, KissError> {
        Encoder::new(frame, self.version)
    }

    /// The next frame `node` has for this port, written into `buf`; frames
    /// for other interfaces are returned as `Err(transmit)` (their bytes in
    /// `buf[..transmit.len]`) for the caller to pass on. A frame the
    /// encoder refuses is counted as `tx_error` and skipped.
    #[cfg(any(feature = "embedded-io", feature = "embedded-hal-nb"))]
    #[allow(clippy::too_many_arguments)]
    fn next_frame<
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        buf: &mut [u8],
    ) -> Option<Result<usize, Transmit>> {
        // Each turn takes a frame off the node's queue, so this ends.
        loop {
            let t = node.poll_transmit(now, buf)?;
            if t.iface != self.iface {
                return Some(Err(t));
            }
            if buf
                .get(..t.len)
                .is_some_and(|f| self.encode_frame(f).is_ok())
            {
                return Some(Ok(t.len));
            }
            self.count_tx_error(node);
        }
    }

    #[cfg(any(feature = "embedded-io", feature = "embedded-hal-nb"))]
    #[allow(clippy::too_many_arguments)]
    fn count_tx_error<
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
    ) {
        if let Some(st) = node.iface_stats_mut(self.iface) {
            st.tx_error = st.tx_error.wrapping_add(1);
        }
    }

    /// The receive loop both HALs share: at most [`Self::POLL_BYTES_MAX`]
    /// bytes from `next_byte` (`Ok(None)`: nothing ready), stopping at the
    /// first completed frame.
    #[cfg(any(feature = "embedded-io", feature = "embedded-hal-nb"))]
    #[allow(clippy::too_many_arguments)]
    fn poll_with<
        E,
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &mut self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        mut next_byte: impl FnMut() -> Result<Option<u8>, E>,
    ) -> Result<Option<PortRx>, PortError<E>> {
        for _ in 0..Self::POLL_BYTES_MAX {
            let Some(byte) = next_byte().map_err(PortError::Link)? else {
                break;
            };
            if let Some(out) = self.receive_byte(node, now, byte) {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }

    /// The transmit loop both HALs share: each frame for this port is
    /// encoded once and handed to `write`; a failed write is counted as
    /// `tx_error` and ends the loop.
    #[cfg(any(feature = "embedded-io", feature = "embedded-hal-nb"))]
    #[allow(clippy::too_many_arguments)]
    fn transmit_with<
        E,
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        buf: &mut [u8],
        mut write: impl FnMut(Encoder<'_>) -> Result<(), E>,
    ) -> Result<Option<Transmit>, PortError<E>> {
        while let Some(next) = self.next_frame(node, now, buf) {
            let len = match next {
                Ok(len) => len,
                Err(other) => return Ok(Some(other)),
            };
            let frame = buf.get(..len).unwrap_or_default();
            // next_frame only returns frames the encoder takes.
            let Ok(enc) = self.encode_frame(frame) else {
                continue;
            };
            if let Err(e) = write(enc) {
                self.count_tx_error(node);
                return Err(PortError::Link(e));
            }
        }
        Ok(None)
    }
}

/// Bytes handed to a writer at a time: the encoder yields one byte at a
/// time, a UART driver prefers slices.
#[cfg(feature = "embedded-io")]
const WRITE_CHUNK: usize = 32;

#[cfg(feature = "embedded-io")]
impl<const FRAME: usize> KissPort<FRAME> {
    /// Reads what `rx` has ready, without blocking, until a frame completes
    /// (its outcome is returned, the rest stays in the device for the next
    /// call, so the application handles each frame's events in turn) or
    /// nothing is left (`None`). Reads at most [`Self::POLL_BYTES_MAX`] bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn poll_io<
        R: embedded_io::Read + embedded_io::ReadReady,
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &mut self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        rx: &mut R,
    ) -> Result<Option<PortRx>, PortError<R::Error>> {
        self.poll_with(node, now, || {
            if !rx.read_ready()? {
                return Ok(None);
            }
            // One byte at a time: bytes after a frame's end stay unread.
            let mut byte = [0u8; 1];
            Ok((rx.read(&mut byte)? == 1).then_some(byte[0]))
        })
    }

    /// Writes every frame `node` has for this port to `tx` (blocking as the
    /// writer does), using `buf` (at least the node's packet size) for the
    /// frame. Stops at a frame for another interface and returns it
    /// (bytes in `buf[..len]`); `Ok(None)` when the node has nothing left.
    #[allow(clippy::too_many_arguments)]
    pub fn transmit_io<
        T: embedded_io::Write,
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &mut self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        buf: &mut [u8],
        tx: &mut T,
    ) -> Result<Option<Transmit>, PortError<T::Error>> {
        self.transmit_with(node, now, buf, |enc| write_io(enc, tx))
    }
}

/// One frame's KISS encoding onto `tx`, in chunks.
#[cfg(feature = "embedded-io")]
fn write_io<T: embedded_io::Write>(mut enc: Encoder<'_>, tx: &mut T) -> Result<(), T::Error> {
    let mut chunk = [0u8; WRITE_CHUNK];
    loop {
        let mut n = 0;
        for (slot, b) in chunk.iter_mut().zip(&mut enc) {
            *slot = b;
            n += 1;
        }
        if n == 0 {
            return tx.flush();
        }
        tx.write_all(chunk.get(..n).unwrap_or_default())?;
    }
}

#[cfg(feature = "embedded-hal-nb")]
impl<const FRAME: usize> KissPort<FRAME> {
    /// [`poll_io`](Self::poll_io) over an `embedded-hal-nb` serial port:
    /// reads until a frame completes or the port would block.
    ///
    /// ```
    /// # #[cfg(feature = "embedded-hal-nb")] {
    /// use csp_core::adapter::KissPort;
    /// use csp_core::node::{IfaceConfig, NodeConfig};
    /// use csp_core::time::Instant;
    /// use csp_core::{Addr, Node, Version};
    /// use embedded_hal_nb::{nb, serial};
    ///
    /// // A UART of your HAL (here: a loop back to itself).
    /// struct Uart(heapless::Deque<u8, 1024>);
    /// impl serial::ErrorType for Uart { type Error = core::convert::Infallible; }
    /// impl serial::Read<u8> for Uart {
    ///     fn read(&mut self) -> nb::Result<u8, Self::Error> {
    ///         self.0.pop_front().ok_or(nb::Error::WouldBlock)
    ///     }
    /// }
    /// impl serial::Write<u8> for Uart {
    ///     fn write(&mut self, b: u8) -> nb::Result<(), Self::Error> {
    ///         self.0.push_back(b).map_err(|_| nb::Error::WouldBlock)
    ///     }
    ///     fn flush(&mut self) -> nb::Result<(), Self::Error> { Ok(()) }
    /// }
    ///
    /// let mut node: Node<128, 2, 2, 2, 1, 4, 100, 1, 1> =
    ///     Node::new(NodeConfig::new(Addr::new(10).unwrap()));
    /// let iface = node.add_iface(IfaceConfig::new("KISS", Version::V2, 6 + 100)).unwrap();
    /// node.routes_mut().set_default(iface, None).unwrap();
    /// let mut port: KissPort<106> = KissPort::new(iface, Version::V2);
    /// let mut uart = Uart(heapless::Deque::new());
    /// let mut buf = [0u8; 128];
    /// let now = Instant::from_millis(0);
    /// // Each turn of the main loop:
    /// while let Some(_rx) = port.poll_nb(&mut node, now, &mut uart).unwrap() {
    ///     // Application events here: `node.poll_event()`.
    /// }
    /// port.transmit_nb(&mut node, now, &mut buf, &mut uart).unwrap();
    /// # }
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn poll_nb<
        R: embedded_hal_nb::serial::Read<u8>,
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &mut self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        rx: &mut R,
    ) -> Result<Option<PortRx>, PortError<R::Error>> {
        self.poll_with(node, now, || match rx.read() {
            Ok(b) => Ok(Some(b)),
            Err(embedded_hal_nb::nb::Error::WouldBlock) => Ok(None),
            Err(embedded_hal_nb::nb::Error::Other(e)) => Err(e),
        })
    }

    /// [`transmit_io`](Self::transmit_io) over an `embedded-hal-nb` serial
    /// port: each byte waits (`embedded_hal_nb::nb::block!`) until the port takes it.
    #[allow(clippy::too_many_arguments)]
    pub fn transmit_nb<
        T: embedded_hal_nb::serial::Write<u8>,
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    >(
        &mut self,
        node: &mut Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>,
        now: Instant,
        buf: &mut [u8],
        tx: &mut T,
    ) -> Result<Option<Transmit>, PortError<T::Error>> {
        self.transmit_with(node, now, buf, |mut enc| {
            enc.try_for_each(|b| embedded_hal_nb::nb::block!(tx.write(b)))
                .and_then(|()| embedded_hal_nb::nb::block!(tx.flush()))
        })
    }
}
