//! When a worker sends: the pacing of new requests ([`Pacer`]) and the retransmission
//! and give-up deadlines of the requests in flight ([`Timers`]).
//!
//! Why a module of its own: both are pure functions of the time they are given (ns since
//! the worker's base instant), so they are tested on a fake clock, without sockets and
//! without sleeping; the worker reads its clock once per loop turn and passes it in.

use std::collections::VecDeque;

/// RFC 3261 §17.1.2.2 Timer E: starts at T1 and doubles up to T2 (non-INVITE over UDP).
/// INVITE (Timer A) uses the same steps here; uncapped doubling only matters past 4 s.
pub(crate) const RETRANSMIT_STEPS_MS: [u64; 4] = [500, 1000, 2000, 4000];

/// The send schedule of one phase. Open loop: request `k` is intended at
/// `start + k × ns_per_request` and never starts before it is due, whatever the window
/// allows. Closed loop (`ns_per_request` 0): a new request starts whenever the window
/// has room. Either way at most `count` requests, when given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pacer {
    pub(crate) start_ns: u64,
    /// Nanoseconds between intended starts (`1e9 × workers / rate`); 0 in closed loop.
    pub(crate) ns_per_request: f64,
    /// Requests in flight at most.
    pub(crate) window: usize,
    /// Requests in the phase at most (None: bounded by time).
    pub(crate) count: Option<u64>,
}

impl Pacer {
    /// How many new requests may start at `now`, with `started` started so far in the
    /// phase and `outstanding` in flight.
    pub(crate) fn budget(&self, now: u64, started: u64, outstanding: usize) -> u64 {
        let mut budget = self.window.saturating_sub(outstanding) as u64;
        if self.ns_per_request > 0.0 {
            // Request `started` is due once `now` reaches its intended instant.
            let due = (now.saturating_sub(self.start_ns) as f64 / self.ns_per_request) as u64 + 1;
            budget = budget.min(due.saturating_sub(started));
        }
        if let Some(count) = self.count {
            budget = budget.min(count.saturating_sub(started));
        }
        budget
    }

    /// The instant request `k` of the phase is intended at (latency is measured from it,
    /// so a stall shows up as latency, not as a lower offered rate); `now` in closed loop.
    pub(crate) fn intended_ns(&self, k: u64, now: u64) -> u64 {
        if self.ns_per_request > 0.0 {
            self.start_ns + (k as f64 * self.ns_per_request) as u64
        } else {
            now
        }
    }

    /// When request `started` is due (open loop); None in closed loop, where it is due
    /// as soon as the window has room.
    pub(crate) fn next_due_ns(&self, started: u64) -> Option<u64> {
        (self.ns_per_request > 0.0)
            .then(|| self.start_ns + (started as f64 * self.ns_per_request) as u64)
    }
}

/// One deadline of the request in `slot`, sent as sequence number `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timer {
    pub(crate) deadline_ns: u64,
    pub(crate) slot: u32,
    pub(crate) seq: u32,
}

/// A deadline that has come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Retransmit (if the request is still waiting), then [`Timers::rearm`] it.
    Retransmit { timer: Timer, step: usize },
    /// Give up on the request (if it is still waiting): the timeout (Timer F).
    GiveUp(Timer),
}

/// The deadlines of the requests in flight, without a heap: every request gets the same
/// steps, so deadlines pushed in send order are already sorted, one FIFO per Timer E
/// step plus one for the timeout, each popped from the front.
///
/// An answered request is not searched for: its deadlines stay queued and are dropped
/// by the caller when they come (the slot is no longer in flight, or its sequence
/// number moved on).
#[derive(Debug)]
pub(crate) struct Timers {
    rtx: [VecDeque<Timer>; RETRANSMIT_STEPS_MS.len()],
    timeouts: VecDeque<Timer>,
}

impl Timers {
    /// Queues with room for `slots` requests in flight.
    pub(crate) fn with_capacity(slots: usize) -> Self {
        Self {
            rtx: std::array::from_fn(|_| VecDeque::with_capacity(slots)),
            timeouts: VecDeque::with_capacity(slots),
        }
    }

    /// The request in `slot` (as `seq`) left at `now`: retransmit it after T1 when
    /// `retransmit`, give up on it after `timeout_ns`.
    pub(crate) fn arm(&mut self, slot: u32, seq: u32, now: u64, retransmit: bool, timeout_ns: u64) {
        if retransmit {
            self.rtx[0].push_back(Timer {
                deadline_ns: now + RETRANSMIT_STEPS_MS[0] * 1_000_000,
                slot,
                seq,
            });
        }
        self.timeouts.push_back(Timer {
            deadline_ns: now + timeout_ns,
            slot,
            seq,
        });
    }

    /// The next deadline at or before `now`: retransmissions first (in step order),
    /// then give-ups.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<Due> {
        for (step, queue) in self.rtx.iter_mut().enumerate() {
            if queue.front().is_some_and(|t| t.deadline_ns <= now) {
                let timer = queue.pop_front()?;
                return Some(Due::Retransmit { timer, step });
            }
        }
        if self.timeouts.front().is_some_and(|t| t.deadline_ns <= now) {
            return self.timeouts.pop_front().map(Due::GiveUp);
        }
        None
    }

    /// `timer` of Timer E step `step` was retransmitted at `now`: the next one comes
    /// after the next step's interval (doubling, capped at T2).
    pub(crate) fn rearm(&mut self, timer: Timer, step: usize, now: u64) {
        let next = (step + 1).min(RETRANSMIT_STEPS_MS.len() - 1);
        self.rtx[next].push_back(Timer {
            deadline_ns: now + RETRANSMIT_STEPS_MS[next] * 1_000_000,
            ..timer
        });
    }

    /// The earliest deadline queued.
    pub(crate) fn next_deadline_ns(&self) -> Option<u64> {
        self.rtx
            .iter()
            .chain(std::iter::once(&self.timeouts))
            .filter_map(|q| q.front().map(|t| t.deadline_ns))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    /// RFC 3261 T1 and T2, and Timer F = 64 × T1.
    const T1_MS: u64 = 500;
    const T2_MS: u64 = 4000;
    const TIMER_F_MS: u64 = 64 * T1_MS;

    /// Drives a pacer as the worker does, at the instants `ticks`, with every request
    /// answered at once; returns (instant of each start, intended instant of each).
    fn run(pacer: &Pacer, ticks: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
        let mut starts = Vec::new();
        for now in ticks {
            let budget = pacer.budget(now, starts.len() as u64, 0);
            for _ in 0..budget {
                let k = starts.len() as u64;
                starts.push((now, pacer.intended_ns(k, now)));
            }
        }
        starts
    }

    #[test]
    fn open_loop_sends_n_over_n_over_rate_and_never_ahead_of_schedule() {
        // 1000 requests/s: one every ms, 100 of them, ticks at irregular instants.
        let pacer = Pacer {
            start_ns: 7 * MS,
            ns_per_request: 1e6,
            window: 1 << 20,
            count: Some(100),
        };
        let ticks = (0..400u64).map(|i| 7 * MS + i * 370_000 + (i % 3) * 11_000);
        let starts = run(&pacer, ticks);
        assert_eq!(starts.len(), 100);
        for (k, &(at, intended)) in starts.iter().enumerate() {
            assert_eq!(intended, 7 * MS + k as u64 * MS, "request {k}'s schedule");
            assert!(at >= intended, "request {k} started before it was due");
            // The tick after it became due: never later than one tick (0.4 ms).
            assert!(
                at - intended < 400_000,
                "request {k} started late: {at} vs {intended}"
            );
        }
        // The last of N = 100 at rate 1000/s is intended (N - 1) ms after the start.
        assert_eq!(starts.last().unwrap().1, 7 * MS + 99 * MS);
        // And nothing more, whatever the time.
        assert_eq!(pacer.budget(10_000 * MS, 100, 0), 0);
    }

    #[test]
    fn open_loop_catches_up_after_a_stall_only_as_far_as_due_and_window() {
        let pacer = Pacer {
            start_ns: 0,
            ns_per_request: 1e6,
            window: 8,
            count: None,
        };
        assert_eq!(pacer.budget(0, 0, 0), 1, "request 0 is due at the start");
        assert_eq!(pacer.budget(0, 1, 0), 0, "request 1 is not due before 1 ms");
        assert_eq!(pacer.budget(MS - 1, 1, 0), 0);
        assert_eq!(pacer.budget(MS, 1, 0), 1);
        // A 50 ms stall: 50 requests are due, but the window allows 8 in flight...
        assert_eq!(pacer.budget(51 * MS, 2, 0), 8);
        // ...minus those still out.
        assert_eq!(pacer.budget(51 * MS, 2, 5), 3);
        assert_eq!(pacer.budget(51 * MS, 2, 8), 0);
        assert_eq!(pacer.budget(51 * MS, 2, 9), 0);
        // With room, exactly what is due: requests 2..=51.
        let wide = Pacer {
            window: 1 << 20,
            ..pacer
        };
        assert_eq!(wide.budget(51 * MS, 2, 0), 50);
        // The stalled requests keep their intended instants (their latency shows it).
        assert_eq!(wide.intended_ns(2, 51 * MS), 2 * MS);
        assert_eq!(wide.next_due_ns(52), Some(52 * MS));
    }

    #[test]
    fn closed_loop_fills_the_window_and_stops_at_the_count() {
        let pacer = Pacer {
            start_ns: 0,
            ns_per_request: 0.0,
            window: 16,
            count: Some(40),
        };
        assert_eq!(pacer.budget(0, 0, 0), 16);
        assert_eq!(pacer.budget(0, 16, 16), 0);
        assert_eq!(pacer.budget(5, 16, 10), 6);
        assert_eq!(pacer.budget(5, 36, 0), 4, "the count caps the window");
        assert_eq!(pacer.budget(5, 40, 0), 0);
        assert_eq!(
            pacer.intended_ns(3, 12_345),
            12_345,
            "latency from the send"
        );
        assert_eq!(pacer.next_due_ns(3), None);
    }

    /// What happened to the requests: (instant in ms, slot, retransmitted or gave up).
    #[derive(Debug, PartialEq, Eq)]
    enum Event {
        Retransmit(u64, u32),
        GiveUp(u64, u32),
    }

    /// Runs `timers` on a fake clock that jumps from deadline to deadline up to
    /// `until_ms`, as the worker's loop does; a slot is live while `live` says so (it
    /// is answered at that instant, in ms) and until it gives up.
    fn drive(timers: &mut Timers, answered_ms: &[(u32, u64)], until_ms: u64) -> Vec<Event> {
        let mut gave_up: Vec<u32> = Vec::new();
        let mut events = Vec::new();
        while let Some(now) = timers.next_deadline_ns() {
            if now > until_ms * MS {
                break;
            }
            while let Some(due) = timers.pop_due(now) {
                let live = |slot: u32, gave_up: &[u32]| {
                    !gave_up.contains(&slot)
                        && answered_ms
                            .iter()
                            .all(|&(s, at)| s != slot || now < at * MS)
                };
                match due {
                    Due::Retransmit { timer, step } => {
                        if live(timer.slot, &gave_up) {
                            events.push(Event::Retransmit(now / MS, timer.slot));
                            timers.rearm(timer, step, now);
                        }
                    }
                    Due::GiveUp(timer) => {
                        if live(timer.slot, &gave_up) {
                            events.push(Event::GiveUp(now / MS, timer.slot));
                            gave_up.push(timer.slot);
                        }
                    }
                }
            }
        }
        events
    }

    #[test]
    fn retransmissions_double_from_t1_to_t2_and_give_up_at_timer_f() {
        assert_eq!(RETRANSMIT_STEPS_MS[0], T1_MS);
        assert_eq!(*RETRANSMIT_STEPS_MS.last().unwrap(), T2_MS);
        let mut timers = Timers::with_capacity(4);
        timers.arm(0, 1, 0, true, TIMER_F_MS * MS);
        let events = drive(&mut timers, &[], 60_000);
        // RFC 3261 §17.1.2.2: 500, 1000, 2000, then every 4000 ms, until Timer F.
        let mut want: Vec<Event> = [500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500]
            .into_iter()
            .chain([27_500, 31_500])
            .map(|at| Event::Retransmit(at, 0))
            .collect();
        want.push(Event::GiveUp(TIMER_F_MS, 0));
        assert_eq!(events, want);
        // Nothing is left once the request gave up (its last rearmed retransmission
        // came and was dropped).
        assert_eq!(timers.next_deadline_ns(), None);
    }

    #[test]
    fn an_answer_stops_retransmissions_and_the_give_up() {
        let mut timers = Timers::with_capacity(4);
        timers.arm(0, 1, 0, true, TIMER_F_MS * MS);
        timers.arm(1, 1, 100 * MS, true, TIMER_F_MS * MS);
        // Slot 0 answered at 2 s (after two retransmissions), slot 1 never.
        let events = drive(&mut timers, &[(0, 2000)], 60_000);
        let slot0: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Retransmit(_, 0) | Event::GiveUp(_, 0)))
            .collect();
        assert_eq!(
            slot0,
            [&Event::Retransmit(500, 0), &Event::Retransmit(1500, 0)]
        );
        assert!(events.contains(&Event::Retransmit(600, 1)));
        assert!(events.contains(&Event::GiveUp(100 + TIMER_F_MS, 1)));
        assert_eq!(timers.next_deadline_ns(), None);
    }

    #[test]
    fn without_retransmission_only_the_give_up_is_armed() {
        let mut timers = Timers::with_capacity(1);
        timers.arm(3, 9, 10 * MS, false, 1000 * MS);
        assert_eq!(timers.next_deadline_ns(), Some(1010 * MS));
        assert_eq!(timers.pop_due(1010 * MS - 1), None);
        assert_eq!(
            timers.pop_due(1010 * MS),
            Some(Due::GiveUp(Timer {
                deadline_ns: 1010 * MS,
                slot: 3,
                seq: 9
            }))
        );
        assert_eq!(timers.pop_due(u64::MAX), None);
    }
}
