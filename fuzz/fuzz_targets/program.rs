//! The operation programs the stateful registrar targets decode from their input: a few
//! users, contacts, Call-IDs and CSeqs chosen by the input, so that the fuzzer reaches
//! refreshes, CSeq conflicts, `*`, fetches and max-contacts quickly instead of spending
//! its time finding valid SIP; and the table state the targets check them against.

use sipreg::registrar::Registrar;

/// One step of a program.
pub enum Op {
    /// Advance the clock by this many ms and run the timers.
    Tick(u64),
    /// Hand this datagram to the registrar.
    Datagram(Vec<u8>),
}

/// Decodes the next operation, or `None` at the end of the input. `n` numbers the
/// operation (it makes branches, hence transactions, unique).
pub fn next_op(data: &mut &[u8], n: u64) -> Option<Op> {
    let (&op, rest) = data.split_first()?;
    *data = rest;
    Some(match op % 8 {
        0 => Op::Tick(u64::from(op) * 997),
        1 => {
            let len = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
            let raw = data.get(1..len).unwrap_or(&[]).to_vec();
            *data = data.get(len..).unwrap_or(&[]);
            Op::Datagram(raw)
        }
        2 => Op::Datagram(
            format!(
                "INVITE sip:u{}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKi{n}\r\n\
                 From: <sip:x@example.com>;tag=1\r\nTo: <sip:u{}@example.com>\r\nCall-ID: i{n}\r\n\
                 CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
                op % 4,
                op % 4
            )
            .into_bytes(),
        ),
        // A retransmission of the previous operation's REGISTER when the branch repeats.
        3 => Op::Datagram(register(data, n.saturating_sub(u64::from(op >> 7)))),
        _ => Op::Datagram(register(data, n)),
    })
}

/// A REGISTER whose user, Call-ID, CSeq and contacts come from the input.
fn register(data: &mut &[u8], n: u64) -> Vec<u8> {
    let mut take = || {
        let (b, rest) = data.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        *data = rest;
        b
    };
    let user = take() % 4;
    let call = take() % 3;
    let cseq = u32::from(take() % 8);
    let shape = take();
    let mut m = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:u{user}@example.com>;tag=f\r\nTo: <sip:u{user}@example.com>\r\n\
         Call-ID: c{call}\r\nCSeq: {cseq} REGISTER\r\n"
    );
    match shape % 6 {
        0 => m.push_str("Contact: *\r\nExpires: 0\r\n"),
        1 => {}
        _ => {
            for i in 0..(shape % 4) {
                let c = take() % 6;
                let e = [0, 30, 60, 120, 3600, 100_000][usize::from(take() % 6)];
                let q = take() % 12;
                m.push_str(&format!("Contact: <sip:d{c}@10.0.0.{i}>;expires={e}"));
                if q <= 10 {
                    m.push_str(&format!(";q=0.{q}"));
                }
                m.push_str("\r\n");
            }
        }
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

/// One binding as the targets compare it: (aor, contact, expires_ms, cseq, Call-ID,
/// branch hash).
pub type Row = (Vec<u8>, Vec<u8>, u64, u32, Vec<u8>, u32);

/// Every binding, sorted: the table's observable state.
pub fn snapshot(reg: &Registrar) -> Vec<Row> {
    let mut v: Vec<_> = reg
        .location()
        .iter_aors()
        .flat_map(|aor| {
            aor.iter()
                .map(|b| {
                    (
                        b.aor_key().to_vec(),
                        b.contact().to_vec(),
                        b.expires_ms(),
                        b.cseq(),
                        b.call_id().to_vec(),
                        b.branch().to_u32(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}

/// What RFC 3261 §10.3 step 7 says of a REGISTER built by [`register`] with a
/// Contact list, given the table before it.
#[derive(Debug, PartialEq, Eq)]
#[allow(
    dead_code,
    reason = "the registrar target checks it, registrar_batch does not"
)]
pub enum CseqVerdict {
    /// No matched binding of the same Call-ID has a CSeq as high: the rule lets it by.
    Higher,
    /// An equal CSeq against a binding this very request (same branch) last wrote:
    /// a retransmission, answered 200 with nothing changed.
    Retransmission,
    /// An equal CSeq with another branch, or a lower one: 400 Invalid CSeq.
    Invalid,
}

/// The step 7 verdict for `msg` against `before`, or `None` when `msg` is not a
/// Contact-list REGISTER of [`register`]'s making (raw bytes, `*`, fetches).
#[allow(
    dead_code,
    reason = "the registrar target checks it, registrar_batch does not"
)]
pub fn cseq_verdict(msg: &[u8], before: &[Row], now_ms: u64) -> Option<CseqVerdict> {
    let text = std::str::from_utf8(msg).ok()?;
    let header = |name: &str| {
        text.split("\r\n")
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let rest = text.strip_prefix(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=",
    )?;
    let branch = &rest[..rest.find("\r\n")?];
    let user = header("To: <sip:")?.split('@').next()?;
    let call_id = header("Call-ID:")?;
    let cseq: u32 = header("CSeq:")?.split(' ').next()?.parse().ok()?;
    let contacts: Vec<&str> = text
        .split("\r\n")
        .filter_map(|l| l.strip_prefix("Contact: <"))
        .filter_map(|l| l.split('>').next())
        .collect();
    if contacts.is_empty() || contacts.contains(&"*") {
        return None;
    }
    let aor = format!("{user}@");
    let hash = sipreg::location::BranchHash::of(Some(branch.as_bytes())).to_u32();
    // In the request's Contact order, as the registrar checks them.
    for c in contacts {
        let found = before.iter().find(|(k, contact, expires_ms, ..)| {
            k.starts_with(aor.as_bytes()) && contact == c.as_bytes() && *expires_ms > now_ms
        });
        let Some((_, _, _, stored_cseq, stored_call_id, stored_branch)) = found else {
            continue;
        };
        if stored_call_id != call_id.as_bytes() || cseq > *stored_cseq {
            continue;
        }
        return Some(if cseq == *stored_cseq && hash == *stored_branch {
            CseqVerdict::Retransmission
        } else {
            CseqVerdict::Invalid
        });
    }
    Some(CseqVerdict::Higher)
}
