//! The overview's chart: completed and failed jobs per minute over the last hour, as an SVG
//! drawn by the template from the numbers computed here.
//!
//! Sixty stacked bars on a fixed grid need no charting library: the geometry is a few lines
//! of arithmetic, the markup is the template's (so every label is escaped like any other
//! text), the SVG is inline (no request, no script, allowed by the page's CSP), and tests can
//! read each bar's numbers from its `data-*` attributes.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::store::dashboard::MinuteCount;

/// Minutes shown: the current one and the 59 before it.
pub const MINUTES: usize = 60;

/// The SVG's coordinate system (`viewBox`); it scales to the page width.
pub const VIEW_W: u32 = 780;
pub const VIEW_H: u32 = 184;
const PLOT_X: u32 = 48;
const PLOT_Y: u32 = 8;
const PLOT_W: u32 = 720;
const PLOT_H: u32 = 150;
const SLOT: u32 = PLOT_W / MINUTES as u32;
const BAR_W: u32 = SLOT - 2;

/// One minute's bar. Heights are in SVG units; a zero count has no rectangle.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub x: u32,
    pub width: u32,
    /// `HH:MM`, UTC.
    pub minute: String,
    pub completed: i64,
    pub failed: i64,
    pub completed_y: f64,
    pub completed_h: f64,
    pub failed_y: f64,
    pub failed_h: f64,
}

/// A horizontal grid line with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub y: f64,
    pub label: i64,
}

/// A time label under the bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub x: u32,
    pub text: String,
}

/// Everything the template draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
    pub labels: Vec<Label>,
    pub total_completed: i64,
    pub total_failed: i64,
    pub width: u32,
    pub height: u32,
    pub plot_left: u32,
    pub plot_right: u32,
    pub plot_top: u32,
    pub plot_height: u32,
}

/// The smallest of 1, 2, 5 × 10^k not below `n` (at least 1), so the axis reads well.
fn nice_ceiling(n: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            let candidate = step.saturating_mul(m);
            if candidate >= n || candidate == i64::MAX {
                return candidate.max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

fn height(count: i64, max: i64) -> f64 {
    // Counts and the scale are far below 2^52 in practice; the cast is exact there.
    (count.max(0) as f64) * f64::from(PLOT_H) / (max.max(1) as f64)
}

/// Lay out the hour ending with the minute of `now` from the minutes that had any jobs.
pub fn per_minute(now: DateTime<Utc>, counts: &[MinuteCount]) -> Chart {
    let current = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    let first = current - TimeDelta::minutes(MINUTES as i64 - 1);
    let mut slots = [(0i64, 0i64); MINUTES];
    for c in counts {
        let offset = (c.minute - first).num_minutes();
        if let Some(slot) = usize::try_from(offset).ok().and_then(|i| slots.get_mut(i)) {
            slot.0 += c.completed;
            slot.1 += c.failed;
        }
    }
    let max = nice_ceiling(slots.iter().map(|(c, f)| c + f).max().unwrap_or(0));
    let baseline = f64::from(PLOT_Y + PLOT_H);
    let bars = slots
        .iter()
        .enumerate()
        .map(|(i, &(completed, failed))| {
            let completed_h = height(completed, max);
            let failed_h = height(failed, max);
            let completed_y = baseline - completed_h;
            Bar {
                x: PLOT_X + SLOT * i as u32 + 1,
                width: BAR_W,
                minute: (first + TimeDelta::minutes(i as i64))
                    .format("%H:%M")
                    .to_string(),
                completed,
                failed,
                completed_y,
                completed_h,
                failed_y: completed_y - failed_h,
                failed_h,
            }
        })
        .collect::<Vec<_>>();
    let mut ticks = vec![
        Tick {
            y: baseline,
            label: 0,
        },
        Tick {
            y: f64::from(PLOT_Y),
            label: max,
        },
    ];
    if max % 2 == 0 {
        ticks.insert(
            1,
            Tick {
                y: baseline - f64::from(PLOT_H) / 2.0,
                label: max / 2,
            },
        );
    }
    let labels = [0usize, 15, 30, 45, MINUTES - 1]
        .into_iter()
        .filter_map(|i| bars.get(i))
        .map(|b| Label {
            x: b.x + b.width / 2,
            text: b.minute.clone(),
        })
        .collect();
    Chart {
        total_completed: slots.iter().map(|s| s.0).sum(),
        total_failed: slots.iter().map(|s| s.1).sum(),
        bars,
        ticks,
        labels,
        width: VIEW_W,
        height: VIEW_H,
        plot_left: PLOT_X,
        plot_right: PLOT_X + PLOT_W,
        plot_top: PLOT_Y,
        plot_height: PLOT_H,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn scale_is_a_round_number() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(4999), 5000);
    }

    #[test]
    fn minutes_land_in_their_slot_and_stack() {
        let now = Utc.with_ymd_and_hms(2026, 5, 13, 12, 30, 42).unwrap();
        let at = |h, m| Utc.with_ymd_and_hms(2026, 5, 13, h, m, 0).unwrap();
        let counts = [
            MinuteCount {
                minute: at(11, 31),
                completed: 3,
                failed: 1,
            },
            MinuteCount {
                minute: at(12, 30),
                completed: 6,
                failed: 4,
            },
            // Outside the hour: ignored.
            MinuteCount {
                minute: at(11, 30),
                completed: 100,
                failed: 0,
            },
        ];
        let c = per_minute(now, &counts);
        assert_eq!(c.bars.len(), MINUTES);
        assert_eq!(c.bars[0].minute, "11:31");
        assert_eq!((c.bars[0].completed, c.bars[0].failed), (3, 1));
        let last = &c.bars[MINUTES - 1];
        assert_eq!(
            (last.minute.as_str(), last.completed, last.failed),
            ("12:30", 6, 4)
        );
        assert_eq!((c.total_completed, c.total_failed), (9, 5));
        // Scale 10: the last bar fills the plot, failed stacked on completed.
        assert_eq!(last.completed_h + last.failed_h, f64::from(PLOT_H));
        assert_eq!(last.failed_y + last.failed_h, last.completed_y);
        assert_eq!(
            c.ticks.iter().map(|t| t.label).collect::<Vec<_>>(),
            [0, 5, 10]
        );
        assert!(c.bars[1..MINUTES - 1].iter().all(|b| b.completed_h == 0.0));
    }
}
