//! txn (being built).
#![forbid(unsafe_code)]
