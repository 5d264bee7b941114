//! Writing the answers: the 200 that lists every binding (§10.3 step 8), the 302 of
//! a redirect (§8.3), and the error responses with the headers each one owes
//! (`Min-Expires` on 423, `Unsupported` on 420, `Retry-After` on 503, `Allow` on
//! 405/501).

use bumpalo::Bump;
use bumpalo::collections::Vec as BumpVec;

use super::{Registrar, Source, outcome::Outcome, register::SUPPORTED_OPTIONS};
use crate::sip::{Contacts, Echo, Request, ResponseWriter};

/// Methods this server answers, for `Allow` (RFC 3261 §20.5).
pub(crate) const ALLOW: &[u8] =
    b"REGISTER, OPTIONS, INVITE, ACK, CANCEL, MESSAGE, SUBSCRIBE, NOTIFY, REFER, PUBLISH, INFO, UPDATE";

/// Seconds a client should wait after a 503 (RFC 3261 §20.33).
pub(crate) const RETRY_AFTER_S: u32 = 30;

impl Registrar {
    /// Write the response for `outcome` to `req` into `out`; a 200 or 302 lists
    /// `bindings`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond<'a>(
        &mut self,
        now_ms: u64,
        source: Source,
        req: &Request<'a>,
        outcome: Outcome,
        bindings: Bindings<'_>,
        arena: &'a Bump,
        out: &mut Vec<u8>,
    ) {
        let Some((status, reason)) = outcome.status() else {
            out.clear();
            return;
        };
        // A 404 for a domain names it (the reason is built on the stack, no allocation).
        let mut named = [0u8; REASON_BYTES_MAX];
        let reason = match outcome {
            Outcome::DomainNotServed => name_in_reason(&mut named, reason, req.request_uri.host),
            Outcome::AorNotServed => name_in_reason(&mut named, reason, req.to.uri.host),
            _ => reason,
        };
        let to_tag = self.to_tag(&req.echo);
        let mut w = ResponseWriter::start(out, status, reason, &req.echo, source.remote, &to_tag);
        match outcome {
            Outcome::Registered | Outcome::Fetched => {
                self.write_bindings(&mut w, bindings, now_ms, arena, false);
                // RFC 5626 §6: an Outbound registration's 200 says so. (Registered, so
                // the decide step found no fault: a reg-id with `Supported: outbound`
                // is Outbound processing.)
                if let Contacts::List(contacts) = req.contacts
                    && contacts.iter().any(|c| c.reg_id.is_some())
                    && super::outbound::supports_outbound(req)
                {
                    w.header("Require", b"outbound");
                }
                if req
                    .supported
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(b"path"))
                    && !req.path.is_empty()
                {
                    for p in req.path {
                        w.header("Path", p);
                    }
                }
                // RFC 3261 §10.3 step 8 / §20.17: formatted once per second.
                let now_s = now_ms / 1000;
                if self.date.0 != now_s {
                    crate::sip::write_date(now_s, &mut self.date.1);
                    self.date.0 = now_s;
                }
                w.header("Date", &self.date.1);
            }
            Outcome::Redirected => self.write_bindings(&mut w, bindings, now_ms, arena, true),
            Outcome::OptionsOk => {
                w.header("Allow", ALLOW);
                w.header("Accept", b"application/sdp");
                w.header("Supported", b"path, outbound");
            }
            Outcome::BadExtension => {
                for tag in req.require.iter().filter(|t| !is_supported(t)) {
                    w.header("Unsupported", tag);
                }
            }
            Outcome::IntervalTooBrief => w.header_u32("Min-Expires", self.config.min_expires_s),
            Outcome::TooManyContacts
            | Outcome::RegistrarFull
            | Outcome::StoreFailed
            | Outcome::CommitsBusy => w.header_u32("Retry-After", RETRY_AFTER_S),
            Outcome::MethodNotAllowed | Outcome::NotImplemented => w.header("Allow", ALLOW),
            Outcome::Unauthorized { stale } => {
                if let Some(auth) = self.auth.as_ref() {
                    let mut buf = [0u8; crate::auth::REALM_LEN_MAX];
                    let realm = super::register::lower_realm(req.request_uri.host, &mut buf);
                    auth.write_challenges(now_ms, realm, stale, &mut self.challenges);
                    for value in self.challenges.iter() {
                        w.header("WWW-Authenticate", value);
                    }
                }
            }
            _ => {}
        }
        w.end_message(self.config.server_name.as_bytes());
    }

    /// Write a 4xx/5xx for a request the parser refused, from what it could salvage.
    pub(super) fn respond_rejected(
        &mut self,
        source: Source,
        echo: &Echo<'_>,
        status: u16,
        reason: &str,
        out: &mut Vec<u8>,
    ) {
        let to_tag = self.to_tag(echo);
        let w = ResponseWriter::start(out, status, reason, echo, source.remote, &to_tag);
        w.end_message(self.config.server_name.as_bytes());
    }

    /// One Contact per live binding of `self.aor_key`, highest q first, each with the
    /// seconds it has left (§10.3 step 8: "MUST contain Contact header field values
    /// enumerating all current bindings"). In a `redirect` (302) each Contact URI
    /// carries what reaches the binding (`nat`: its source as `;alias=`, its Path as a
    /// `Route` header).
    fn write_bindings<'a>(
        &mut self,
        w: &mut ResponseWriter<'_>,
        bindings: Bindings<'_>,
        now_ms: u64,
        arena: &'a Bump,
        redirect: bool,
    ) {
        let mut reach = redirect.then_some(Reach {
            alias: self.config.nat.alias,
            uri: &mut self.redirect_uri,
        });
        if let Bindings::Listed(listed) = bindings {
            return write_listed(w, listed, arena, reach.as_mut());
        }
        let Some(aor) = self.location.get_hashed(self.aor_key.key()) else {
            return;
        };
        if aor.len() == 1 {
            // The common case (one device per AOR): nothing to order.
            if let Some(b) = aor.get(0).filter(|b| b.expires_ms() > now_ms) {
                write_binding(w, &b, now_ms, reach.as_mut());
            }
            return;
        }
        let mut order: BumpVec<'a, (u16, usize)> = BumpVec::with_capacity_in(aor.len(), arena);
        for (i, b) in aor.iter().enumerate() {
            if b.expires_ms() > now_ms {
                // A binding without q ranks as q=1.0 (RFC 3261 §16.6 step 1 ranks by q).
                order.push((b.q().unwrap_or(1000), i));
            }
        }
        order.sort_unstable_by_key(|&(q, i)| (std::cmp::Reverse(q), i));
        for &(_, i) in order.iter() {
            if let Some(b) = aor.get(i) {
                write_binding(w, &b, now_ms, reach.as_mut());
            }
        }
    }

    /// A To-tag that is the same for every retransmission of one request, without
    /// state: a keyed hash of Call-ID, From (with its tag) and branch (RFC 3261 §8.2.6.2 wants it
    /// random enough to be globally unique; the key is the per-process seed).
    fn to_tag(&self, echo: &Echo<'_>) -> [u8; 16] {
        let mut h = super::rng::TagHash::with_seed(self.config.seed);
        h.write(echo.call_id.unwrap_or(b""));
        h.write(echo.from.unwrap_or(b""));
        // The branch identifies the transaction (RFC 3261 §8.1.1.7); an RFC 2543 peer
        // has none, so its whole top Via stands in (§17.2.3).
        let via = &echo.top_via;
        h.write(
            via.branch
                .filter(|b| crate::txn::is_rfc3261_branch(b))
                .unwrap_or(via.raw),
        );
        let v = h.finish();
        // Lower-case hex, most significant nibble first.
        let mut tag = [0u8; 16];
        crate::auth::hex_into(&v.to_be_bytes(), &mut tag);
        tag
    }
}

/// Where the bindings a 200 or 302 lists come from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Bindings<'r> {
    /// The shard's table, for the AOR in `Registrar::aor_key`.
    Table,
    /// A shared backend's answer (see `shared`).
    Listed(&'r [super::shared::ListedBinding<'r>]),
}

/// The bindings a shared backend returned, highest q first (a binding without q
/// ranks as q=1.0, RFC 3261 §16.6 step 1), in the backend's order among equals.
fn write_listed(
    w: &mut ResponseWriter<'_>,
    listed: &[super::shared::ListedBinding<'_>],
    arena: &Bump,
    mut reach: Option<&mut Reach<'_>>,
) {
    let mut order: BumpVec<'_, (u16, usize)> = BumpVec::with_capacity_in(listed.len(), arena);
    order.extend(
        listed
            .iter()
            .enumerate()
            .map(|(i, b)| (b.q.unwrap_or(1000), i)),
    );
    order.sort_unstable_by_key(|&(q, i)| (std::cmp::Reverse(q), i));
    for &(_, i) in order.iter() {
        if let Some(b) = listed.get(i) {
            let uri = redirect_uri(
                reach.as_deref_mut(),
                b.contact,
                b.source,
                b.transport,
                b.path,
            );
            w.binding_contact(uri, b.expires_s.max(1), b.q, b.instance, b.reg_id);
        }
    }
}

/// What a redirect adds to each Contact URI, and the buffer it is written in.
struct Reach<'b> {
    alias: super::nat::AliasMode,
    uri: &'b mut Vec<u8>,
}

/// One binding as a Contact with the seconds it has left at `now_ms`; with `reach`,
/// its URI carries the binding's source and Path (`nat`).
fn write_binding(
    w: &mut ResponseWriter<'_>,
    b: &crate::location::BindingRef<'_>,
    now_ms: u64,
    reach: Option<&mut Reach<'_>>,
) {
    // Floor: the table rounds expiry up to the next second, so this gives back exactly
    // the granted value on the first answer.
    let left_s = (b.expires_ms().saturating_sub(now_ms) / 1000).max(1);
    let left_s = u32::try_from(left_s).unwrap_or(u32::MAX);
    let uri = redirect_uri(reach, b.contact(), b.source(), b.transport(), b.path());
    w.binding_contact(uri, left_s, b.q(), b.instance(), b.reg_id());
}

/// The Contact URI a binding is listed with: as registered, or in a redirect (`reach`)
/// with its source as `;alias=` and its Path as a `Route` header where they apply
/// (`nat`).
fn redirect_uri<'u>(
    reach: Option<&'u mut Reach<'_>>,
    contact: &'u [u8],
    source: std::net::SocketAddr,
    transport: crate::location::Transport,
    path: &[u8],
) -> &'u [u8] {
    let Some(reach) = reach else {
        return contact;
    };
    let alias = super::nat::wants_alias(reach.alias, contact, source, transport)
        .then_some((source, transport));
    if alias.is_none() && path.is_empty() {
        return contact;
    }
    super::nat::write_redirect_uri(reach.uri, contact, alias, path);
    reach.uri.as_slice()
}

/// Longest reason phrase we build, in bytes.
const REASON_BYTES_MAX: usize = 128;

/// `"<reason>: <host>"` in `buf`, with anything but visible ASCII in the host shown as
/// `?` (the host came from the network and goes into a status line).
fn name_in_reason<'b>(
    buf: &'b mut [u8; REASON_BYTES_MAX],
    reason: &'static str,
    host: &[u8],
) -> &'b str {
    let mut n = 0;
    for &b in reason
        .as_bytes()
        .iter()
        .chain(b": ")
        .chain(host.iter())
        .take(REASON_BYTES_MAX)
    {
        buf[n] = if b.is_ascii_graphic() || b == b' ' {
            b
        } else {
            b'?'
        };
        n += 1;
    }
    // Only ASCII was written, so this cannot fail; fall back to the plain reason anyway.
    std::str::from_utf8(&buf[..n]).unwrap_or(reason)
}

fn is_supported(tag: &[u8]) -> bool {
    SUPPORTED_OPTIONS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(tag))
}

/// Whether `require` names an option we lack (§8.2.2.3).
pub(crate) fn has_unsupported(require: &[&[u8]]) -> bool {
    require.iter().any(|t| !is_supported(t))
}
