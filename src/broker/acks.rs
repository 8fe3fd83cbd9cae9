//! Which delivery tags of a channel are still ours to settle, and how to ack a set of them
//! with as few frames as is safe.
//!
//! A `basic.ack` with `multiple` acks every unacked tag up to its own on the channel, so it may
//! only be sent when every tag below it that is still unsettled belongs to the set being acked.
//! The ledger knows the unsettled tags (registered as the consumer yields them, in tag order)
//! and hands a set over in one step: the tags leave the ledger *before* any frame is sent, so a
//! tag handed over for ack can never be nacked afterwards (issue 11 item 11: after an ack that
//! timed out, a nack of the same tag could close the channel with PRECONDITION_FAILED and
//! requeue everything in flight), nor acked twice.

use std::collections::BTreeSet;

/// The unsettled delivery tags of one channel.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    outstanding: BTreeSet<u64>,
}

/// The frames that ack a set of tags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AckPlan {
    /// One `multiple` ack on this tag covers every tag of the set up to it.
    pub multiple_upto: Option<u64>,
    /// Single acks for the rest of the set.
    pub singles: Vec<u64>,
}

impl Ledger {
    /// A delivery was handed to us.
    pub(crate) fn delivered(&mut self, tag: u64) {
        self.outstanding.insert(tag);
    }

    /// Take `tags` for acking. Tags that are not (or no longer) ours are left out, so nothing
    /// is ever settled twice. The tags below the lowest tag still outstanding afterwards are
    /// acked with one `multiple` frame (when there are at least two of them).
    pub(crate) fn take_for_ack(&mut self, tags: &[u64]) -> AckPlan {
        let mut taken: Vec<u64> = tags
            .iter()
            .copied()
            .filter(|t| self.outstanding.remove(t))
            .collect();
        taken.sort_unstable();
        let lowest_left = self.outstanding.first().copied().unwrap_or(u64::MAX);
        let below = taken.partition_point(|t| *t < lowest_left);
        if below >= 2 {
            AckPlan {
                multiple_upto: Some(taken[below - 1]),
                singles: taken.split_off(below),
            }
        } else {
            AckPlan {
                multiple_upto: None,
                singles: taken,
            }
        }
    }

    /// Take one tag for a nack (requeue). `false`: it is no longer ours (already handed over
    /// for an ack, whatever became of that ack): send nothing.
    pub(crate) fn take_for_requeue(&mut self, tag: u64) -> bool {
        self.outstanding.remove(&tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ledger(tags: impl IntoIterator<Item = u64>) -> Ledger {
        let mut l = Ledger::default();
        for t in tags {
            l.delivered(t);
        }
        l
    }

    #[test]
    fn contiguous_and_all_ours_is_one_multiple_ack() {
        let mut l = ledger(1..=5);
        assert_eq!(
            l.take_for_ack(&[3, 1, 2]),
            AckPlan {
                multiple_upto: Some(3),
                singles: vec![]
            }
        );
        // 4 is still someone else's: 5 must not be acked with `multiple`.
        let mut l = ledger(1..=5);
        assert_eq!(
            l.take_for_ack(&[1, 2, 5]),
            AckPlan {
                multiple_upto: Some(2),
                singles: vec![5]
            }
        );
        let mut l = ledger(1..=5);
        assert_eq!(
            l.take_for_ack(&[2, 3]),
            AckPlan {
                multiple_upto: None,
                singles: vec![2, 3]
            }
        );
    }

    /// Issue 11 item 11: a tag handed over for ack (which may have reached the broker even if
    /// the ack timed out) is never nacked or acked again.
    #[test]
    fn a_tag_taken_for_ack_is_never_requeued_or_acked_again() {
        let mut l = ledger([7, 8]);
        assert_eq!(l.take_for_ack(&[7]).singles, vec![7]);
        assert!(!l.take_for_requeue(7));
        assert_eq!(l.take_for_ack(&[7]), AckPlan::default());
        assert!(l.take_for_requeue(8));
        assert!(!l.take_for_requeue(8));
    }

    proptest! {
        /// Whatever is outstanding and whatever set is acked: every tag of the set that was
        /// ours is covered exactly once, and a `multiple` ack never covers a tag that is still
        /// outstanding (someone else's).
        #[test]
        fn plans_cover_exactly_the_set(
            outstanding in proptest::collection::btree_set(1u64..200, 0..40),
            pick in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
            foreign in proptest::collection::vec(1u64..400, 0..5),
        ) {
            let all: Vec<u64> = outstanding.iter().copied().collect();
            let mut set: Vec<u64> = if all.is_empty() { vec![] } else {
                pick.iter().map(|i| all[i.index(all.len())]).collect()
            };
            set.extend(&foreign);
            let mut l = ledger(all.iter().copied());
            let plan = l.take_for_ack(&set);
            let ours: BTreeSet<u64> = set.iter().copied().filter(|t| outstanding.contains(t)).collect();
            let mut covered: Vec<u64> = plan.singles.clone();
            if let Some(m) = plan.multiple_upto {
                for t in &l.outstanding {
                    prop_assert!(*t > m, "multiple ack {m} would cover outstanding {t}");
                }
                covered.extend(ours.iter().copied().filter(|t| *t <= m));
                prop_assert!(!plan.singles.iter().any(|t| *t <= m));
            }
            covered.sort_unstable();
            let expected: Vec<u64> = ours.iter().copied().collect();
            prop_assert_eq!(covered, expected);
            for t in &ours {
                prop_assert!(!l.outstanding.contains(t));
            }
        }
    }
}
