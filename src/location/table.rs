//! The location table of one shard: AOR key → ordered bindings, with atomic commits and
//! wheel-driven expiry.
//!
//! Storage (≈ 275 B per binding at 1M one-binding AORs, see `tests::memory_per_binding`):
//! - `slots`: one 40-byte [`Slot`] per binding (packed blob pointer, expiry second, the
//!   branch hash, the AOR's next-binding link and the wheel links). Free slots form a list through
//!   `aor_next`, so slot memory is reused and never shrinks.
//! - `aors`: a `hashbrown::HashTable<u32>` holding only the index of each AOR's first
//!   binding (4 bytes + 1 control byte per bucket). The AOR key lives in the binding blob,
//!   so a single-binding AOR costs no allocation of its own; an AOR with several bindings
//!   is a singly linked list through `Slot::aor_next`, in insertion order.
//! - the wheel ([`super::wheel`]).

use hashbrown::HashTable;

use super::aor_key::HashedAorKey;
use super::binding::{self, BindingRef, EncodeError, NewBinding, blob_aor_key};
use super::branch::BranchHash;
use super::wheel::Wheel;
use crate::hash::seeded_hash;

/// Levels [`LocationTable::touch`] can read: the index bucket, the slot, the blob.
pub const TOUCH_DEPTH: u8 = 3;

/// "No slot" marker in slot links.
pub(crate) const NIL: u32 = u32::MAX;

/// Largest AOR key (`user@host` as [`crate::sip::write_aor_key`] writes it), in bytes.
///
/// The one value for every layer: the registrar refuses a longer key with 400
/// "Address Of Record Too Long" before it reaches the table, the management API
/// refuses it with 400, and the table refuses it too, so no path (REGISTER, the API,
/// a store load) can put in a key another path would refuse. 256 is OpenSIPS's
/// `max_aor_len`, what operators of our peers expect; the table used to allow 1024,
/// which no registrar path could ever reach (it refused past 256), so no stored key
/// is longer and every existing store still loads.
pub const AOR_KEY_BYTES_MAX: usize = 256;
// The key is one field of the packed binding, and a `u16` length in a store record.
const _: () = assert!(AOR_KEY_BYTES_MAX <= binding::BINDING_FIELD_BYTES_MAX);
const _: () = assert!(AOR_KEY_BYTES_MAX <= u16::MAX as usize);
/// Hard ceiling for [`LocationLimits::bindings_per_aor_max`].
pub const BINDINGS_PER_AOR_MAX: usize = 1024;
/// Hard ceiling for [`LocationLimits::bindings_max`] (slot indices are `u32`, `NIL` reserved).
pub const BINDINGS_PER_SHARD_MAX: usize = 1 << 31;
/// A refresh keeps its old blob when the new one is at most this many bytes smaller.
const REUSE_SLACK_BYTES_MAX: usize = 64;

/// One binding's fixed part. Kept small: it is paid once per binding.
pub(crate) struct Slot {
    /// The packed binding ([`super::binding`]); `None` for a free slot.
    pub(crate) blob: Option<Box<[u8]>>,
    /// Expiry, seconds since the Unix epoch (rounded up from the ms the caller gave).
    pub(crate) expiry_s: u32,
    /// The branch hash of the REGISTER that last wrote it ([`BranchHash`]). Here and not
    /// in the blob: it fills what was padding (the slot stays 40 bytes), where four more
    /// blob bytes move a typical binding from a 224- to a 240-byte malloc chunk.
    pub(crate) branch: u32,
    /// Next binding of the same AOR (or next free slot), or [`NIL`].
    pub(crate) aor_next: u32,
    pub(crate) wheel_prev: u32,
    pub(crate) wheel_next: u32,
    pub(crate) wheel_bucket: u16,
}
const _: () = assert!(size_of::<Slot>() <= 40);

/// Bounds of one shard's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocationLimits {
    /// Bindings held at most; a commit that would pass it fails with
    /// [`CommitError::TableFull`] (the registrar answers 503). Clamped to
    /// [`BINDINGS_PER_SHARD_MAX`].
    pub bindings_max: usize,
    /// Bindings (and AORs) to allocate room for up front.
    pub bindings_prealloc: usize,
    /// Bindings per AOR at most, whatever the registrar's `max_contacts` policy; a commit
    /// past it fails with [`CommitError::AorFull`]. Clamped to [`BINDINGS_PER_AOR_MAX`].
    pub bindings_per_aor_max: usize,
    /// Largest packed binding (AOR key + all variable fields + 40 bytes), in bytes.
    pub binding_bytes_max: usize,
    /// AORs remembered after they lost their last binding (480 instead of 404).
    pub emptied_aors_max: usize,
}

impl Default for LocationLimits {
    fn default() -> Self {
        Self {
            bindings_max: 1_000_000,
            bindings_prealloc: 0,
            bindings_per_aor_max: 256,
            binding_bytes_max: 8192,
            emptied_aors_max: super::emptied::EMPTIED_AORS_MAX_DEFAULT,
        }
    }
}

/// One change of an atomic commit. Indices refer to the AOR's bindings before the commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    /// Add a binding at the end of the AOR's order.
    Insert(NewBinding<'a>),
    /// Replace every field of binding `index` (a refresh); it keeps its place in the
    /// order and its registration time.
    Update {
        /// Position in the AOR before the commit.
        index: usize,
        /// The new contents.
        binding: NewBinding<'a>,
    },
    /// Remove binding `index`.
    Remove {
        /// Position in the AOR before the commit.
        index: usize,
    },
}

/// What a successful commit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CommitSummary {
    /// Bindings added.
    pub inserted: usize,
    /// Bindings refreshed.
    pub updated: usize,
    /// Bindings removed.
    pub removed: usize,
    /// Bindings the AOR holds after the commit (0: the AOR is gone).
    pub aor_bindings: usize,
}

/// Why a commit was refused. Nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// The shard holds `bindings_max` bindings (answer 503).
    TableFull,
    /// The AOR would pass `bindings_per_aor_max` (answer 503).
    AorFull,
    /// An `Update`/`Remove` index past the AOR's bindings (a registrar bug: 500).
    IndexOutOfRange,
    /// Two changes name the same index (a registrar bug: 500).
    IndexRepeated,
    /// The AOR key is empty or longer than [`AOR_KEY_BYTES_MAX`].
    AorKeyInvalid,
    /// A binding larger than `binding_bytes_max`, or a field past 65535 bytes.
    BindingTooLarge,
    /// A q above 1000.
    QOutOfRange,
}

impl CommitError {
    /// A short description.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TableFull => "location table full",
            Self::AorFull => "too many bindings for this AOR",
            Self::IndexOutOfRange => "binding index out of range",
            Self::IndexRepeated => "binding index used twice in one commit",
            Self::AorKeyInvalid => "AOR key empty or too long",
            Self::BindingTooLarge => "binding too large",
            Self::QOutOfRange => "q above 1.0",
        }
    }
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for CommitError {}

/// The location table of one shard (single-threaded, no locks). See the module docs.
pub struct LocationTable {
    limits: LocationLimits,
    aors: HashTable<u32>,
    slots: Vec<Slot>,
    free_head: u32,
    bindings: usize,
    wheel: Wheel,
    expired_total: u64,
    /// AORs whose last binding went recently (for 480 vs 404).
    emptied: super::emptied::Emptied,
    /// Reused by `apply`: the AOR's slots before the commit, a mark per index, the order
    /// after it. Capacity stays, so a steady-state commit allocates nothing.
    scratch_old: Vec<u32>,
    scratch_mark: Vec<u8>,
    scratch_new: Vec<u32>,
}

impl std::fmt::Debug for LocationTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocationTable")
            .field("limits", &self.limits)
            .field("aors", &self.aors.len())
            .field("bindings", &self.bindings)
            .field("expired_total", &self.expired_total)
            .finish_non_exhaustive()
    }
}

const MARK_NONE: u8 = 0;
const MARK_UPDATE: u8 = 1;
const MARK_REMOVE: u8 = 2;

fn secs_floor(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

fn secs_ceil(ms: u64) -> u32 {
    u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

fn slot_blob(slots: &[Slot], idx: u32) -> &[u8] {
    slots
        .get(idx as usize)
        .and_then(|s| s.blob.as_deref())
        .unwrap_or(&[])
}

/// Refreshed bindings one [`LocationTable::expire`] call moves on to the wheel bucket of
/// their expiry at most (each move touches about three random slots: ~16k moves are a
/// few ms). A refresh storm leaves many bindings waiting in one bucket; the rest are
/// moved by the next calls.
pub const EXPIRE_MOVES_MAX: usize = 16_384;

fn slot_key(slots: &[Slot], idx: u32) -> &[u8] {
    blob_aor_key(slot_blob(slots, idx))
}

impl LocationTable {
    /// An empty table with room for `limits.bindings_prealloc` bindings.
    pub fn new(limits: LocationLimits) -> Self {
        let limits = LocationLimits {
            bindings_max: limits.bindings_max.min(BINDINGS_PER_SHARD_MAX),
            bindings_prealloc: limits.bindings_prealloc.min(limits.bindings_max),
            bindings_per_aor_max: limits.bindings_per_aor_max.min(BINDINGS_PER_AOR_MAX),
            binding_bytes_max: limits.binding_bytes_max,
            emptied_aors_max: limits.emptied_aors_max,
        };
        Self {
            limits,
            aors: HashTable::with_capacity(limits.bindings_prealloc),
            slots: Vec::with_capacity(limits.bindings_prealloc),
            free_head: NIL,
            bindings: 0,
            wheel: Wheel::new(),
            expired_total: 0,
            emptied: super::emptied::Emptied::new(limits.emptied_aors_max),
            scratch_old: Vec::with_capacity(limits.bindings_per_aor_max),
            scratch_mark: Vec::with_capacity(limits.bindings_per_aor_max),
            scratch_new: Vec::with_capacity(limits.bindings_per_aor_max),
        }
    }

    /// The limits in force (after clamping).
    pub fn limits(&self) -> &LocationLimits {
        &self.limits
    }

    /// Bindings held (including expired ones `expire` has not removed yet).
    pub fn bindings_len(&self) -> usize {
        self.bindings
    }

    /// AORs held.
    pub fn aors_len(&self) -> usize {
        self.aors.len()
    }

    /// Bindings removed by `expire` since the table was created.
    pub fn expired_total(&self) -> u64 {
        self.expired_total
    }

    /// The AOR's bindings, in their stable order (the `index` of [`Change`]). Expired
    /// bindings that `expire` has not removed yet are included: check
    /// [`BindingRef::is_expired`].
    pub fn get(&self, aor_key: &[u8]) -> Option<AorRef<'_>> {
        self.get_hashed(HashedAorKey::new(aor_key))
    }

    /// [`get`](Self::get) of a key already hashed (the registrar hashes a request's AOR
    /// key once for all its lookups and its commit).
    #[inline]
    pub fn get_hashed(&self, key: HashedAorKey<'_>) -> Option<AorRef<'_>> {
        let aor_key = key.bytes();
        let head = *self
            .aors
            .find(key.hash(), |&h| slot_key(&self.slots, h) == aor_key)?;
        Some(AorRef {
            slots: &self.slots,
            head,
        })
    }

    /// Overwrite the caller-defined flags of binding `index` of the AOR (a state that
    /// is not part of any commit, such as a flow going down). False when there is no
    /// such binding.
    pub fn set_flags(&mut self, key: HashedAorKey<'_>, index: usize, flags: u32) -> bool {
        let aor_key = key.bytes();
        let Some(&head) = self
            .aors
            .find(key.hash(), |&h| slot_key(&self.slots, h) == aor_key)
        else {
            return false;
        };
        let mut cur = head;
        for _ in 0..index {
            match self.slots.get(cur as usize) {
                Some(slot) if slot.aor_next != NIL => cur = slot.aor_next,
                _ => return false,
            }
        }
        match self
            .slots
            .get_mut(cur as usize)
            .and_then(|s| s.blob.as_deref_mut())
        {
            Some(blob) => {
                binding::blob_set_flags(blob, flags);
                true
            }
            None => false,
        }
    }

    /// Slots of the table, used or free: the range a walk by slot index covers. Slot
    /// indices never move while their binding lives (a refresh keeps its slot).
    pub fn slots_len(&self) -> usize {
        self.slots.len()
    }

    /// The binding in slot `slot`, if the slot is used (expired bindings included).
    pub fn binding_at_slot(&self, slot: usize) -> Option<BindingRef<'_>> {
        let s = self.slots.get(slot)?;
        Some(BindingRef {
            blob: s.blob.as_deref()?,
            expiry_s: s.expiry_s,
            branch: BranchHash::from_u32(s.branch),
        })
    }

    /// Overwrite the caller-defined flags of the binding in slot `slot` (as
    /// [`set_flags`](Self::set_flags), by slot). False when the slot is free.
    pub fn set_flags_at_slot(&mut self, slot: usize, flags: u32) -> bool {
        match self.slots.get_mut(slot).and_then(|s| s.blob.as_deref_mut()) {
            Some(blob) => {
                binding::blob_set_flags(blob, flags);
                true
            }
            None => false,
        }
    }

    /// The position in its AOR's order (the `index` of [`Change`]) of the binding in
    /// slot `slot`; `None` when the slot is free.
    pub fn aor_index_of_slot(&self, slot: usize) -> Option<usize> {
        let key = blob_aor_key(self.slots.get(slot)?.blob.as_deref()?);
        let head = *self
            .aors
            .find(seeded_hash(key), |&h| slot_key(&self.slots, h) == key)?;
        let mut cur = head;
        for index in 0..BINDINGS_PER_AOR_MAX {
            if cur as usize == slot {
                return Some(index);
            }
            cur = self.slots.get(cur as usize)?.aor_next;
            if cur == NIL {
                return None;
            }
        }
        None
    }

    /// Reads what a lookup of the key with `hash` will read, down to `depth` levels
    /// ([`TOUCH_DEPTH`] levels: the index, the slot, the binding blob), so that a later
    /// [`get`](Self::get) finds it in cache. Called for a whole batch one level at a time
    /// ([`crate::registrar::Registrar::warm`]), the misses of the batch overlap. The
    /// value means nothing; the caller only keeps the loads from being optimised away.
    pub fn touch(&self, hash: u64, depth: u8) -> u64 {
        let mut seen = 0u64;
        let _ = self.aors.find(hash, |&idx| {
            seen ^= u64::from(idx);
            if depth >= 1 {
                if let Some(slot) = self.slots.get(idx as usize) {
                    seen ^= u64::from(slot.expiry_s);
                    if depth >= 2 {
                        // Every cache line of the blob: the key compare, the Call-ID and
                        // contact checks and the refresh's rewrite read all of it.
                        let blob = slot.blob.as_deref().unwrap_or_default();
                        for &b in blob.iter().step_by(64) {
                            seen ^= u64::from(b);
                        }
                        // Its last line, which the stride misses when the blob does not
                        // start on a line boundary.
                        seen ^= u64::from(blob.last().copied().unwrap_or(0));
                    }
                }
            }
            false
        });
        seen
    }

    /// Whether `aor_key` lost its last binding recently (bounded memory, see
    /// [`EMPTIED_AORS_MAX_DEFAULT`](super::EMPTIED_AORS_MAX_DEFAULT)); false while it has
    /// bindings. Takes the hash the key carries: the emptied set is kept by it.
    pub fn recently_emptied(&self, aor_key: HashedAorKey<'_>) -> bool {
        self.emptied.contains(aor_key.hash())
    }

    /// Every AOR, in no particular order (for dumps). Mutating the table ends the walk.
    pub fn iter_aors(&self) -> impl Iterator<Item = AorRef<'_>> + '_ {
        self.aors.iter().map(|&head| AorRef {
            slots: &self.slots,
            head,
        })
    }

    /// Applies `changes` to the AOR atomically (RFC 3261 §10.3 step 7): everything is
    /// validated first, and on error nothing has changed. Removes are applied first, then
    /// updates, then inserts (appended in the order given). An AOR left with no binding
    /// disappears. `now_ms` is the registration time of inserted bindings.
    pub fn apply(
        &mut self,
        aor_key: &[u8],
        now_ms: u64,
        changes: &[Change<'_>],
    ) -> Result<CommitSummary, CommitError> {
        self.apply_hashed(HashedAorKey::new(aor_key), now_ms, changes)
    }

    /// [`apply`](Self::apply) to a key already hashed.
    pub fn apply_hashed(
        &mut self,
        key: HashedAorKey<'_>,
        now_ms: u64,
        changes: &[Change<'_>],
    ) -> Result<CommitSummary, CommitError> {
        let (aor_key, hash) = (key.bytes(), key.hash());
        if aor_key.is_empty() || aor_key.len() > AOR_KEY_BYTES_MAX {
            return Err(CommitError::AorKeyInvalid);
        }
        let head = self
            .aors
            .find(hash, |&h| slot_key(&self.slots, h) == aor_key)
            .copied();

        // Validate: nothing below this block may fail.
        self.scratch_old.clear();
        let mut cur = head.unwrap_or(NIL);
        while cur != NIL {
            self.scratch_old.push(cur);
            cur = self.slots[cur as usize].aor_next;
        }
        let old_len = self.scratch_old.len();
        self.scratch_mark.clear();
        self.scratch_mark.resize(old_len, MARK_NONE);
        let mut summary = CommitSummary::default();
        for change in changes {
            let (index, mark, binding) = match change {
                Change::Insert(b) => {
                    self.check_binding(aor_key, b)?;
                    summary.inserted += 1;
                    continue;
                }
                Change::Update { index, binding } => (*index, MARK_UPDATE, Some(binding)),
                Change::Remove { index } => (*index, MARK_REMOVE, None),
            };
            let m = self
                .scratch_mark
                .get_mut(index)
                .ok_or(CommitError::IndexOutOfRange)?;
            if *m != MARK_NONE {
                return Err(CommitError::IndexRepeated);
            }
            *m = mark;
            if let Some(b) = binding {
                self.check_binding(aor_key, b)?;
                summary.updated += 1;
            } else {
                summary.removed += 1;
            }
        }
        summary.aor_bindings = old_len - summary.removed + summary.inserted;
        if summary.inserted > summary.removed {
            if summary.aor_bindings > self.limits.bindings_per_aor_max {
                return Err(CommitError::AorFull);
            }
            if self.bindings - summary.removed + summary.inserted > self.limits.bindings_max {
                return Err(CommitError::TableFull);
            }
        }

        // Mutate.
        self.wheel.start_at(secs_floor(now_ms));
        self.scratch_new.clear();
        for i in 0..old_len {
            let idx = self.scratch_old[i];
            if self.scratch_mark[i] == MARK_REMOVE {
                self.wheel.unlink(&mut self.slots, idx);
                self.free_slot(idx);
            } else {
                self.scratch_new.push(idx);
            }
        }
        for change in changes {
            if let Change::Update { index, binding } = change {
                let idx = self.scratch_old[*index];
                self.rewrite(idx, aor_key, binding);
            }
        }
        let registered_s = secs_floor(now_ms);
        for change in changes {
            if let Change::Insert(b) = change {
                let idx = self.alloc_slot(aor_key, b, registered_s);
                self.wheel.link(&mut self.slots, idx);
                self.scratch_new.push(idx);
            }
        }
        self.bindings = self.bindings - summary.removed + summary.inserted;

        // Relink the AOR's list and its map entry.
        let mut next = NIL;
        for &idx in self.scratch_new.iter().rev() {
            self.slots[idx as usize].aor_next = next;
            next = idx;
        }
        let new_head = self.scratch_new.first().copied();
        let Self { aors, slots, .. } = self;
        match (head, new_head) {
            (Some(h), Some(nh)) if h != nh => {
                if let Some(e) = aors.find_mut(hash, |&s| s == h) {
                    *e = nh;
                }
            }
            (Some(h), None) => {
                if let Ok(e) = aors.find_entry(hash, |&s| s == h) {
                    e.remove();
                    self.emptied.insert(hash);
                }
            }
            (None, Some(nh)) => {
                aors.insert_unique(hash, nh, |&s| seeded_hash(slot_key(slots, s)));
            }
            _ => {}
        }
        debug_assert_eq!(self.wheel.len(), self.bindings);
        Ok(summary)
    }

    fn check_binding(&self, aor_key: &[u8], b: &NewBinding<'_>) -> Result<(), CommitError> {
        match binding::encoded_len(aor_key, b) {
            Ok(len) if len <= self.limits.binding_bytes_max => Ok(()),
            Ok(_) | Err(EncodeError::FieldTooLong) => Err(CommitError::BindingTooLarge),
            Err(EncodeError::QOutOfRange) => Err(CommitError::QOutOfRange),
        }
    }

    /// Encoded length of a binding already validated by `check_binding`.
    fn len_of(aor_key: &[u8], b: &NewBinding<'_>) -> usize {
        binding::encoded_len(aor_key, b).unwrap_or(0)
    }

    fn alloc_slot(&mut self, aor_key: &[u8], b: &NewBinding<'_>, registered_s: u32) -> u32 {
        let mut blob = vec![0u8; Self::len_of(aor_key, b)].into_boxed_slice();
        binding::encode(&mut blob, aor_key, b, registered_s);
        let slot = Slot {
            blob: Some(blob),
            expiry_s: secs_ceil(b.expires_ms),
            branch: b.branch.to_u32(),
            aor_next: NIL,
            wheel_prev: NIL,
            wheel_next: NIL,
            wheel_bucket: 0,
        };
        if self.free_head != NIL {
            let idx = self.free_head;
            self.free_head = self.slots[idx as usize].aor_next;
            self.slots[idx as usize] = slot;
            idx
        } else {
            // `bindings_max` ≤ 2^31 keeps the index below NIL.
            let idx = self.slots.len() as u32;
            self.slots.push(slot);
            idx
        }
    }

    fn free_slot(&mut self, idx: u32) {
        let s = &mut self.slots[idx as usize];
        s.blob = None;
        s.aor_next = self.free_head;
        self.free_head = idx;
    }

    /// Refresh: new contents, same registration time, same place; the old blob is reused
    /// when the new contents fit in it with little slack (no allocation).
    fn rewrite(&mut self, idx: u32, aor_key: &[u8], b: &NewBinding<'_>) {
        let len = Self::len_of(aor_key, b);
        let s = &mut self.slots[idx as usize];
        let registered_s = binding::blob_registered_s(s.blob.as_deref().unwrap_or(&[]));
        match s.blob.as_deref_mut() {
            Some(old) if old.len() >= len && old.len() - len <= REUSE_SLACK_BYTES_MAX => {
                // `encode` writes every byte of `..len`; only the slack after it is zeroed.
                if let Some(slack) = old.get_mut(len..) {
                    slack.fill(0);
                }
                binding::encode(old, aor_key, b, registered_s);
            }
            _ => {
                let mut blob = vec![0u8; len].into_boxed_slice();
                binding::encode(&mut blob, aor_key, b, registered_s);
                s.blob = Some(blob);
            }
        }
        s.branch = b.branch.to_u32();
        let expiry_s = secs_ceil(b.expires_ms);
        if expiry_s >= s.expiry_s {
            // A refresh pushes the expiry later: the binding stays in the wheel bucket of
            // the second it was linked for, which comes first, and `expire` moves it on
            // when it gets there (a lazy wheel). Relinking now would touch its two wheel
            // neighbours and the new bucket's head: three random slots per refresh.
            s.expiry_s = expiry_s;
        } else {
            self.wheel.unlink(&mut self.slots, idx);
            self.slots[idx as usize].expiry_s = expiry_s;
            self.wheel.link(&mut self.slots, idx);
        }
    }

    /// Removes bindings whose expiry is at or before `now_ms`, at most `max` of them;
    /// returns how many. Refreshed bindings met on the way are moved on to the bucket of
    /// their expiry (the lazy wheel's deferred work), at most [`EXPIRE_MOVES_MAX`] per
    /// call, so that one call never stalls the core after a refresh storm; past that it
    /// stops early. Call again while it returns `max` or while
    /// [`next_expiry_ms`](Self::next_expiry_ms) is due. AORs left empty disappear.
    pub fn expire(&mut self, now_ms: u64, max: usize) -> usize {
        let now_s = secs_floor(now_ms);
        let (mut removed, mut moved) = (0, 0);
        // One call visits each bucket at most once: seconds next_s ..= sweep_end.
        let start = u64::from(self.wheel.next_s);
        let sweep_end = u64::from(now_s).min(start + u64::from(super::wheel::WHEEL_HORIZON_S) - 1);
        loop {
            let next_s = u64::from(self.wheel.next_s);
            let second = match self.wheel.distance_to_next() {
                Some(d) if next_s + u64::from(d) <= sweep_end => next_s + u64::from(d),
                _ => {
                    if u64::from(now_s) >= next_s {
                        self.wheel.next_s = now_s.saturating_add(1);
                    }
                    return removed;
                }
            };
            // `second` ≤ now_s, so it fits in u32.
            let second = u32::try_from(second).unwrap_or(u32::MAX);
            let mut cur = self.wheel.head(second);
            while cur != NIL {
                let slot = &self.slots[cur as usize];
                let next = slot.wheel_next;
                let expired = slot.expiry_s <= now_s;
                let moves = !expired && !self.wheel.in_its_bucket(slot);
                if (expired && removed == max) || (moves && moved == EXPIRE_MOVES_MAX) {
                    // Bindings moved on have left this bucket: the next call resumes here.
                    self.wheel.next_s = second;
                    return removed;
                }
                if expired {
                    self.remove_expired(cur);
                    removed += 1;
                } else if moves {
                    // Refreshed since it was linked (see `rewrite`): on to the bucket of
                    // its expiry, a later second than this one.
                    self.wheel.unlink(&mut self.slots, cur);
                    self.wheel.link(&mut self.slots, cur);
                    moved += 1;
                }
                cur = next;
            }
            self.wheel.next_s = second.saturating_add(1);
        }
    }

    /// When `expire` has work next, ms since the Unix epoch (possibly in the past, or
    /// early; never late): a binding refreshed to a later expiry is first met at the
    /// second it was due before, where `expire` moves it on. `None` when the table is
    /// empty.
    pub fn next_expiry_ms(&self) -> Option<u64> {
        let d = self.wheel.distance_to_next()?;
        Some((u64::from(self.wheel.next_s) + u64::from(d)) * 1000)
    }

    fn remove_expired(&mut self, idx: u32) {
        let Self { aors, slots, .. } = self;
        let key = slot_key(slots, idx);
        let hash = seeded_hash(key);
        let Some(&head) = aors.find(hash, |&h| slot_key(slots, h) == key) else {
            debug_assert!(false, "binding not reachable from its AOR");
            return;
        };
        let next = slots[idx as usize].aor_next;
        if head == idx {
            if let Ok(e) = aors.find_entry(hash, |&s| s == head) {
                if next == NIL {
                    e.remove();
                    self.emptied.insert(hash);
                } else {
                    *e.into_mut() = next;
                }
            }
        } else {
            let mut prev = head;
            while slots[prev as usize].aor_next != idx {
                prev = slots[prev as usize].aor_next;
                if prev == NIL {
                    debug_assert!(false, "binding not in its AOR's list");
                    return;
                }
            }
            slots[prev as usize].aor_next = next;
        }
        self.wheel.unlink(&mut self.slots, idx);
        self.free_slot(idx);
        self.bindings -= 1;
        self.expired_total += 1;
    }

    /// AORs whose first binding sits in slot `from` or later, in slot order, for a
    /// paginated dump (issue 7). Slot indices never move, so the returned cursor stays
    /// meaningful while the table changes (inserts, removals, hash-table growth): an
    /// AOR present for the whole walk is seen once, unless its first binding is
    /// removed mid-walk. Visits at most `slots_max` slots and calls `each` for at most
    /// `aors_max` AORs, so one call is bounded whatever the table size. Returns the
    /// slot to continue from, or `None` at the end of the table.
    pub fn aors_from_slot(
        &self,
        from: usize,
        aors_max: usize,
        slots_max: usize,
        mut each: impl FnMut(AorRef<'_>),
    ) -> Option<usize> {
        let end = self.slots.len();
        let stop = from.saturating_add(slots_max).min(end);
        let mut idx = from;
        let mut found = 0;
        while idx < stop && found < aors_max {
            if let Some(blob) = self.slots.get(idx).and_then(|s| s.blob.as_deref()) {
                let hash = seeded_hash(blob_aor_key(blob));
                if self.aors.find(hash, |&h| h as usize == idx).is_some() {
                    each(AorRef {
                        slots: &self.slots,
                        head: idx as u32,
                    });
                    found += 1;
                }
            }
            idx += 1;
        }
        (idx < end).then_some(idx)
    }
}

/// One AOR's bindings, borrowed from the table.
#[derive(Clone, Copy)]
pub struct AorRef<'a> {
    slots: &'a [Slot],
    head: u32,
}

impl<'a> AorRef<'a> {
    /// The AOR key.
    pub fn key(&self) -> &'a [u8] {
        slot_key(self.slots, self.head)
    }

    /// The bindings in their stable order.
    pub fn iter(&self) -> Bindings<'a> {
        Bindings {
            slots: self.slots,
            cur: self.head,
        }
    }

    /// Number of bindings (walks the list; AORs are small).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Always false: an AOR with no binding is not in the table.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Binding `index` in the stable order.
    pub fn get(&self, index: usize) -> Option<BindingRef<'a>> {
        self.iter().nth(index)
    }
}

impl<'a> IntoIterator for AorRef<'a> {
    type Item = BindingRef<'a>;
    type IntoIter = Bindings<'a>;
    fn into_iter(self) -> Bindings<'a> {
        self.iter()
    }
}

impl std::fmt::Debug for AorRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AorRef")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("bindings", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

/// Iterator over an AOR's bindings.
#[derive(Clone)]
pub struct Bindings<'a> {
    slots: &'a [Slot],
    cur: u32,
}

impl<'a> Iterator for Bindings<'a> {
    type Item = BindingRef<'a>;
    fn next(&mut self) -> Option<BindingRef<'a>> {
        let slot = self.slots.get(self.cur as usize)?;
        self.cur = slot.aor_next;
        Some(BindingRef {
            blob: slot.blob.as_deref().unwrap_or(&[]),
            expiry_s: slot.expiry_s,
            branch: BranchHash::from_u32(slot.branch),
        })
    }
}
