package portal

import (
	"fmt"
	"strconv"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
	"github.com/keywayhq/keyway/internal/ratelimit"
)

// The usage charts are drawn on the server as inline SVG: bars per hour (last
// 24 hours) or per day (last 7 days), stacked by outcome. They use only SVG
// geometry attributes and CSS classes from app.css, never a style attribute,
// so the page's CSP needs no 'unsafe-inline' and no script draws anything.

// outcomeInfo is how an outcome is drawn and named, bottom of a bar first.
var outcomeInfo = []struct {
	Outcome apikey.Outcome
	Class   string
	Label   string
}{
	{apikey.OutcomeOK, "ok", "OK"},
	{apikey.OutcomeForbidden, "forbidden", "Forbidden"},
	{apikey.OutcomeRateLimited, "limited", "Rate limited"},
	{apikey.OutcomeQuota, "quota", "Over quota"},
	{apikey.OutcomeInvalid, "invalid", "Invalid"},
}

// Geometry of a chart, in viewBox units.
const (
	chartW      = 480
	chartH      = 150
	plotLeft    = 44
	plotRight   = 472
	plotTop     = 12
	plotBottom  = 124
	labelBottom = 142
)

type chart struct {
	// ID makes the chart's title element addressable (aria-labelledby).
	ID      string
	Caption string
	Width   int
	Height  int
	Left    int
	Right   int
	Top     int
	Bottom  int
	LabelY  int
	AxisX   int
	MidX    int
	MidY    int
	Max     int64
	Bars    []segment
	Ticks   []tick
	Totals  []total
	Summary string
	Empty   bool
}

// segment is one outcome's part of one bar.
type segment struct {
	X, Y, W, H string
	Class      string
	Title      string
}

type tick struct {
	X     string
	Label string
}

type total struct {
	Class string
	Label string
	Count int64
}

// bucket is one bar: the counts per outcome in [Start, Start+width).
type bucket struct {
	Start  time.Time
	Counts map[apikey.Outcome]int64
}

func hourStart(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

func dayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// weekStart is the start of the oldest day of the week chart, which also
// covers the day chart.
func weekStart(now time.Time) time.Time { return dayStart(now).AddDate(0, 0, -6) }

// dayChart draws the 24 hours up to and including now's hour.
func dayChart(rows []apikey.UsageRow, now time.Time) *chart {
	first := hourStart(now).Add(-23 * time.Hour)
	bs := fill(rows, first, 24, func(t time.Time) int { return int(t.Sub(first) / time.Hour) }, func(i int) time.Time {
		return first.Add(time.Duration(i) * time.Hour)
	})
	return draw(bs, "Last 24 hours (UTC, per hour)", func(b bucket, i int) (string, bool) {
		return b.Start.Format("15:04"), i%6 == 0
	}, func(b bucket) string {
		return b.Start.Format("Jan 2 15:04") + "–" + b.Start.Add(time.Hour).Format("15:04") + " UTC"
	})
}

// weekChart draws the 7 days up to and including now's day.
func weekChart(rows []apikey.UsageRow, now time.Time) *chart {
	first := weekStart(now)
	bs := fill(rows, first, 7, func(t time.Time) int { return int(dayStart(t).Sub(first) / (24 * time.Hour)) }, func(i int) time.Time {
		return first.AddDate(0, 0, i)
	})
	return draw(bs, "Last 7 days (UTC, per day)", func(b bucket, _ int) (string, bool) {
		return b.Start.Format("Mon 2"), true
	}, func(b bucket) string {
		return b.Start.Format("Mon Jan 2") + " UTC"
	})
}

// fill sorts rows into n buckets; index maps a row's hour to its bucket.
func fill(rows []apikey.UsageRow, first time.Time, n int, index func(time.Time) int, start func(int) time.Time) []bucket {
	bs := make([]bucket, n)
	for i := range bs {
		bs[i] = bucket{Start: start(i), Counts: map[apikey.Outcome]int64{}}
	}
	for _, r := range rows {
		if r.Hour.Before(first) || r.Count <= 0 {
			continue
		}
		if i := index(r.Hour); i >= 0 && i < n {
			bs[i].Counts[r.Outcome] += r.Count
		}
	}
	return bs
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

func draw(bs []bucket, caption string, label func(bucket, int) (string, bool), span func(bucket) string) *chart {
	c := &chart{Caption: caption, Width: chartW, Height: chartH, Left: plotLeft, Right: plotRight, Top: plotTop,
		Bottom: plotBottom, LabelY: labelBottom,
		AxisX: plotLeft - 6, MidX: (plotLeft + plotRight) / 2, MidY: (plotTop + plotBottom) / 2}
	totals := map[apikey.Outcome]int64{}
	for _, b := range bs {
		var sum int64
		for o, n := range b.Counts {
			sum += n
			totals[o] += n
		}
		c.Max = max(c.Max, sum)
	}
	c.Empty = c.Max == 0
	slot := float64(plotRight-plotLeft) / float64(len(bs))
	gap := slot * 0.2
	var all int64
	for _, oi := range outcomeInfo {
		if n := totals[oi.Outcome]; n > 0 {
			c.Totals = append(c.Totals, total{Class: oi.Class, Label: oi.Label, Count: n})
			all += n
		}
	}
	// Outcomes this version does not know are still counted, as "Other".
	var other int64
	for o, n := range totals {
		if !knownOutcome(o) {
			other += n
		}
	}
	if other > 0 {
		c.Totals = append(c.Totals, total{Class: "other", Label: "Other", Count: other})
		all += other
	}
	c.Summary = fmt.Sprintf("%d requests", all)
	for i, b := range bs {
		x := float64(plotLeft) + float64(i)*slot + gap/2
		if l, ok := label(b, i); ok {
			c.Ticks = append(c.Ticks, tick{X: num(x + (slot-gap)/2), Label: l})
		}
		if c.Max == 0 {
			continue
		}
		y := float64(plotBottom)
		stack := func(class, name string, n int64) {
			if n <= 0 {
				return
			}
			h := float64(n) / float64(c.Max) * float64(plotBottom-plotTop)
			y -= h
			c.Bars = append(c.Bars, segment{X: num(x), Y: num(y), W: num(slot - gap), H: num(h), Class: class,
				Title: fmt.Sprintf("%s: %d %s", span(b), n, name)})
		}
		var other int64
		for o, n := range b.Counts {
			if !knownOutcome(o) {
				other += n
			}
		}
		for _, oi := range outcomeInfo {
			stack(oi.Class, oi.Label, b.Counts[oi.Outcome])
		}
		stack("other", "other", other)
	}
	return c
}

func knownOutcome(o apikey.Outcome) bool {
	for _, oi := range outcomeInfo {
		if oi.Outcome == o {
			return true
		}
	}
	return false
}

// rateString shows a key's rate limit the way the API writes it.
func rateString(r apikey.Rate) string {
	s := ratelimit.Limit{Count: r.Count, Period: r.Period}.String()
	if r.Burst > 0 {
		s += fmt.Sprintf(" (burst %d)", r.Burst)
	}
	return s
}
