//! Replay pacing: how fast frames of a capture file are handed on.
//!
//! At `max` (the default) frames go as fast as they can be read. At `realtime`, or a factor of
//! it, each frame waits until as much wall time has passed since the first frame as capture
//! time has, divided by the factor — tcpreplay's `--multiplier`. Demos and tests of idle
//! timeouts and live counters need it: a file then behaves like the traffic it recorded.
//!
//! The wait is cut into short sleeps so that a stop is seen promptly and the caller's idle
//! work (flushing outputs, publishing metrics, expiring flows) still runs during a long quiet
//! stretch of the capture. Capture timestamps that go backwards (merged files, clock steps) do
//! not wait and do not move the schedule back.
use std::time::{Duration, Instant};

/// Longest single sleep while waiting for a frame's time.
const SLICE: Duration = Duration::from_millis(100);

/// Replay speed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Speed {
    /// As fast as possible.
    #[default]
    Max,
    /// Capture time divided by this factor (1.0 = the pace it was recorded at).
    Times(f64),
}

/// A `--speed` value that is not `max`, `realtime` or a positive factor.
#[derive(Debug, thiserror::Error)]
#[error(
    "bad speed `{0}`: expected `max`, `realtime` or a factor of real time such as `2` or `0.5x`"
)]
pub struct BadSpeed(String);

impl std::str::FromStr for Speed {
    type Err = BadSpeed;
    fn from_str(s: &str) -> Result<Self, BadSpeed> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "max" => return Ok(Speed::Max),
            "realtime" | "real-time" => return Ok(Speed::Times(1.0)),
            _ => {}
        }
        let f: f64 = t
            .strip_suffix('x')
            .unwrap_or(&t)
            .parse()
            .map_err(|_| BadSpeed(s.to_string()))?;
        // Below a millionth of real time a second of capture would take eleven days.
        if f.is_finite() && f >= 1e-6 {
            Ok(Speed::Times(f))
        } else {
            Err(BadSpeed(s.to_string()))
        }
    }
}

/// What a wait ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    /// The frame is due.
    Due,
    /// The stop flag was set while waiting.
    Stopped,
}

/// The schedule of one replay.
#[derive(Debug, Default)]
pub struct Pacer {
    speed: Speed,
    /// First frame's capture time and when it was handed on.
    origin: Option<(i64, Instant)>,
    /// Latest capture time scheduled so far (timestamps going back do not rewind it).
    latest: i64,
}

impl Pacer {
    /// A schedule at `speed`.
    pub fn new(speed: Speed) -> Self {
        Pacer {
            speed,
            origin: None,
            latest: i64::MIN,
        }
    }

    /// How long to wait now before the frame stamped `ts_us` is due.
    fn remaining(&mut self, ts_us: i64, now: Instant) -> Duration {
        let Speed::Times(factor) = self.speed else {
            return Duration::ZERO;
        };
        let (t0, w0) = *self.origin.get_or_insert((ts_us, now));
        self.latest = self.latest.max(ts_us);
        let capture = self.latest.saturating_sub(t0).max(0) as f64 / 1e6;
        // A capture spanning years at a tiny factor still fits: clamp to a day per frame.
        let due = Duration::from_secs_f64((capture / factor).min(86_400.0));
        (w0 + due).saturating_duration_since(now)
    }

    /// Waits until the frame stamped `ts_us` is due, calling `idle` between sleeps of at
    /// most [`SLICE`]; returns early when `stop` is set.
    pub fn wait(
        &mut self,
        ts_us: i64,
        stop: &std::sync::atomic::AtomicBool,
        mut idle: impl FnMut(),
    ) -> Waited {
        loop {
            let left = self.remaining(ts_us, Instant::now());
            if left.is_zero() {
                return Waited::Due;
            }
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return Waited::Stopped;
            }
            std::thread::sleep(left.min(SLICE));
            if left > SLICE {
                idle();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!("max".parse::<Speed>().unwrap(), Speed::Max);
        assert_eq!("realtime".parse::<Speed>().unwrap(), Speed::Times(1.0));
        assert_eq!("2".parse::<Speed>().unwrap(), Speed::Times(2.0));
        assert_eq!("0.5x".parse::<Speed>().unwrap(), Speed::Times(0.5));
        for bad in ["0", "-1", "fast", "nan", "inf", ""] {
            let e = bad.parse::<Speed>().unwrap_err().to_string();
            assert!(e.contains("expected `max`, `realtime`"), "{bad}: {e}");
        }
    }

    #[test]
    fn max_never_waits() {
        let mut p = Pacer::new(Speed::Max);
        let now = Instant::now();
        assert_eq!(p.remaining(0, now), Duration::ZERO);
        assert_eq!(p.remaining(3_600_000_000, now), Duration::ZERO);
    }

    #[test]
    fn schedule_follows_capture_time_over_the_factor() {
        let mut p = Pacer::new(Speed::Times(2.0));
        let t0 = Instant::now();
        assert_eq!(p.remaining(1_000_000, t0), Duration::ZERO);
        // 1 s of capture at 2x is due 500 ms after the first frame.
        assert_eq!(p.remaining(2_000_000, t0), Duration::from_millis(500));
        assert_eq!(
            p.remaining(2_000_000, t0 + Duration::from_millis(200)),
            Duration::from_millis(300)
        );
        // A timestamp going back waits for the latest one, never rewinds the schedule.
        assert_eq!(
            p.remaining(1_500_000, t0 + Duration::from_millis(500)),
            Duration::ZERO
        );
        assert_eq!(
            p.remaining(2_200_000, t0 + Duration::from_millis(500)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn waits_in_real_time_and_stops_promptly() {
        let stop = AtomicBool::new(false);
        let mut p = Pacer::new(Speed::Times(1.0));
        let start = Instant::now();
        assert_eq!(p.wait(0, &stop, || {}), Waited::Due);
        assert_eq!(p.wait(150_000, &stop, || {}), Waited::Due);
        assert!(start.elapsed() >= Duration::from_millis(150));
        // A frame an hour later: a set stop flag ends the wait at once.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let t = Instant::now();
        assert_eq!(p.wait(3_600_000_000, &stop, || {}), Waited::Stopped);
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn long_waits_call_the_idle_work() {
        let stop = AtomicBool::new(false);
        let mut p = Pacer::new(Speed::Times(1.0));
        let mut idles = 0;
        p.wait(0, &stop, || idles += 1);
        p.wait(350_000, &stop, || idles += 1);
        assert!(idles >= 2, "{idles}");
    }
}
