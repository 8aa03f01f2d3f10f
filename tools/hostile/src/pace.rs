//! The opening pace: connection k may open at `start + k / rate`, no sooner. A server's SYN
//! backlog (and its accept loop) then sees at most `rate` new connections a second, whatever
//! the count; a late tick is made up for at once, so the average rate holds even where the
//! timer's resolution (1 ms) is coarser than the interval.

use std::num::NonZeroU32;

use tokio::time::{Duration, Instant};

/// Permits to open connections, `rate` a second.
#[derive(Debug)]
pub struct Pace {
    start: Instant,
    rate: NonZeroU32,
    issued: u64,
}

impl Pace {
    /// A pace starting now.
    pub fn new(rate: NonZeroU32) -> Self {
        Self {
            start: Instant::now(),
            rate,
            issued: 0,
        }
    }

    /// When the next permit is due.
    pub fn due(&self) -> Instant {
        let nanos = u128::from(self.issued) * 1_000_000_000 / u128::from(self.rate.get());
        self.start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Takes every permit due by `now`; returns how many.
    pub fn take_due(&mut self, now: Instant) -> u64 {
        let mut taken = 0;
        while self.due() <= now {
            self.issued += 1;
            taken += 1;
        }
        taken
    }

    /// Waits for the next permit and takes it with any others due by then.
    pub async fn tick(&mut self) -> u64 {
        tokio::time::sleep_until(self.due()).await;
        self.take_due(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn the_first_permit_is_due_at_once() {
        let mut pace = Pace::new(rate(10));
        assert_eq!(pace.take_due(Instant::now()), 1);
        assert_eq!(pace.take_due(Instant::now()), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn permits_come_at_the_rate() {
        let start = Instant::now();
        let mut pace = Pace::new(rate(100));
        let mut taken = 0;
        while taken < 250 {
            taken += pace.tick().await;
        }
        assert_eq!(taken, 250);
        // Permit 249 is due at 2.49 s.
        assert_eq!(Instant::now() - start, Duration::from_millis(2490));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_tick_takes_every_permit_due() {
        let mut pace = Pace::new(rate(4000));
        tokio::time::advance(Duration::from_millis(10)).await;
        // Permits 0..=40 are due by 10 ms (one every 250 µs).
        assert_eq!(pace.tick().await, 41);
    }
}
