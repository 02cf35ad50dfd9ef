//! A trader's sequenced feed (`/ws/orders`): frames numbered 1, 2, 3… within an epoch,
//! the newest `gateway.feed_capacity` kept for clients resuming with `?since=`.

use std::collections::VecDeque;
use std::sync::Arc;

use gf_api::OrderFeedFrame;

/// What a read of the feed found.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedRead {
    /// The frames after the asked sequence number (possibly none), and the newest number.
    Frames(Vec<(u64, Arc<str>)>, u64),
    /// The frames asked for are no longer kept (or never existed in this epoch).
    Gap {
        /// The oldest kept.
        oldest: u64,
        /// The newest.
        head: u64,
    },
}

#[derive(Debug, Default)]
pub(super) struct Feed {
    pub(super) frames: VecDeque<(u64, Arc<str>)>,
    pub(super) head: u64,
}

impl Feed {
    pub(super) fn oldest(&self) -> u64 {
        self.frames.front().map_or(0, |(seq, _)| *seq)
    }

    pub(super) fn push(&mut self, capacity: usize, frame: impl FnOnce(u64) -> OrderFeedFrame) {
        self.head += 1;
        let seq = self.head;
        let text: Arc<str> = serde_json::to_string(&frame(seq))
            .unwrap_or_default()
            .into();
        if self.frames.len() >= capacity {
            self.frames.pop_front();
        }
        self.frames.push_back((seq, text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_keeps_its_capacity_and_numbers_frames_from_one() {
        let mut feed = Feed::default();
        for _ in 0..5 {
            feed.push(3, |seq| OrderFeedFrame::Resume {
                seq,
                resumed_by: None,
            });
        }
        assert_eq!(feed.head, 5);
        assert_eq!(feed.oldest(), 3);
        let seqs: Vec<u64> = feed.frames.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, [3, 4, 5]);
        let text = &feed.frames[0].1;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(text).unwrap()["seq"],
            3
        );
    }
}
