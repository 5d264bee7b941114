//! The requests-by-method-and-status matrix: a fixed `[[u64; STATUSES]; METHODS]`
//! indexed by two small `match`es, so counting is two array offsets and an add, with
//! no allocation and no label strings on the hot path (the admin thread turns the
//! indices into labels with [`METHOD_NAMES`] and [`STATUS_NAMES`] at scrape time).
//!
//! Why fixed rows and columns: a label taken from the datagram (an arbitrary method
//! token) would let a sender grow the metric set without bound; the methods an
//! operator asks about get a row, every other token shares `other`. The columns are
//! exactly the codes [`Outcome::status`](super::Outcome::status) can produce, plus
//! `none` for a request answered with nothing (an absorbed ACK).

use crate::sip::Method;

/// Rows of the matrix: the methods named in [`METHOD_NAMES`].
pub const METHODS: usize = 10;

/// The `method` label of each row.
pub const METHOD_NAMES: [&str; METHODS] = [
    "REGISTER",
    "INVITE",
    "OPTIONS",
    "ACK",
    "CANCEL",
    "BYE",
    "MESSAGE",
    "SUBSCRIBE",
    "NOTIFY",
    "other",
];

/// The row of a method; every method without its own row is `other`.
pub(super) fn method_index(method: &Method<'_>) -> usize {
    match method {
        Method::Register => 0,
        Method::Invite => 1,
        Method::Options => 2,
        Method::Ack => 3,
        Method::Cancel => 4,
        Method::Bye => 5,
        Method::Message => 6,
        Method::Subscribe => 7,
        Method::Notify => 8,
        _ => METHOD_OTHER,
    }
}

/// The row of a request whose method is unknown (it failed to parse).
pub(super) const METHOD_OTHER: usize = METHODS - 1;

/// Columns of the matrix: the statuses named in [`STATUS_NAMES`].
pub const STATUSES: usize = 18;

/// The `status` label of each column.
pub const STATUS_NAMES: [&str; STATUSES] = [
    "200", "302", "400", "401", "403", "404", "405", "413", "420", "423", "439", "480", "481",
    "500", "501", "503", "505", "none",
];

/// The column of a status code (`None`: nothing sent). A code outside the table,
/// which `Outcome::status` never produces, shares the `500` column.
pub(super) fn status_index(status: Option<u16>) -> usize {
    match status {
        Some(200) => 0,
        Some(302) => 1,
        Some(400) => 2,
        Some(401) => 3,
        Some(403) => 4,
        Some(404) => 5,
        Some(405) => 6,
        Some(413) => 7,
        Some(420) => 8,
        Some(423) => 9,
        Some(439) => 10,
        Some(480) => 11,
        Some(481) => 12,
        Some(501) => 14,
        Some(503) => 15,
        Some(505) => 16,
        None => 17,
        Some(_) => 13,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::Outcome;
    use crate::sip::ParseError;

    #[test]
    fn every_outcome_status_has_its_own_column() {
        let outcomes = [
            Outcome::Registered,
            Outcome::Redirected,
            Outcome::AckAbsorbed,
            Outcome::Malformed(ParseError::TooLarge),
            Outcome::Malformed(ParseError::UnsupportedVersion),
            Outcome::DomainNotServed,
            Outcome::BadExtension,
            Outcome::IntervalTooBrief,
            Outcome::TemporarilyUnavailable,
            Outcome::NoTransaction,
            Outcome::MethodNotAllowed,
            Outcome::NotImplemented,
            Outcome::ServerError,
            Outcome::Unauthorized { stale: false },
            Outcome::Forbidden,
            Outcome::RegistrarFull,
            Outcome::ToNoUser,
            Outcome::FirstHopLacksOutbound,
        ];
        for o in outcomes {
            let status = o.status().map(|(s, _)| s);
            let name = STATUS_NAMES[status_index(status)];
            match status {
                Some(s) => assert_eq!(name, s.to_string(), "{o:?}"),
                None => assert_eq!(name, "none"),
            }
        }
    }

    #[test]
    fn methods_map_to_their_row_and_unknown_tokens_to_other() {
        assert_eq!(METHOD_NAMES[method_index(&Method::Register)], "REGISTER");
        assert_eq!(METHOD_NAMES[method_index(&Method::Notify)], "NOTIFY");
        assert_eq!(METHOD_NAMES[method_index(&Method::Publish)], "other");
        assert_eq!(METHOD_NAMES[method_index(&Method::Other(b"FOO"))], "other");
    }
}
