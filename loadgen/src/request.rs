//! Building requests: realistic REGISTER/INVITE/ACK bytes written into caller-owned buffers.
//!
//! Why realistic: a registrar's cost depends on what it parses, so the requests look like a
//! real UA's (~450 bytes: Via with branch and rport, From tag, Contact with `+sip.instance`,
//! User-Agent, Allow, Supported). Why deterministic: a retransmission must be byte-identical
//! to the original (RFC 3261 §17.1.2.2), so we rebuild it from the slot instead of keeping
//! a copy of every in-flight request.
//!
//! Matching responses is O(1): the Via branch carries `<run nonce>-<worker>-<slot>-<seq>`, so a
//! response names the slot that sent it; the sequence number rejects late answers to a slot
//! that has since been reused. The run nonce keeps two runs of the loadgen from colliding in
//! the server's transaction table (RFC 3261 §17.2.3 matches on branch).

use crate::transport::Kind;

/// Prefix every branch must carry (RFC 3261 §8.1.1.7).
pub(crate) const BRANCH_COOKIE: &[u8] = b"z9hG4bK-";

/// Longest `--domain` accepted, so that a request always fits `REQUEST_BYTES_MAX`.
pub(crate) const DOMAIN_BYTES_MAX: usize = 128;
/// Longest `--user-prefix` accepted, for the same reason.
pub(crate) const USER_PREFIX_BYTES_MAX: usize = 32;
/// Buffer size for one request; the longest request we build (REGISTER with the longest
/// domain and prefix and an `Authorization` line with a 255-byte realm) is about 1700 bytes.
/// Realistic ones stay under 800 bytes, far from the path MTU.
pub(crate) const REQUEST_BYTES_MAX: usize = 2048;

/// What a request does to the registrar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// First registration of a binding: a Call-ID the server has not seen, CSeq 1.
    Register,
    /// Re-REGISTER of an existing binding: same Call-ID, CSeq one higher.
    Refresh,
    /// REGISTER with `Expires: 0` (RFC 3261 §10.2.2).
    Unregister,
    /// REGISTER without Contact: asks for the current bindings (RFC 3261 §10.2.3).
    Fetch,
    /// INVITE to a registered AOR; a registrar acting as redirect server answers 302.
    Invite,
}

impl Op {
    pub(crate) fn method(self) -> &'static [u8] {
        match self {
            Self::Invite => b"INVITE",
            _ => b"REGISTER",
        }
    }

    /// Final status a correct registrar answers with.
    pub(crate) fn expected_status(self) -> u16 {
        match self {
            Self::Invite => 302,
            _ => 200,
        }
    }

    /// Call-ID kind letter: REGISTERs of one user share a Call-ID across refreshes, each
    /// INVITE has its own.
    fn call_id_kind(self) -> u8 {
        match self {
            Self::Invite => b'i',
            _ => b'r',
        }
    }
}

/// Per-run constants every request carries.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) domain: String,
    pub(crate) user_prefix: String,
    /// Address written in Via sent-by and Contact (the socket's own address).
    pub(crate) local_ip: String,
    /// Distinguishes runs: part of every branch, Call-ID and tag.
    pub(crate) nonce: u32,
    pub(crate) expires_s: u32,
    /// Add `;+sip.instance="<urn:uuid:…>"` to Contact (RFC 5626 §4.1).
    pub(crate) instance: bool,
    /// Written in Via (`SIP/2.0/TCP`) and Contact (`;transport=tcp`).
    pub(crate) transport: Kind,
}

/// One request, fully determined by these fields plus the `Identity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub(crate) op: Op,
    pub(crate) user: u32,
    /// REGISTER: registration generation (a new Call-ID per generation). INVITE: a per-worker
    /// counter that makes every INVITE Call-ID unique.
    pub(crate) generation: u32,
    pub(crate) cseq: u32,
    pub(crate) worker: u32,
    pub(crate) slot: u32,
    pub(crate) seq: u32,
    /// Local port of the sending socket (Via sent-by, Contact).
    pub(crate) port: u16,
}

/// A bounds-checked writer over a caller-owned buffer. Overflow truncates and is reported by
/// `finish`, never panics.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            len: 0,
            overflow: false,
        }
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) -> &mut Self {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow = true,
        }
        self
    }

    pub(crate) fn num(&mut self, mut n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..])
    }

    pub(crate) fn hex(&mut self, n: u64, width: usize) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [0u8; 16];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = HEX[((n >> ((15 - i) * 4)) & 0xf) as usize];
        }
        self.put(&digits[16 - width.min(16)..])
    }

    fn finish(self) -> Option<usize> {
        if self.overflow { None } else { Some(self.len) }
    }
}

/// Formats with a [`Writer`] into `out`; the written bytes, or `None` when they do not fit.
pub(crate) fn fmt_into(out: &mut [u8], f: impl FnOnce(&mut Writer<'_>)) -> Option<&[u8]> {
    let mut w = Writer::new(out);
    f(&mut w);
    let n = w.finish()?;
    out.get(..n)
}

fn aor(w: &mut Writer<'_>, id: &Identity, user: u32) {
    w.put(b"sip:")
        .put(id.user_prefix.as_bytes())
        .num(user.into())
        .put(b"@")
        .put(id.domain.as_bytes());
}

fn via(w: &mut Writer<'_>, id: &Identity, s: &Spec) {
    w.put(b"Via: SIP/2.0/")
        .put(id.transport.via_token())
        .put(b" ")
        .put(id.local_ip.as_bytes())
        .put(b":")
        .num(s.port.into());
    w.put(b";branch=")
        .put(BRANCH_COOKIE)
        .hex(id.nonce.into(), 8);
    w.put(b"-")
        .num(s.worker.into())
        .put(b"-")
        .num(s.slot.into())
        .put(b"-")
        .num(s.seq.into());
    w.put(b";rport\r\n");
}

fn call_id(w: &mut Writer<'_>, id: &Identity, s: &Spec) {
    w.put(b"Call-ID: ")
        .hex(id.nonce.into(), 8)
        .put(b"-")
        .put(&[s.op.call_id_kind()]);
    w.num(s.generation.into())
        .put(b"-")
        .num(s.user.into())
        .put(b"@loadgen\r\n");
}

/// The From tag: stable per user and run, so refreshes look like one UA.
fn tag(w: &mut Writer<'_>, id: &Identity, user: u32) {
    w.put(b";tag=").hex(id.nonce.into(), 8).hex(user.into(), 8);
}

fn contact(w: &mut Writer<'_>, id: &Identity, s: &Spec) {
    w.put(b"Contact: <sip:")
        .put(id.user_prefix.as_bytes())
        .num(s.user.into());
    w.put(b"@")
        .put(id.local_ip.as_bytes())
        .put(b":")
        .num(s.port.into())
        .put(b";transport=")
        .put(id.transport.name().as_bytes())
        .put(b">");
    if id.instance {
        // A stable per-user UUID (version 4 layout, user number in the node field).
        w.put(b";+sip.instance=\"<urn:uuid:")
            .hex(id.nonce.into(), 8)
            .put(b"-0000-4000-8000-");
        w.hex(s.user.into(), 12).put(b">\"");
    }
    w.put(b"\r\n");
}

fn trailer(w: &mut Writer<'_>) {
    w.put(b"User-Agent: sipreg-loadgen\r\n");
    w.put(b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n");
    w.put(b"Supported: path\r\n");
    w.put(b"Content-Length: 0\r\n\r\n");
}

/// Writes the request described by `s` into `out`; returns its length, or `None` if `out` is
/// too small (cannot happen with `REQUEST_BYTES_MAX` and validated flags).
///
/// `auth` is the hook for digest authentication (a later issue): a complete
/// `Authorization: ...\r\n` line inserted before Content-Length when the server challenged.
pub(crate) fn write_request(
    out: &mut [u8],
    id: &Identity,
    s: &Spec,
    auth: Option<&[u8]>,
) -> Option<usize> {
    let mut w = Writer::new(out);
    match s.op {
        Op::Invite => {
            w.put(b"INVITE ");
            aor(&mut w, id, s.user);
            w.put(b" SIP/2.0\r\n");
        }
        _ => {
            w.put(b"REGISTER sip:")
                .put(id.domain.as_bytes())
                .put(b" SIP/2.0\r\n");
        }
    }
    via(&mut w, id, s);
    w.put(b"Max-Forwards: 70\r\n");
    match s.op {
        Op::Invite => {
            w.put(b"From: <sip:caller@")
                .put(id.domain.as_bytes())
                .put(b">");
            tag(&mut w, id, s.user);
        }
        _ => {
            w.put(b"From: <");
            aor(&mut w, id, s.user);
            w.put(b">");
            tag(&mut w, id, s.user);
        }
    }
    w.put(b"\r\nTo: <");
    aor(&mut w, id, s.user);
    w.put(b">\r\n");
    call_id(&mut w, id, s);
    w.put(b"CSeq: ")
        .num(s.cseq.into())
        .put(b" ")
        .put(s.op.method())
        .put(b"\r\n");
    match s.op {
        Op::Register | Op::Refresh => {
            contact(&mut w, id, s);
            w.put(b"Expires: ").num(id.expires_s.into()).put(b"\r\n");
        }
        Op::Unregister => {
            contact(&mut w, id, s);
            w.put(b"Expires: 0\r\n");
        }
        Op::Fetch => {}
        Op::Invite => {
            w.put(b"Contact: <sip:caller@")
                .put(id.local_ip.as_bytes())
                .put(b":")
                .num(s.port.into());
            w.put(b";transport=")
                .put(id.transport.name().as_bytes())
                .put(b">\r\n");
        }
    }
    if let Some(line) = auth {
        w.put(line);
    }
    trailer(&mut w);
    w.finish()
}

/// Writes the ACK for a non-2xx final response to INVITE (RFC 3261 §17.1.1.3): same branch,
/// Call-ID, From and CSeq number, the To of the response (with its tag).
pub(crate) fn write_ack(
    out: &mut [u8],
    id: &Identity,
    s: &Spec,
    response_to: &[u8],
) -> Option<usize> {
    debug_assert_eq!(s.op, Op::Invite);
    let mut w = Writer::new(out);
    w.put(b"ACK ");
    aor(&mut w, id, s.user);
    w.put(b" SIP/2.0\r\n");
    via(&mut w, id, s);
    w.put(b"Max-Forwards: 70\r\nFrom: <sip:caller@")
        .put(id.domain.as_bytes())
        .put(b">");
    tag(&mut w, id, s.user);
    w.put(b"\r\nTo: ").put(response_to).put(b"\r\n");
    call_id(&mut w, id, s);
    w.put(b"CSeq: ")
        .num(s.cseq.into())
        .put(b" ACK\r\nContent-Length: 0\r\n\r\n");
    w.finish()
}

/// The slot address a branch names, if it is one of ours for this run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BranchKey {
    pub(crate) worker: u32,
    pub(crate) slot: u32,
    pub(crate) seq: u32,
}

/// Decodes `z9hG4bK-<nonce hex8>-<worker>-<slot>-<seq>`; `None` for anyone else's branch.
pub(crate) fn parse_branch(branch: &[u8], nonce: u32) -> Option<BranchKey> {
    let rest = branch.strip_prefix(BRANCH_COOKIE)?;
    let (hex, rest) = rest.split_at_checked(8)?;
    if parse_hex(hex)? != nonce {
        return None;
    }
    let mut parts = rest.strip_prefix(b"-")?.split(|&b| b == b'-');
    let worker = parse_dec(parts.next()?)?;
    let slot = parse_dec(parts.next()?)?;
    let seq = parse_dec(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    Some(BranchKey { worker, slot, seq })
}

/// Decodes the user number at the end of one of our Call-IDs (`…-<user>@loadgen`).
pub(crate) fn call_id_user(call_id: &[u8]) -> Option<u32> {
    let head = call_id.strip_suffix(b"@loadgen")?;
    let dash = memchr::memrchr(b'-', head)?;
    parse_dec(head.get(dash + 1..)?)
}

pub(crate) fn parse_dec(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    u32::try_from(n).ok()
}

fn parse_hex(digits: &[u8]) -> Option<u32> {
    let mut n: u32 = 0;
    for &d in digits {
        let v = (d as char).to_digit(16)?;
        n = n.checked_mul(16)?.checked_add(v)?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            domain: "example.com".into(),
            user_prefix: "user".into(),
            local_ip: "127.0.0.1".into(),
            nonce: 0xdead_beef,
            expires_s: 3600,
            instance: true,
            transport: Kind::Udp,
        }
    }

    fn spec(op: Op) -> Spec {
        Spec {
            op,
            user: 42,
            generation: 0,
            cseq: 7,
            worker: 1,
            slot: 99,
            seq: 3,
            port: 40000,
        }
    }

    fn build(op: Op) -> String {
        let mut buf = [0u8; REQUEST_BYTES_MAX];
        let n = write_request(&mut buf, &identity(), &spec(op), None).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn register_has_every_header_a_real_ua_sends() {
        let r = build(Op::Register);
        assert!(r.starts_with("REGISTER sip:example.com SIP/2.0\r\n"), "{r}");
        for line in [
            "Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-deadbeef-1-99-3;rport\r\n",
            "Max-Forwards: 70\r\n",
            "From: <sip:user42@example.com>;tag=deadbeef0000002a\r\n",
            "To: <sip:user42@example.com>\r\n",
            "Call-ID: deadbeef-r0-42@loadgen\r\n",
            "CSeq: 7 REGISTER\r\n",
            "Contact: <sip:user42@127.0.0.1:40000;transport=udp>;+sip.instance=\"<urn:uuid:deadbeef-0000-4000-8000-00000000002a>\"\r\n",
            "Expires: 3600\r\n",
            "Content-Length: 0\r\n\r\n",
        ] {
            assert!(r.contains(line), "missing {line:?} in {r}");
        }
        assert!(r.ends_with("\r\n\r\n"));
        assert!(
            (450..=520).contains(&r.len()),
            "with +sip.instance, got {}",
            r.len()
        );
    }

    #[test]
    fn default_register_is_about_430_bytes() {
        let mut id = identity();
        id.instance = false;
        let mut buf = [0u8; REQUEST_BYTES_MAX];
        let n = write_request(&mut buf, &id, &spec(Op::Register), None).unwrap();
        assert!((400..=450).contains(&n), "realistic size, got {n}");
    }

    #[test]
    fn unregister_fetch_and_invite_differ_where_the_rfc_says() {
        let u = build(Op::Unregister);
        assert!(u.contains("Expires: 0\r\n") && u.contains("Contact: <sip:user42@"));
        let f = build(Op::Fetch);
        assert!(!f.contains("Contact:") && !f.contains("Expires:"), "{f}");
        let i = build(Op::Invite);
        assert!(
            i.starts_with("INVITE sip:user42@example.com SIP/2.0\r\n"),
            "{i}"
        );
        assert!(i.contains("CSeq: 7 INVITE\r\n") && i.contains("Call-ID: deadbeef-i0-42@loadgen"));
    }

    #[test]
    fn stream_transports_say_so_in_via_and_contact() {
        for (kind, via, param) in [
            (Kind::Tcp, "SIP/2.0/TCP", "transport=tcp"),
            (Kind::Tls, "SIP/2.0/TLS", "transport=tls"),
        ] {
            let mut id = identity();
            id.transport = kind;
            let mut buf = [0u8; REQUEST_BYTES_MAX];
            for op in [Op::Register, Op::Invite] {
                let n = write_request(&mut buf, &id, &spec(op), None).unwrap();
                let r = std::str::from_utf8(&buf[..n]).unwrap();
                assert!(
                    r.contains(&format!("Via: {via} 127.0.0.1:40000;branch=")),
                    "{r}"
                );
                assert!(r.contains(&format!(":40000;{param}>")), "{r}");
                assert!(!r.contains("UDP") && !r.contains("udp"), "{r}");
            }
        }
    }

    #[test]
    fn retransmission_is_byte_identical() {
        assert_eq!(build(Op::Refresh), build(Op::Refresh));
    }

    #[test]
    fn auth_hook_inserts_the_line_before_content_length() {
        let mut buf = [0u8; REQUEST_BYTES_MAX];
        let line = b"Authorization: Digest username=\"u\"\r\n";
        let n = write_request(&mut buf, &identity(), &spec(Op::Register), Some(line)).unwrap();
        let r = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            r.contains("Authorization: Digest username=\"u\"\r\nUser-Agent"),
            "{r}"
        );
    }

    #[test]
    fn small_buffer_is_reported_not_panicked() {
        let mut buf = [0u8; 100];
        assert_eq!(
            write_request(&mut buf, &identity(), &spec(Op::Register), None),
            None
        );
    }

    #[test]
    fn longest_request_fits_the_buffer() {
        let mut id = identity();
        id.domain = "d".repeat(DOMAIN_BYTES_MAX);
        id.user_prefix = "p".repeat(USER_PREFIX_BYTES_MAX);
        let s = Spec {
            user: u32::MAX,
            generation: u32::MAX,
            cseq: u32::MAX,
            worker: u32::MAX,
            slot: u32::MAX,
            seq: u32::MAX,
            port: u16::MAX,
            op: Op::Invite,
        };
        let mut buf = [0u8; REQUEST_BYTES_MAX];
        assert!(write_request(&mut buf, &id, &s, None).is_some());
        let s = Spec {
            op: Op::Register,
            ..s
        };
        assert!(write_request(&mut buf, &id, &s, None).is_some());
    }

    #[test]
    fn branch_round_trips_and_rejects_other_runs() {
        let key = parse_branch(b"z9hG4bK-deadbeef-1-99-3", 0xdead_beef).unwrap();
        assert_eq!(
            key,
            BranchKey {
                worker: 1,
                slot: 99,
                seq: 3
            }
        );
        assert_eq!(parse_branch(b"z9hG4bK-deadbeef-1-99-3", 0x1234_5678), None);
        assert_eq!(parse_branch(b"z9hG4bK776asdhds", 0xdead_beef), None);
        assert_eq!(parse_branch(b"z9hG4bK-deadbeef-1-99", 0xdead_beef), None);
        assert_eq!(
            parse_branch(b"z9hG4bK-deadbeef-1-99-3-4", 0xdead_beef),
            None
        );
        assert_eq!(
            parse_branch(b"z9hG4bK-deadbeef-1-99-99999999999", 0xdead_beef),
            None
        );
        assert_eq!(parse_branch(b"z9hG4bK-dead", 0xdead_beef), None);
    }

    #[test]
    fn call_id_user_is_recovered() {
        assert_eq!(call_id_user(b"deadbeef-r0-42@loadgen"), Some(42));
        assert_eq!(call_id_user(b"deadbeef-r0-42@elsewhere"), None);
        assert_eq!(call_id_user(b"a84b4c76e66710"), None);
    }

    #[test]
    fn ack_copies_the_response_to_header() {
        let mut buf = [0u8; REQUEST_BYTES_MAX];
        let n = write_ack(
            &mut buf,
            &identity(),
            &spec(Op::Invite),
            b"<sip:user42@example.com>;tag=xyz",
        )
        .unwrap();
        let a = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(a.starts_with("ACK sip:user42@example.com SIP/2.0\r\n"));
        assert!(
            a.contains("To: <sip:user42@example.com>;tag=xyz\r\n") && a.contains("CSeq: 7 ACK\r\n")
        );
        assert!(a.contains("branch=z9hG4bK-deadbeef-1-99-3;"));
    }
}
