//! A core's connection table: a slab of slots, each with a generation, so that a
//! [`ConnId`](crate::registrar::ConnId) (core, slot, generation) names one connection
//! for its whole life and nothing after it: a reply that comes back (possibly over the
//! mesh) after its connection closed and the slot was reused finds another generation
//! and is counted as "connection gone" instead of reaching a stranger.
//!
//! Bounded by `--tcp-connections-max`: [`Table::insert`] refuses past it. Slots are
//! reused lowest-freed-last (a free list), so the slab never outgrows the cap.

/// One slot: the generation of its current (or next) occupant.
#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

#[derive(Debug)]
pub(super) struct Table<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    live: usize,
    max: usize,
}

impl<T> Table<T> {
    /// An empty table holding at most `max` values.
    pub(super) fn new(max: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            max,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.live
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Store `value`: its (slot, generation), or `value` back when the table is full.
    pub(super) fn insert(&mut self, value: T) -> Result<(u32, u32), T> {
        if self.live >= self.max {
            return Err(value);
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let Ok(slot) = u32::try_from(self.slots.len()) else {
                    return Err(value);
                };
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                slot
            }
        };
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return Err(value);
        };
        debug_assert!(entry.value.is_none());
        entry.value = Some(value);
        self.live += 1;
        Ok((slot, entry.generation))
    }

    /// The value in `slot` if its generation is `generation`.
    pub(super) fn get_mut(&mut self, slot: u32, generation: u32) -> Option<&mut T> {
        self.slots
            .get_mut(slot as usize)
            .filter(|s| s.generation == generation)
            .and_then(|s| s.value.as_mut())
    }

    /// The value in `slot`, whatever its generation, read only.
    pub(super) fn get_slot(&self, slot: u32) -> Option<&T> {
        self.slots.get(slot as usize).and_then(|s| s.value.as_ref())
    }

    /// The value in `slot`, whatever its generation (the table's own walk).
    pub(super) fn get_slot_mut(&mut self, slot: u32) -> Option<(&mut T, u32)> {
        self.slots
            .get_mut(slot as usize)
            .and_then(|s| s.value.as_mut().map(|v| (v, s.generation)))
    }

    /// Take the value out of `slot`; the slot's next occupant gets a new generation.
    pub(super) fn remove(&mut self, slot: u32) -> Option<T> {
        let entry = self.slots.get_mut(slot as usize)?;
        let value = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        Some(value)
    }

    /// Slots in use or used before (the walk's bound).
    pub(super) fn slots(&self) -> u32 {
        u32::try_from(self.slots.len()).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_has_a_new_generation_and_the_cap_holds() {
        let mut t = Table::new(2);
        let (a, ga) = t.insert("a").unwrap();
        let (b, _) = t.insert("b").unwrap();
        assert_eq!(t.insert("c"), Err("c"), "at the cap");
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(a), Some("a"));
        assert_eq!(t.remove(a), None);
        let (c, gc) = t.insert("c").unwrap();
        assert_eq!(c, a, "the freed slot is reused");
        assert_ne!(gc, ga);
        assert!(t.get_mut(a, ga).is_none(), "the old id names nothing");
        assert_eq!(t.get_mut(c, gc).copied(), Some("c"));
        assert_eq!(t.slots(), 2);
        t.remove(b);
        t.remove(c);
        assert!(t.is_empty());
    }
}
