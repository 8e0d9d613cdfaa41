//! The one owner of timestamps: a monotonic test clock and the wall-clock stamp of reports.
//!
//! Everything else asks this module for time, so the measurement clock cannot drift between
//! modules (clippy's `disallowed-methods` keeps `Instant::now` out of the rest of the crate).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Now, on the monotonic clock.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

/// Seconds since the Unix epoch, for labelling reports (never for measuring).
#[allow(clippy::disallowed_methods)]
pub fn wall_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A test clock: zero at the start of the measured window (the end of `--omit`).
#[derive(Debug, Clone, Copy)]
pub struct TestClock {
    origin: Instant,
}

impl TestClock {
    /// A clock whose zero is `origin`.
    pub fn starting_at(origin: Instant) -> Self {
        TestClock { origin }
    }

    /// The instant the measured window starts.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Seconds since the origin; negative during warm-up.
    pub fn seconds(&self, at: Instant) -> f64 {
        if at >= self.origin {
            (at - self.origin).as_secs_f64()
        } else {
            -(self.origin - at).as_secs_f64()
        }
    }

    /// The instant `offset` after the origin.
    pub fn at(&self, offset: Duration) -> Instant {
        self.origin + offset
    }
}

/// Sleeps until `deadline` (returns at once when it has passed).
pub fn sleep_until(deadline: Instant) {
    let now = now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}
