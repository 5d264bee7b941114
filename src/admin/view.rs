//! Where the management API reads and changes bindings: the seam between the HTTP
//! routes (`admin`) and the location backend.
//!
//! Why a trait: with `--location memory` the bindings live in the cores' tables and
//! only their owning core may touch them (`memory_view`: commands over the control
//! channels); with `--location redis` the cores' tables are empty and the bindings
//! live in the cluster (`redis_view`: the admin thread's own blocking client). The
//! routes validate the request, call one [`LocationView`] method and shape its answer
//! the same way for both, so the JSON a client sees does not depend on the backend.

use super::Answer;
use crate::runtime::control::AorCopy;

/// One page of a dump.
#[derive(Debug)]
pub(super) struct Page {
    pub(super) aors: Vec<AorCopy>,
    /// Where the next page starts (opaque to clients); `None`: this was the last.
    pub(super) next: Option<String>,
}

/// A binding to add (or refresh) through the API, validated by the route.
#[derive(Debug)]
pub(super) struct NewBinding {
    pub(super) contact: Vec<u8>,
    pub(super) expires_s: u32,
    /// q in thousandths.
    pub(super) q: Option<u16>,
}

/// The location operations of the management API. Errors are the API answer to give
/// (status and message).
pub(super) trait LocationView {
    /// The live bindings of `aor_key`; `None` when it has none.
    fn show(&mut self, aor_key: Vec<u8>) -> Result<Option<AorCopy>, Answer>;

    /// Up to `limit` AORs from `cursor` (`""`: the start).
    fn dump(&mut self, cursor: &str, limit: usize) -> Result<Page, Answer>;

    /// Remove the bindings of `aor_key` (all, or those of `contact`); how many.
    fn remove(&mut self, aor_key: Vec<u8>, contact: Option<Vec<u8>>) -> Result<usize, Answer>;

    /// Add or refresh one binding.
    fn add(&mut self, aor_key: Vec<u8>, binding: NewBinding) -> Result<(), Answer>;

    /// Remove every binding; how many.
    fn flush(&mut self) -> Result<usize, Answer>;
}
