//! NAT reachability of a binding (issue 17): how a redirect names the address a phone
//! can actually be reached at, and the settings of keep-alive pinging (`ping`).
//!
//! Why: most phones register from behind NAT, so the Contact a REGISTER carries
//! (`sip:alice@192.168.1.20:5060`) names a private address no proxy can reach. What
//! can be reached is where the REGISTER came from, through the pinhole the NAT opened
//! for it. Kamailio's `add_contact_alias` / `handle_ruri_alias` carry that address in
//! the Contact URI as `;alias=ip~port~proto` (proto as Kamailio numbers its
//! transports: 1 udp, 2 tcp, 3 tls, 4 sctp, 5 ws, 6 wss), and `handle_ruri_alias`
//! turns it back into the destination (`$du`) of the request it routes; so a 302 that
//! lists the Contact with that alias is enough for a Kamailio proxy to reach the phone.
//! The binding's Path (RFC 3327) goes into the same URI as an escaped `Route` header
//! (RFC 3261 §19.1.5), so a proxy that recurses on the 302 sends the request through
//! the edge proxy that saw the REGISTER.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::location::Transport;
use crate::sip::{self, Scheme};

/// When a redirect's Contact carries `;alias=` (`--nat-alias`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AliasMode {
    /// On every Contact of a binding with a known source.
    Always,
    /// When the source address, port or transport differs from the Contact URI's
    /// (what `add_contact_alias()` does without arguments).
    Differs,
    /// Never: the Contact is listed as registered.
    Never,
}

/// What a keep-alive ping is (`--nat-ping-method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingMethod {
    /// A CRLFCRLF datagram (RFC 5626 §3.5.1's ping, what nathelper's `natping` sends
    /// to UDP contacts): keeps the pinhole open; nothing answers it, so no loss is
    /// counted.
    Crlf,
    /// A SIP OPTIONS request (nathelper's `sipping`): the phone answers, so a silent
    /// one is noticed and, after `ping_max_lost` unanswered pings, removed.
    Options,
}

/// The NAT settings of a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatConfig {
    /// When a 302 Contact carries `;alias=`.
    pub alias: AliasMode,
    /// Keep-alive interval per binding, in ms; 0: no pings.
    pub ping_interval_ms: u64,
    /// What a ping is.
    pub ping_method: PingMethod,
    /// Consecutive unanswered OPTIONS pings after which a binding is removed (1..).
    pub ping_max_lost: u32,
}

impl Default for NatConfig {
    fn default() -> Self {
        Self {
            alias: AliasMode::Differs,
            ping_interval_ms: 0,
            ping_method: PingMethod::Options,
            ping_max_lost: 3,
        }
    }
}

/// Kamailio's number for a transport (`enum sip_protos`), the third part of an alias.
pub const fn alias_proto(t: Transport) -> u8 {
    match t {
        Transport::Udp => 1,
        Transport::Tcp => 2,
        Transport::Tls => 3,
        Transport::Ws => 5,
        Transport::Wss => 6,
    }
}

/// The transport a Contact URI names: its `transport` parameter, else UDP for `sip:`
/// and TLS for `sips:` (RFC 3261 §19.1.2).
fn uri_transport(uri: &sip::Uri<'_>) -> Transport {
    match uri.param(b"transport").flatten() {
        Some(t) if t.eq_ignore_ascii_case(b"tcp") => {
            if uri.scheme == Scheme::Sips {
                Transport::Tls
            } else {
                Transport::Tcp
            }
        }
        Some(t) if t.eq_ignore_ascii_case(b"tls") => Transport::Tls,
        Some(t) if t.eq_ignore_ascii_case(b"ws") => Transport::Ws,
        Some(t) if t.eq_ignore_ascii_case(b"wss") => Transport::Wss,
        _ if uri.scheme == Scheme::Sips => Transport::Tls,
        _ => Transport::Udp,
    }
}

/// The IP a URI host names, if it is an address literal (IPv6 in brackets).
fn host_ip(host: &[u8]) -> Option<IpAddr> {
    let host = host
        .strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(host);
    std::str::from_utf8(host).ok()?.parse().ok()
}

/// Whether the Contact `contact` does not lead to `source` over `transport`: its host
/// is not that address, its port (5060, 5061 for TLS, when absent) is not that port,
/// or it names another transport. A Contact that does not parse differs.
pub fn contact_differs(contact: &[u8], source: SocketAddr, transport: Transport) -> bool {
    let Ok(uri) = sip::parse_uri(contact) else {
        return true;
    };
    let named = uri_transport(&uri);
    let default_port = if matches!(named, Transport::Tls | Transport::Wss) {
        5061
    } else {
        5060
    };
    host_ip(uri.host).map(|ip| ip.to_canonical()) != Some(source.ip().to_canonical())
        || uri.port.unwrap_or(default_port) != source.port()
        || named != transport
}

/// Whether a binding with this contact and source gets an alias under `mode`. A
/// binding without a source (added through the management API: port 0) gets none.
pub fn wants_alias(mode: AliasMode, contact: &[u8], source: SocketAddr, t: Transport) -> bool {
    if source.port() == 0 || source.ip().is_unspecified() {
        return false;
    }
    match mode {
        AliasMode::Always => true,
        AliasMode::Differs => contact_differs(contact, source, t),
        AliasMode::Never => false,
    }
}

/// `ip~port~proto` as `add_contact_alias` writes it (an IPv6 address in brackets).
pub fn write_alias(out: &mut Vec<u8>, source: SocketAddr, transport: Transport) {
    // Writing into a `Vec` cannot fail.
    let _ = match source.ip().to_canonical() {
        IpAddr::V4(ip) => write!(out, "{ip}"),
        IpAddr::V6(ip) => write!(out, "[{ip}]"),
    };
    let _ = write!(out, "~{}~{}", source.port(), alias_proto(transport));
}

/// Whether `b` may stand unescaped in a URI header value (RFC 3261 §25.1: `hvalue =
/// *( hnv-unreserved / unreserved / escaped )`).
fn hvalue_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            // unreserved marks
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            // hnv-unreserved
            | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$'
        )
}

/// `value` %-escaped as a URI header value (RFC 3261 §19.1.5).
fn push_escaped(out: &mut Vec<u8>, value: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        if hvalue_char(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// The Contact URI a redirect lists for a binding, into `out` (cleared first): the
/// stored URI with `;alias=` after its parameters when `alias` is given, and the Path
/// as an escaped `Route` header after its headers when `path` is not empty. With
/// neither, the URI as stored.
pub fn write_redirect_uri(
    out: &mut Vec<u8>,
    contact: &[u8],
    alias: Option<(SocketAddr, Transport)>,
    path: &[u8],
) {
    out.clear();
    // The headers, if any, follow the first `?` after the host part; `parse_uri` found
    // them, and they end the URI.
    let headers = sip::parse_uri(contact).map_or(&[][..], |u| u.headers);
    let mut base = contact;
    if !headers.is_empty() {
        base = contact
            .get(..contact.len().saturating_sub(headers.len() + 1))
            .unwrap_or(contact);
    } else if let Some(stripped) = contact.strip_suffix(b"?") {
        base = stripped;
    }
    out.extend_from_slice(base);
    if let Some((source, transport)) = alias {
        out.extend_from_slice(b";alias=");
        write_alias(out, source, transport);
    }
    let mut sep = b'?';
    if !headers.is_empty() {
        out.push(sep);
        out.extend_from_slice(headers);
        sep = b'&';
    }
    if !path.is_empty() {
        out.push(sep);
        out.extend_from_slice(b"Route=");
        push_escaped(out, path);
    }
}

/// The URIs of a stored Path value (`<a>, <b>`, as `register` joins the headers),
/// without their angle brackets, in order: the route set a request to the binding
/// takes (RFC 3327 §5.3). A comma inside `<>` or quotes does not split.
pub fn path_uris(path: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut in_angle, mut quoted, mut start) = (false, false, 0);
    for (i, &b) in path.iter().enumerate() {
        match b {
            b'"' if !in_angle => quoted = !quoted,
            b'<' if !quoted => in_angle = true,
            b'>' if !quoted => in_angle = false,
            b',' if !quoted && !in_angle => {
                push_route(path.get(start..i).unwrap_or_default(), &mut out);
                start = i + 1;
            }
            _ => {}
        }
    }
    push_route(path.get(start..).unwrap_or_default(), &mut out);
    out
}

/// One Path entry's URI (inside its `<>`), appended when not empty.
fn push_route<'p>(part: &'p [u8], out: &mut Vec<&'p [u8]>) {
    let part = part.trim_ascii();
    let left = part.iter().position(|&b| b == b'<');
    let right = part.iter().rposition(|&b| b == b'>');
    let inner = match (left, right) {
        (Some(l), Some(r)) if l < r => part.get(l + 1..r).unwrap_or(part),
        _ => part,
    };
    if !inner.is_empty() {
        out.push(inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(contact: &str, alias: Option<(&str, Transport)>, path: &str) -> String {
        let mut out = Vec::new();
        let alias = alias.map(|(a, t)| (a.parse().unwrap(), t));
        write_redirect_uri(&mut out, contact.as_bytes(), alias, path.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn alias_is_kamailios_form() {
        let src = Some(("203.0.113.7:40312", Transport::Udp));
        assert_eq!(
            redirect("sip:alice@192.168.1.20:5060", src, ""),
            "sip:alice@192.168.1.20:5060;alias=203.0.113.7~40312~1"
        );
        assert_eq!(
            redirect(
                "sip:alice@10.0.0.2;transport=tcp",
                Some(("[2001:db8::1]:5070", Transport::Tcp)),
                ""
            ),
            "sip:alice@10.0.0.2;transport=tcp;alias=[2001:db8::1]~5070~2"
        );
        assert_eq!(alias_proto(Transport::Tls), 3);
        assert_eq!(alias_proto(Transport::Wss), 6);
    }

    #[test]
    fn path_becomes_an_escaped_route_header_after_existing_headers() {
        assert_eq!(
            redirect("sip:alice@192.168.1.20", None, "<sip:edge.example.com;lr>"),
            "sip:alice@192.168.1.20?Route=%3Csip:edge.example.com%3Blr%3E"
        );
        assert_eq!(
            redirect(
                "sip:alice@192.168.1.20?X-A=1",
                Some(("203.0.113.7:5060", Transport::Udp)),
                "<sip:p1;lr>, <sip:p2@x;lr>"
            ),
            "sip:alice@192.168.1.20;alias=203.0.113.7~5060~1?X-A=1&Route=%3Csip:p1%3Blr%3E%2C%20%3Csip:p2%40x%3Blr%3E"
        );
        assert_eq!(redirect("sip:a@h", None, ""), "sip:a@h");
    }

    #[test]
    fn differs_compares_host_port_and_transport() {
        let src: SocketAddr = "192.0.2.10:5062".parse().unwrap();
        assert!(!contact_differs(
            b"sip:u@192.0.2.10:5062",
            src,
            Transport::Udp
        ));
        assert!(contact_differs(
            b"sip:u@192.168.1.20:5062",
            src,
            Transport::Udp
        ));
        assert!(contact_differs(b"sip:u@192.0.2.10", src, Transport::Udp));
        assert!(contact_differs(
            b"sip:u@192.0.2.10:5062",
            src,
            Transport::Tcp
        ));
        assert!(!contact_differs(
            b"sip:u@192.0.2.10:5062;transport=TCP",
            src,
            Transport::Tcp
        ));
        assert!(contact_differs(
            b"sip:u@phone.example.com:5062",
            src,
            Transport::Udp
        ));
        let v6: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        assert!(!contact_differs(b"sip:u@[2001:db8::1]", v6, Transport::Udp));
        let unset: SocketAddr = "0.0.0.0:0".parse().unwrap();
        assert!(!wants_alias(
            AliasMode::Always,
            b"sip:u@h",
            unset,
            Transport::Udp
        ));
        assert!(wants_alias(
            AliasMode::Always,
            b"sip:u@192.0.2.10:5062",
            src,
            Transport::Udp
        ));
        assert!(!wants_alias(
            AliasMode::Never,
            b"sip:u@h",
            src,
            Transport::Udp
        ));
    }

    #[test]
    fn path_splits_into_uris() {
        assert_eq!(
            path_uris(b"<sip:p1;lr>, <sip:p2;lr;x=\"a,b\">,<sip:p3>"),
            vec![&b"sip:p1;lr"[..], b"sip:p2;lr;x=\"a,b\"", b"sip:p3"]
        );
        assert!(path_uris(b"").is_empty());
    }
}
