//! Log lines that a flood of bad requests or an outage would repeat thousands of times a
//! second (refusals, fallbacks): at most a few a second are written, and the next one
//! written says how many were left out. Every one of them is still counted in the metrics.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// A budget of log lines per second.
#[derive(Debug)]
pub struct Throttle {
    per_second: u32,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Option<Instant>,
    written: u32,
    left_out: u64,
}

impl Throttle {
    /// At most `per_second` lines a second.
    pub const fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Mutex::new(Window {
                start: None,
                written: 0,
                left_out: 0,
            }),
        }
    }

    /// Whether to write this line: `Some(n)` with how many were left out since the last one
    /// written, or `None` to leave it out.
    pub fn admit(&self) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if window
            .start
            .is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1))
        {
            window.start = Some(now);
            window.written = 0;
        }
        if window.written >= self.per_second {
            window.left_out += 1;
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.left_out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_budget_and_the_next_line_says_how_much_was_left_out() {
        let throttle = Throttle::new(3);
        let admitted: Vec<Option<u64>> = (0..10).map(|_| throttle.admit()).collect();
        assert_eq!(admitted[..3], [Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none));
        // A second later the budget is back, and the first line counts what was left out.
        if let Ok(mut window) = throttle.window.lock() {
            window.start = window.start.map(|start| start - Duration::from_secs(1));
        }
        assert_eq!(throttle.admit(), Some(7));
        assert_eq!(throttle.admit(), Some(0));
    }
}
