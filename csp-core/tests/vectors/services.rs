//! Services: request frames built by our client helpers, replies produced by
//! our handler, and live captures parsed by our reply parsers, all against
//! the bytes libcsp produced.

use crate::support::{Outcome, Vector};
use csp_core::security::crc32c;
use csp_core::service::client::{self, Request};
use csp_core::service::{Ident, ServiceConfig, ServiceOutcome, ServiceValues, Services, Timestamp};
use csp_core::{Addr, Flags, Header, Port, Prio, Version};
use serde_json::Value;

/// The node configuration of the libcsp server that produced `reply_*`
/// (`csp_conf.hostname`, `.model`, `.revision`): fixed settings, unlike the
/// build date and time, which are read back from the reply.
const SERVER_HOSTNAME: &str = "anchor-node";
const SERVER_MODEL: &str = "libcsp-develop";
const SERVER_REVISION: &str = "v2.1-anchor";

pub fn check(v: &Vector) -> Outcome {
    let name = v.name();
    if name.starts_with("req_") {
        check_request(v)
    } else if name.starts_with("reply_") {
        check_reply(v)
    } else if name.starts_with("live_") {
        check_live(v)
    } else {
        Outcome::NotUnderstood("unknown services vector kind")
    }
}

/// header | data | CRC32C of data (big-endian) when the CRC flag is set.
fn frame(h: &Header, data: &[u8], version: Version) -> Vec<u8> {
    let (bytes, n) = h.to_bytes(version).unwrap();
    let mut f = bytes[..n].to_vec();
    f.extend_from_slice(data);
    if h.flags.contains(Flags::CRC32) {
        f.extend_from_slice(&crc32c(data).to_be_bytes());
    }
    f
}

/// The data of a frame with the CRC trailer checked and removed if flagged.
fn data_of<'a>(v: &Vector, h: &Header, frame: &'a [u8], version: Version) -> &'a [u8] {
    let rest = &frame[version.header_len()..];
    if !h.flags.contains(Flags::CRC32) {
        return rest;
    }
    let (data, crc) = rest.split_at(rest.len() - 4);
    assert_eq!(crc32c(data).to_be_bytes(), crc, "{}: CRC32 trailer", v.id());
    data
}

fn check_request(v: &Vector) -> Outcome {
    let version = v.version();
    let req = match v.name() {
        "req_ping" => Request::Ping { size: 10 },
        "req_ping_crc" => Request::Ping { size: 10 },
        "req_uptime" => Request::Uptime,
        "req_memfree" => Request::Memfree,
        "req_buffree" => Request::BufFree,
        "req_cmp_ident" => Request::Ident,
        "req_reboot" => Request::Reboot,
        "req_shutdown" => Request::Shutdown,
        "req_ping_noreply" => Request::PingNoReply,
        "req_cmp_clock_get" => Request::Clock(Timestamp::default()),
        _ => return Outcome::NotUnderstood("request helper not mapped"),
    };
    assert_eq!(v.out_u64("frame_count"), 1);
    let src = Addr::new(v.in_u64("own_addr") as u16).unwrap();
    let dst = Addr::new(v.in_u64("dst") as u16).unwrap();
    // The source port is libcsp's ephemeral connection port: taken as given.
    let sport = Port::new(v.out_u64("request_sport") as u8).unwrap();
    let mut h = req.header(src, dst, sport);
    if v.name() == "req_ping_crc" {
        // csp_ping takes its options from its caller; this one asked for CRC32.
        h.flags = h.flags.with(Flags::CRC32);
    }
    v.assert_header_eq(&h, "request_");

    let mut payload = [0u8; 256];
    let n = req.emit(&mut payload).unwrap();
    let wire = frame(&h, &payload[..n], version);
    assert_eq!(
        wire,
        v.out_hex("request_frame"),
        "{}: request frame",
        v.id()
    );
    assert_eq!(
        &wire[version.header_len()..],
        &v.out_hex("request_after_header")[..],
        "{}: after header",
        v.id()
    );
    // And our handler reads the request libcsp sent the way libcsp's did.
    let theirs = v.out_hex("request_frame");
    let parsed = Header::parse(&theirs, version).unwrap();
    assert_eq!(parsed, h);
    assert_eq!(data_of(v, &parsed, &theirs, version), &payload[..n]);
    Outcome::Checked
}

fn check_reply(v: &Vector) -> Outcome {
    let version = v.version();
    let request = v.header_from("inputs", "request_");
    let payload = v.in_hex("request_payload");
    let count = v.out_u64("reply_count");

    // Host-dependent values: what the server reported is what our context reports.
    let reply_data = if count == 1 {
        let wire = v.out_hex("reply_frame");
        let h = Header::parse(&wire, version).unwrap();
        data_of(v, &h, &wire, version).to_vec()
    } else {
        Vec::new()
    };
    let u32_from_reply = || client::parse_u32(&reply_data).unwrap();
    let mut ctx = ServiceValues {
        ident: Ident {
            hostname: SERVER_HOSTNAME,
            model: SERVER_MODEL,
            revision: SERVER_REVISION,
            ..Ident::default()
        },
        ..ServiceValues::default()
    };
    match request.dport {
        Port::UPTIME => ctx.uptime_s = u32_from_reply(),
        Port::MEMFREE => ctx.memfree = u32_from_reply(),
        Port::BUF_FREE => ctx.buf_free = u32_from_reply(),
        Port::CMP if count == 1 => {
            let theirs = client::parse_ident(&reply_data).unwrap();
            ctx.ident.date = theirs.date;
            ctx.ident.time = theirs.time;
        }
        _ => {}
    }

    let mut services = Services::new(ServiceConfig::new(version, request.dst));
    let mut out = [0u8; 256];
    let outcome = services.handle(&request, &payload, &mut ctx, &mut out);
    if count == 0 {
        assert!(
            !matches!(outcome, ServiceOutcome::Reply(_)),
            "{}: libcsp sent no reply, we would: {outcome:?}",
            v.id()
        );
        return Outcome::Checked;
    }
    assert_eq!(count, 1);
    let ServiceOutcome::Reply(reply) = outcome else {
        panic!("{}: libcsp replied, we did not: {outcome:?}", v.id())
    };
    v.assert_header_eq(&reply.header, "reply_");
    let wire = frame(&reply.header, &out[..reply.len], version);
    assert_eq!(wire, v.out_hex("reply_frame"), "{}: reply frame", v.id());
    assert_eq!(
        &wire[version.header_len()..],
        &v.out_hex("reply_after_header")[..],
        "{}: after header",
        v.id()
    );
    Outcome::Checked
}

fn check_live(v: &Vector) -> Outcome {
    let version = v.version();
    let wire = v.out_hex("frame");
    let d = &v.output("decoded");
    assert_eq!(d["ok"], Value::Bool(true));
    let n = |k: &str| {
        d[k].as_u64()
            .unwrap_or_else(|| panic!("{}: decoded.{k}", v.id()))
    };
    let want = Header {
        prio: Prio::new(n("prio") as u8).unwrap(),
        src: Addr::new(n("src") as u16).unwrap(),
        dst: Addr::new(n("dst") as u16).unwrap(),
        dport: Port::new(n("dport") as u8).unwrap(),
        sport: Port::new(n("sport") as u8).unwrap(),
        flags: Flags::from_bits(n("flags") as u8),
    };
    let h = Header::parse(&wire, version).unwrap();
    assert_eq!(h, want, "{}: decoded header", v.id());
    assert_eq!((wire.len() - version.header_len()) as u64, n("length"));
    let data = data_of(v, &h, &wire, version);

    let mut ping = [0u8; 10];
    Request::Ping { size: 10 }.emit(&mut ping).unwrap();
    match v.in_str("direction") {
        "c2s" => {
            // A request as our helper builds it, flags included.
            let req = match h.dport {
                Port::PING => Request::Ping { size: 10 },
                Port::UPTIME => Request::Uptime,
                Port::MEMFREE => Request::Memfree,
                Port::BUF_FREE => Request::BufFree,
                Port::CMP => Request::Ident,
                _ => return Outcome::NotUnderstood("live request to an unmapped port"),
            };
            let mut payload = [0u8; 128];
            let len = req.emit(&mut payload).unwrap();
            assert_eq!(data, &payload[..len], "{}: request payload", v.id());
            assert_eq!(h.flags, req.flags(), "{}: request flags", v.id());
        }
        "s2c" => match h.sport {
            Port::PING => client::check_ping(&ping, data).unwrap(),
            Port::UPTIME | Port::MEMFREE | Port::BUF_FREE => {
                client::parse_u32(data).unwrap();
            }
            Port::CMP => {
                let id = client::parse_ident(data).unwrap();
                assert_eq!(id.hostname, "csp_node", "{}", v.id());
                assert_eq!(id.model, "anchor-harness", "{}", v.id());
                assert_eq!(id.revision, "develop", "{}", v.id());
                // C __DATE__ / __TIME__ shapes: "Mmm dd yyyy", "hh:mm:ss".
                assert_eq!((id.date.len(), id.time.len()), (11, 8), "{}", v.id());
                // Our emitter gives back exactly these bytes.
                let mut again = [0u8; 93];
                id.emit(csp_core::service::cmp::CmpType::Reply, &mut again)
                    .unwrap();
                assert_eq!(&again[..], data, "{}: ident re-emit", v.id());
            }
            _ => return Outcome::NotUnderstood("live reply from an unmapped port"),
        },
        _ => return Outcome::NotUnderstood("unknown capture direction"),
    }
    Outcome::Checked
}
