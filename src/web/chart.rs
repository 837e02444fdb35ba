//! Bar charts drawn as SVG on the server: the geometry here, pure and tested; the
//! template (`partials/admin/chart.html`) only places the bars.

pub struct BarView {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub class: &'static str,
    pub title: String,
}

pub struct TickView {
    pub x: i64,
    pub label: String,
}

/// Bars of an SVG chart, computed here so the template only places them.
pub struct ChartView {
    pub width: i64,
    pub height: i64,
    pub bars: Vec<BarView>,
    pub ticks: Vec<TickView>,
    pub max: i64,
}

pub const CHART_H: i64 = 160;
pub const CHART_TOP: i64 = 16;

/// A bar's height for value `v` when `max` fills the chart (rounded up: a value above 0
/// always shows).
pub fn scale(v: i64, max: i64) -> i64 {
    if max <= 0 {
        0
    } else {
        (v * CHART_H + max - 1) / max
    }
}

/// One bar of a group: its value, CSS class, and the title a pointer or screen reader gets.
pub struct Bar {
    pub value: i64,
    pub class: &'static str,
    pub title: String,
}

/// Groups of bars side by side (a month's issued, redeemed, expired…), each group under its
/// label; every `label_every`-th label is written under the axis. Negative values draw as 0.
/// The chart has room for at least [`MIN_GROUPS`] groups, so a few do not fill the page.
pub const MIN_GROUPS: usize = 12;

pub fn grouped(groups: &[(String, Vec<Bar>)], label_every: usize) -> ChartView {
    let max = groups
        .iter()
        .flat_map(|(_, bars)| bars.iter().map(|b| b.value))
        .max()
        .unwrap_or(0)
        .max(0);
    let per_group = groups
        .iter()
        .map(|(_, b)| b.len())
        .max()
        .unwrap_or(1)
        .max(1) as i64;
    let bar_w = (48 / per_group).clamp(4, 24);
    let slot = bar_w * per_group + 12;
    let mut bars = Vec::new();
    let mut ticks = Vec::new();
    for (i, (label, group)) in groups.iter().enumerate() {
        let left = 10 + i as i64 * slot;
        for (j, b) in group.iter().enumerate() {
            let h = scale(b.value.max(0), max);
            bars.push(BarView {
                x: left + j as i64 * bar_w,
                y: CHART_TOP + CHART_H - h,
                w: bar_w,
                h,
                class: b.class,
                title: b.title.clone(),
            });
        }
        if label_every > 0 && i % label_every == 0 {
            ticks.push(TickView {
                x: left + bar_w * per_group / 2,
                label: label.clone(),
            });
        }
    }
    ChartView {
        width: 20 + groups.len().max(MIN_GROUPS) as i64 * slot,
        height: CHART_TOP + CHART_H + 24,
        bars,
        ticks,
        max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(value: i64) -> Bar {
        Bar {
            value,
            class: "bar-earn",
            title: value.to_string(),
        }
    }

    #[test]
    fn the_largest_value_fills_the_chart_and_small_ones_still_show() {
        assert_eq!(scale(100, 100), CHART_H);
        assert_eq!(scale(1, 1_000_000), 1);
        assert_eq!(scale(0, 100), 0);
        assert_eq!(scale(5, 0), 0);
    }

    #[test]
    fn groups_sit_side_by_side_with_their_labels() {
        let groups = vec![
            ("2026-01".to_owned(), vec![bar(100), bar(50)]),
            ("2026-02".to_owned(), vec![bar(-20), bar(25)]),
            ("2026-03".to_owned(), vec![bar(0), bar(10)]),
        ];
        let c = grouped(&groups, 2);
        assert_eq!(c.max, 100);
        assert_eq!(c.bars.len(), 6);
        // bars of a group touch, groups are apart, nothing overlaps
        assert_eq!(c.bars[1].x, c.bars[0].x + c.bars[0].w);
        assert!(c.bars[2].x > c.bars[1].x + c.bars[1].w);
        assert!(c.bars.last().map(|b| b.x + b.w).unwrap() <= c.width);
        // heights follow the values; a negative one draws as nothing
        assert_eq!(c.bars[0].h, CHART_H);
        assert_eq!(c.bars[1].h, CHART_H / 2);
        assert_eq!(c.bars[2].h, 0);
        assert_eq!(c.bars[0].y + c.bars[0].h, CHART_TOP + CHART_H);
        // every second label
        let labels: Vec<&str> = c.ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["2026-01", "2026-03"]);
    }

    #[test]
    fn an_empty_chart_has_room_and_no_bars() {
        let c = grouped(&[], 1);
        assert!(c.bars.is_empty());
        assert_eq!(
            c.width,
            grouped(&[("2026-01".to_owned(), vec![bar(1)])], 1).width
        );
        assert_eq!(c.max, 0);
    }
}
