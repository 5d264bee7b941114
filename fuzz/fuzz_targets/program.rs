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

/// Every binding as (aor, contact, expires_ms, cseq), sorted: the table's observable state.
pub fn snapshot(reg: &Registrar) -> Vec<(Vec<u8>, Vec<u8>, u64, u32)> {
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
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v
}
