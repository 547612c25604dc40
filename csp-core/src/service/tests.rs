extern crate std;
use std::vec;

use super::client::{self, Request};
use super::cmp::{self, CmpType};
use super::*;
use crate::header::{Flags, Prio};
use proptest::prelude::*;

const IDENT: Ident<'static> = Ident {
    hostname: "obc",
    model: "cubesat-3u",
    revision: "v1.2",
    date: "Nov 23 2026",
    time: "15:16:57",
};

fn values() -> ServiceValues<'static> {
    ServiceValues {
        uptime_s: 495,
        memfree: 0x5942_F000,
        buf_free: 14,
        ident: IDENT,
        clock: Some(Timestamp {
            tv_sec: 1_700_000_000,
            tv_nsec: 5,
        }),
    }
}

/// A context with every hook, recording what it was asked to do.
#[derive(Default)]
struct Hooks {
    clock: Timestamp,
    clock_settable: bool,
    routes: heapless::Vec<(u16, u16, Option<u16>, heapless::String<11>), 4>,
    memory: [u8; 32],
    ps_text: &'static [u8],
}

impl ServiceContext for Hooks {
    fn uptime_s(&self) -> u32 {
        1
    }
    fn memfree(&self) -> u32 {
        2
    }
    fn buf_free(&self) -> u32 {
        3
    }
    fn ident(&self) -> Ident<'_> {
        IDENT
    }
    fn if_stats(&self, name: &str) -> Option<IfStats> {
        (name == "KISS").then_some(IfStats {
            tx: 10,
            rx: 20,
            irq: 0xDEAD_BEEF,
            ..IfStats::default()
        })
    }
    fn clock_get(&self) -> Option<Timestamp> {
        Some(self.clock)
    }
    fn clock_set(&mut self, time: Timestamp) -> Result<(), Declined> {
        if !self.clock_settable {
            return Err(Declined);
        }
        self.clock = time;
        Ok(())
    }
    fn route_set(&mut self, r: &RouteSet<'_>) -> Result<(), Declined> {
        if r.iface != "CAN" && r.iface != "ZMQHUB" {
            return Err(Declined);
        }
        let name = heapless::String::try_from(r.iface).map_err(|_| Declined)?;
        self.routes
            .push((r.dest, r.via, r.netmask, name))
            .map_err(|_| Declined)
    }
    fn ps(&mut self, _request: &[u8], out: &mut [u8]) -> usize {
        let n = self.ps_text.len().min(out.len());
        out[..n].copy_from_slice(&self.ps_text[..n]);
        n
    }
    fn peek(&mut self, addr: u32, buf: &mut [u8]) -> Result<(), Declined> {
        let a = addr as usize;
        let src = self.memory.get(a..a + buf.len()).ok_or(Declined)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn poke(&mut self, addr: u32, data: &[u8]) -> Result<(), Declined> {
        let a = addr as usize;
        let dst = self.memory.get_mut(a..a + data.len()).ok_or(Declined)?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

fn request(dport: Port, flags: Flags) -> Header {
    Header {
        prio: Prio::Normal,
        src: Addr::new(2).unwrap(),
        dst: Addr::new(1).unwrap(),
        dport,
        sport: Port::new(17).unwrap(),
        flags,
    }
}

fn services() -> Services {
    Services::new(ServiceConfig::new(Version::V2, Addr::new(1).unwrap()))
}

/// Handles `data` on `port` and returns the outcome with the reply bytes.
fn run<C: ServiceContext>(
    s: &mut Services,
    ctx: &mut C,
    port: Port,
    data: &[u8],
) -> (ServiceOutcome, heapless::Vec<u8, 256>) {
    let mut out = [0u8; 256];
    let o = s.handle(&request(port, Flags::NONE), data, ctx, &mut out);
    let bytes = match o {
        ServiceOutcome::Reply(r) => heapless::Vec::from_slice(&out[..r.len]).unwrap(),
        _ => heapless::Vec::new(),
    };
    (o, bytes)
}

#[test]
fn ping_echoes_with_swapped_header_and_same_flags() {
    let mut s = services();
    let mut out = [0u8; 16];
    let req = request(Port::PING, Flags::CRC32 | Flags::HMAC);
    let o = s.handle(&req, &[1, 2, 3], &mut values(), &mut out);
    let ServiceOutcome::Reply(r) = o else {
        panic!("{o:?}")
    };
    assert_eq!(&out[..r.len], &[1, 2, 3]);
    assert_eq!(r.header, req.reply());
    assert_eq!(r.header.flags, Flags::CRC32 | Flags::HMAC);
    assert_eq!((r.header.src.get(), r.header.dst.get()), (1, 2));
    assert_eq!((r.header.sport, r.header.dport.get()), (Port::PING, 17));
    assert_eq!(s.counters().replies, 1);
}

#[test]
fn empty_ping_gets_empty_reply() {
    let (o, bytes) = run(&mut services(), &mut values(), Port::PING, &[]);
    assert!(matches!(o, ServiceOutcome::Reply(Reply { len: 0, .. })));
    assert!(bytes.is_empty());
}

#[test]
fn ping_larger_than_out_is_not_answered() {
    let mut s = services();
    let mut out = [0u8; 4];
    let o = s.handle(
        &request(Port::PING, Flags::NONE),
        &[0; 5],
        &mut values(),
        &mut out,
    );
    assert_eq!(
        o,
        ServiceOutcome::NoReply(NoReply::OutTooSmall { needed: 5, got: 4 })
    );
    assert_eq!(s.counters().out_too_small, 1);
}

#[test]
fn u32_services_reply_big_endian() {
    let mut s = services();
    let v = values();
    for (port, want) in [
        (Port::UPTIME, v.uptime_s),
        (Port::MEMFREE, v.memfree),
        (Port::BUF_FREE, v.buf_free),
    ] {
        // The request payload is ignored, as libcsp ignores it.
        let (o, bytes) = run(&mut s, &mut values(), port, &[9, 9]);
        assert!(
            matches!(o, ServiceOutcome::Reply(Reply { len: 4, .. })),
            "{o:?}"
        );
        assert_eq!(&bytes[..], &want.to_be_bytes());
        assert_eq!(client::parse_u32(&bytes), Ok(want));
    }
    let mut out = [0u8; 3];
    let o = s.handle(
        &request(Port::UPTIME, Flags::NONE),
        &[],
        &mut values(),
        &mut out,
    );
    assert!(matches!(
        o,
        ServiceOutcome::NoReply(NoReply::OutTooSmall { .. })
    ));
}

#[test]
fn reboot_and_shutdown_become_events_without_reply() {
    let mut s = services();
    let (o, _) = run(
        &mut s,
        &mut values(),
        Port::REBOOT,
        &[0x80, 0x07, 0x80, 0x07],
    );
    assert_eq!(o, ServiceOutcome::Event(ServiceEvent::Reboot));
    let (o, _) = run(
        &mut s,
        &mut values(),
        Port::REBOOT,
        &[0xD1, 0xE5, 0x52, 0x9A],
    );
    assert_eq!(o, ServiceOutcome::Event(ServiceEvent::Shutdown));
    let (o, _) = run(
        &mut s,
        &mut values(),
        Port::REBOOT,
        &[0x80, 0x07, 0x80, 0x08],
    );
    assert_eq!(
        o,
        ServiceOutcome::NoReply(NoReply::BadRebootMagic(0x8007_8008))
    );
    for bad in [&[][..], &[0x80, 0x07, 0x80], &[0x80, 0x07, 0x80, 0x07, 0]] {
        let (o, _) = run(&mut s, &mut values(), Port::REBOOT, bad);
        assert!(matches!(
            o,
            ServiceOutcome::NoReply(NoReply::Malformed(ServiceError::Length { expected: 4, .. }))
        ));
    }
    let c = s.counters();
    assert_eq!((c.events, c.ignored, c.malformed, c.replies), (2, 1, 3, 0));
}

#[test]
fn ps_replies_only_with_a_process_list() {
    let mut s = services();
    let (o, _) = run(&mut s, &mut values(), Port::PS, &[0x55]);
    assert_eq!(o, ServiceOutcome::NoReply(NoReply::NoProcessList));
    let mut hooks = Hooks {
        ps_text: b"idle 1\nmain 2\n",
        ..Hooks::default()
    };
    let (_, bytes) = run(&mut s, &mut hooks, Port::PS, &[0x55]);
    assert_eq!(&bytes[..], b"idle 1\nmain 2\n");
}

#[test]
fn unknown_ports_get_no_reply() {
    let mut s = services();
    for p in 7..=63 {
        let (o, _) = run(&mut s, &mut values(), Port::new(p).unwrap(), &[1, 2, 3]);
        assert_eq!(o, ServiceOutcome::NoReply(NoReply::NotAServicePort(p)));
    }
    assert_eq!(s.counters().ignored, 57);
}

#[test]
fn ident_reply_is_the_full_message_even_for_a_short_request() {
    let mut s = services();
    for req in [&[0u8, 1][..], &[0u8; 93][..]] {
        let mut req = heapless::Vec::<u8, 93>::from_slice(req).unwrap();
        req[1] = 1;
        let (_, bytes) = run(&mut s, &mut values(), Port::CMP, &req);
        assert_eq!(bytes.len(), cmp::IDENT_LEN);
        assert_eq!(&bytes[..2], &[0xFF, 1]);
        assert_eq!(client::parse_ident(&bytes), Ok(IDENT));
    }
}

#[test]
fn cmp_that_is_not_a_request_or_unknown_or_short_is_not_answered() {
    let mut s = services();
    let (o, _) = run(&mut s, &mut values(), Port::CMP, &[0xFF, 1]);
    assert_eq!(o, ServiceOutcome::NoReply(NoReply::CmpNotARequest(0xFF)));
    let (o, _) = run(&mut s, &mut values(), Port::CMP, &[0x00, 0x63]);
    assert_eq!(o, ServiceOutcome::NoReply(NoReply::UnknownCmpCode(0x63)));
    let (o, _) = run(&mut s, &mut values(), Port::CMP, &[0x00, 0]);
    assert_eq!(o, ServiceOutcome::NoReply(NoReply::UnknownCmpCode(0)));
    for short in [&[][..], &[0][..]] {
        let (o, _) = run(&mut s, &mut values(), Port::CMP, short);
        assert!(matches!(
            o,
            ServiceOutcome::NoReply(NoReply::Malformed(ServiceError::Truncated {
                needed: 2,
                ..
            }))
        ));
    }
}

#[test]
fn clock_read_and_set() {
    let mut s = services();
    let mut hooks = Hooks {
        clock: Timestamp {
            tv_sec: 100,
            tv_nsec: 7,
        },
        ..Hooks::default()
    };
    let mut req = [0u8; 10];
    let n = Request::Clock(Timestamp::default()).emit(&mut req).unwrap();
    let (_, bytes) = run(&mut s, &mut hooks, Port::CMP, &req[..n]);
    assert_eq!(client::parse_clock(&bytes), Ok(hooks.clock));

    // Setting is refused: no reply, clock untouched.
    let new = Timestamp {
        tv_sec: 2_000_000_000,
        tv_nsec: 1,
    };
    Request::Clock(new).emit(&mut req).unwrap();
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &req);
    assert_eq!(o, ServiceOutcome::Refused(Refusal::ClockSetDeclined));
    assert_eq!(hooks.clock.tv_sec, 100);

    // Settable: the reply is the clock after setting.
    hooks.clock_settable = true;
    let (_, bytes) = run(&mut s, &mut hooks, Port::CMP, &req);
    assert_eq!(client::parse_clock(&bytes), Ok(new));

    // Truncated body, and a node without a clock.
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &req[..9]);
    assert!(matches!(o, ServiceOutcome::NoReply(NoReply::Malformed(_))));
    let mut no_clock = ServiceValues {
        clock: None,
        ..values()
    };
    let (o, _) = run(
        &mut s,
        &mut no_clock,
        Port::CMP,
        &[0, 6, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    assert_eq!(o, ServiceOutcome::NoReply(NoReply::NoClock));
}

#[test]
fn if_stats_known_and_unknown_interface() {
    let mut s = services();
    let mut req = [0u8; 53];
    let n = Request::IfStats("KISS").emit(&mut req).unwrap();
    assert_eq!(n, 53);
    let (_, bytes) = run(&mut s, &mut Hooks::default(), Port::CMP, &req);
    let (name, stats) = client::parse_if_stats(&bytes).unwrap();
    assert_eq!(name, "KISS");
    assert_eq!((stats.tx, stats.rx, stats.irq), (10, 20, 0xDEAD_BEEF));

    // Only the name is needed in the request.
    let (_, bytes) = run(&mut s, &mut Hooks::default(), Port::CMP, &req[..13]);
    assert_eq!(bytes.len(), 53);

    Request::IfStats("UDP").emit(&mut req).unwrap();
    let (o, _) = run(&mut s, &mut Hooks::default(), Port::CMP, &req);
    assert_eq!(o, ServiceOutcome::NoReply(NoReply::UnknownInterface));
    let (o, _) = run(&mut s, &mut Hooks::default(), Port::CMP, &req[..12]);
    assert!(matches!(o, ServiceOutcome::NoReply(NoReply::Malformed(_))));
    // ServiceValues has no interfaces.
    let (o, _) = run(&mut s, &mut values(), Port::CMP, &req);
    assert_eq!(o, ServiceOutcome::NoReply(NoReply::UnknownInterface));
}

#[test]
fn route_set_goes_to_the_context_and_echoes() {
    let mut s = services();
    let mut hooks = Hooks::default();
    let v2 = RouteSet {
        dest: 300,
        via: 0xFFFF,
        netmask: Some(6),
        iface: "ZMQHUB",
    };
    let mut req = [0u8; 19];
    let n = Request::RouteSet(v2).emit(&mut req).unwrap();
    let (_, bytes) = run(&mut s, &mut hooks, Port::CMP, &req[..n]);
    assert_eq!(bytes[0], 0xFF);
    assert_eq!(&bytes[1..], &req[1..n]);
    assert_eq!(client::parse_route_set(&bytes, true), Ok(v2));
    assert_eq!(hooks.routes.len(), 1);
    assert_eq!((hooks.routes[0].0, hooks.routes[0].2), (300, Some(6)));

    let v1 = RouteSet {
        dest: 5,
        via: 7,
        netmask: None,
        iface: "CAN",
    };
    let n = Request::RouteSet(v1).emit(&mut req).unwrap();
    let (_, bytes) = run(&mut s, &mut hooks, Port::CMP, &req[..n]);
    assert_eq!(client::parse_route_set(&bytes, false), Ok(v1));
    assert_eq!(hooks.routes[1].2, None);

    let bad = RouteSet { iface: "I2C", ..v1 };
    let n = Request::RouteSet(bad).emit(&mut req).unwrap();
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &req[..n]);
    assert_eq!(o, ServiceOutcome::Refused(Refusal::RouteSetDeclined));
    let (o, _) = run(&mut s, &mut values(), Port::CMP, &req[..n]);
    assert_eq!(o, ServiceOutcome::Refused(Refusal::RouteSetDeclined));
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &req[..n - 1]);
    assert!(matches!(o, ServiceOutcome::NoReply(NoReply::Malformed(_))));
    assert_eq!(hooks.routes.len(), 2);
}

#[test]
fn peek_and_poke_refused_unless_enabled() {
    let mut s = services();
    let mut hooks = Hooks::default();
    let mut req = [0u8; 32];
    let n = Request::Poke {
        addr: 4,
        data: &[1, 2, 3],
    }
    .emit(&mut req)
    .unwrap();
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &req[..n]);
    assert_eq!(o, ServiceOutcome::Refused(Refusal::PeekPokeDisabled));
    assert_eq!(
        hooks.memory[4..7],
        [0, 0, 0],
        "a refused poke writes nothing"
    );
    let m = Request::Peek { addr: 4, len: 3 }
        .emit(&mut req[16..])
        .unwrap();
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &req[16..16 + m]);
    assert_eq!(o, ServiceOutcome::Refused(Refusal::PeekPokeDisabled));
    assert_eq!(s.counters().refused, 2);

    s.config.allow_peek_poke = true;
    let (_, bytes) = run(&mut s, &mut hooks, Port::CMP, &req[..n]);
    assert_eq!(bytes[0], 0xFF);
    assert_eq!(&bytes[1..], &req[1..n]);
    assert_eq!(hooks.memory[4..7], [1, 2, 3]);
    let (_, bytes) = run(&mut s, &mut hooks, Port::CMP, &req[16..16 + m]);
    assert_eq!(client::parse_peek(&bytes), Ok(&[1, 2, 3][..]));
    // A peek request without the room for its data still gets `len` bytes.
    let (_, bytes) = run(&mut s, &mut hooks, Port::CMP, &req[16..16 + 7]);
    assert_eq!(client::parse_peek(&bytes), Ok(&[1, 2, 3][..]));

    // Out of the context's memory: declined. Poke data missing: malformed.
    let m = Request::Peek { addr: 31, len: 2 }.emit(&mut req).unwrap();
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &req[..m]);
    assert_eq!(o, ServiceOutcome::Refused(Refusal::MemoryAccessDeclined));
    let n = Request::Poke {
        addr: 0,
        data: &[1, 2],
    }
    .emit(&mut req)
    .unwrap();
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &req[..n - 1]);
    assert!(matches!(o, ServiceOutcome::NoReply(NoReply::Malformed(_))));
    // Length above 200.
    let (o, _) = run(&mut s, &mut hooks, Port::CMP, &[0, 4, 0, 0, 0, 0, 201]);
    assert_eq!(
        o,
        ServiceOutcome::NoReply(NoReply::Malformed(ServiceError::MemTooLong(201)))
    );
}

#[test]
fn nothing_changes_for_a_reply_that_cannot_fit() {
    let mut s = services();
    s.config.allow_peek_poke = true;
    let mut hooks = Hooks {
        clock_settable: true,
        ..Hooks::default()
    };
    let mut req = [0u8; 32];
    let mut small = [0u8; 9];
    let n = Request::Poke {
        addr: 0,
        data: &[7, 7, 7],
    }
    .emit(&mut req)
    .unwrap();
    let o = s.handle(
        &request(Port::CMP, Flags::NONE),
        &req[..n],
        &mut hooks,
        &mut small,
    );
    assert!(matches!(
        o,
        ServiceOutcome::NoReply(NoReply::OutTooSmall { .. })
    ));
    assert_eq!(hooks.memory[..3], [0, 0, 0]);

    let route = RouteSet {
        dest: 1,
        via: 2,
        netmask: None,
        iface: "CAN",
    };
    let n = Request::RouteSet(route).emit(&mut req).unwrap();
    let o = s.handle(
        &request(Port::CMP, Flags::NONE),
        &req[..n],
        &mut hooks,
        &mut small,
    );
    assert!(matches!(
        o,
        ServiceOutcome::NoReply(NoReply::OutTooSmall { .. })
    ));
    assert!(hooks.routes.is_empty());

    let n = Request::Clock(Timestamp {
        tv_sec: 5,
        tv_nsec: 0,
    })
    .emit(&mut req)
    .unwrap();
    let o = s.handle(
        &request(Port::CMP, Flags::NONE),
        &req[..n],
        &mut hooks,
        &mut small,
    );
    assert!(matches!(
        o,
        ServiceOutcome::NoReply(NoReply::OutTooSmall { .. })
    ));
    assert_eq!(hooks.clock.tv_sec, 0);
    assert_eq!(s.counters().out_too_small, 3);
}

#[test]
fn broadcast_request_is_answered_from_own_address() {
    let mut s = Services::new(ServiceConfig::new(Version::V1, Addr::new(9).unwrap()));
    let mut req = request(Port::PING, Flags::NONE);
    req.dst = Version::V1.broadcast();
    let mut out = [0u8; 4];
    let ServiceOutcome::Reply(r) = s.handle(&req, &[1], &mut values(), &mut out) else {
        panic!()
    };
    assert_eq!((r.header.src.get(), r.header.dst.get()), (9, 2));
    // 31 is broadcast in v1 only; a v2 node at 31 answers as 31.
    let mut s = Services::new(ServiceConfig::new(Version::V2, Addr::new(9).unwrap()));
    let ServiceOutcome::Reply(r) = s.handle(&req, &[1], &mut values(), &mut out) else {
        panic!()
    };
    assert_eq!(r.header.src.get(), 31);
}

#[test]
fn request_ident_round_trips_through_handle() {
    let mut s = services();
    let mut req = [0u8; 93];
    let n = Request::Ident.emit(&mut req).unwrap();
    let (_, bytes) = run(&mut s, &mut values(), Request::Ident.port(), &req[..n]);
    let id = client::parse_ident(&bytes).unwrap();
    assert_eq!(id, IDENT);
    let mut again = [0u8; 93];
    id.emit(CmpType::Reply, &mut again).unwrap();
    assert_eq!(&again[..], &bytes[..]);
}

fn arb_header() -> impl Strategy<Value = Header> {
    (0u8..4, 0u16..32, 0u16..32, 0u8..64, 0u8..64, any::<u8>()).prop_map(
        |(prio, src, dst, dport, sport, flags)| Header {
            prio: Prio::from_bits(prio),
            src: Addr::new(src).unwrap(),
            dst: Addr::new(dst).unwrap(),
            dport: Port::new(dport).unwrap(),
            sport: Port::new(sport).unwrap(),
            flags: Flags::from_bits(flags),
        },
    )
}

proptest! {
    #[test]
    fn handle_never_panics_and_reply_fits_out(
        header in arb_header(),
        cmp_code in 0u8..9,
        mut data in proptest::collection::vec(any::<u8>(), 0..260),
        out_len in 0usize..260,
        peek_poke in any::<bool>(),
        settable in any::<bool>(),
    ) {
        // Make CMP requests likely enough to reach every code.
        if header.dport == Port::CMP && data.len() >= 2 && data[0] & 1 == 0 {
            data[0] = 0;
            data[1] = cmp_code;
        }
        let mut s = services();
        s.config.allow_peek_poke = peek_poke;
        let mut hooks = Hooks { clock_settable: settable, ps_text: b"ps", ..Hooks::default() };
        let mut out = vec![0u8; out_len];
        let o = s.handle(&header, &data, &mut hooks, &mut out);
        if let ServiceOutcome::Reply(r) = o {
            prop_assert!(r.len <= out_len);
            prop_assert_eq!(r.header, header.reply());
        }
        let o2 = s.handle(&header, &data, &mut values(), &mut out);
        if let ServiceOutcome::Reply(r) = o2 {
            prop_assert!(r.len <= out_len);
        }
        let c = s.counters();
        prop_assert_eq!(c.requests, 2);
        prop_assert_eq!(
            c.replies + c.events + c.malformed + c.ignored + c.refused + c.out_too_small,
            2
        );
    }

    #[test]
    fn client_parsers_are_total(data in proptest::collection::vec(any::<u8>(), 0..120)) {
        let _ = client::parse_u32(&data);
        let _ = client::parse_ident(&data);
        let _ = client::parse_clock(&data);
        let _ = client::parse_if_stats(&data);
        let _ = client::parse_route_set(&data, true);
        let _ = client::parse_route_set(&data, false);
        let _ = client::parse_peek(&data);
    }

    #[test]
    fn ping_echo_is_exact(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut out = [0u8; 200];
        let o = services().handle(&request(Port::PING, Flags::NONE), &data, &mut values(), &mut out);
        let ServiceOutcome::Reply(r) = o else { return Err(TestCaseError::fail("no reply")) };
        prop_assert_eq!(client::check_ping(&data, &out[..r.len]), Ok(()));
    }
}
