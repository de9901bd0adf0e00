package portal

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keywayhq/keyway/internal/apikey"
)

func renderChart(t *testing.T, c *chart) string {
	t.Helper()
	as, err := loadAssets()
	if err != nil {
		t.Fatal(err)
	}
	pages, err := parsePages(as)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := pages["keys"].ExecuteTemplate(&b, "chart", c); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var rectRE = regexp.MustCompile(`<rect class="bar ([a-z]+)" x="([0-9.]+)" y="([0-9.]+)" width="([0-9.]+)" height="([0-9.]+)"><title>([^<]*)</title></rect>`)

func TestDayChart(t *testing.T) {
	c := dayChart(sampleUsage(), testNow)
	c.ID = "k-day"
	if c.Empty || c.Max != 45 {
		t.Fatalf("Max %d Empty %v, want 45 false", c.Max, c.Empty)
	}
	// The 30-hour-old and 5-day-old rows fall outside the 24 hours.
	if c.Summary != "59 requests" {
		t.Errorf("Summary %q", c.Summary)
	}
	if len(c.Ticks) != 4 || c.Ticks[0].Label != "16:00" || c.Ticks[3].Label != "10:00" {
		t.Errorf("ticks %+v", c.Ticks)
	}
	svg := renderChart(t, c)
	rects := rectRE.FindAllStringSubmatch(svg, -1)
	if len(rects) != 4 {
		t.Fatalf("%d bars, want 4:\n%s", len(rects), svg)
	}
	// The newest hour: 40 OK at the bottom, 5 rate-limited on top, full height.
	ok, limited := rects[2], rects[3]
	if ok[1] != "ok" || limited[1] != "limited" {
		t.Fatalf("classes %s %s", ok[1], limited[1])
	}
	f := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	if y, h := f(ok[3]), f(ok[5]); y+h != plotBottom {
		t.Errorf("ok bar does not stand on the axis: y %v h %v", y, h)
	}
	if top := f(limited[3]); top != plotTop {
		t.Errorf("tallest bar reaches %v, want %d", top, plotTop)
	}
	if !strings.Contains(ok[6], "15:00–16:00 UTC: 40 OK") {
		t.Errorf("bar title %q", ok[6])
	}
	for _, w := range []string{`viewBox="0 0 480 150"`, `role="img"`, `aria-labelledby="k-day-title"`, `<title id="k-day-title">`,
		`class="swatch ok"`, "OK: 52", "Rate limited: 5", "Invalid: 2"} {
		if !strings.Contains(svg, w) {
			t.Errorf("chart lacks %q", w)
		}
	}
	if strings.Contains(svg, "style=") || strings.Contains(svg, "No requests") {
		t.Errorf("chart has a style attribute or says empty:\n%s", svg)
	}
}

func TestWeekChart(t *testing.T) {
	c := weekChart(sampleUsage(), testNow)
	if len(c.Ticks) != 7 || c.Ticks[6].Label != "Sat 14" || c.Ticks[0].Label != "Sun 8" {
		t.Errorf("ticks %+v", c.Ticks)
	}
	// Every row is within the week; unknown outcomes count as "Other".
	if c.Summary != "70 requests" {
		t.Errorf("Summary %q", c.Summary)
	}
	svg := renderChart(t, c)
	if !strings.Contains(svg, `class="bar other"`) || !strings.Contains(svg, "Other: 1") || !strings.Contains(svg, `class="bar quota"`) {
		t.Errorf("week chart lacks the unknown or quota outcome:\n%s", svg)
	}
	// A row older than the week is left out.
	old := []apikey.UsageRow{{Hour: testNow.AddDate(0, 0, -8), Outcome: apikey.OutcomeOK, Count: 9}}
	if c := weekChart(old, testNow); !c.Empty {
		t.Error("an 8-day-old row was charted")
	}
}

func TestEmptyChart(t *testing.T) {
	for name, c := range map[string]*chart{"day": dayChart(nil, testNow), "week": weekChart(nil, testNow)} {
		c.ID = "empty-" + name
		svg := renderChart(t, c)
		if !c.Empty || c.Summary != "0 requests" {
			t.Errorf("%s: Empty %v Summary %q", name, c.Empty, c.Summary)
		}
		if !strings.Contains(svg, "<svg") || !strings.Contains(svg, "No requests") || strings.Contains(svg, "<rect") {
			t.Errorf("%s: empty chart:\n%s", name, svg)
		}
		if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
			t.Errorf("%s: bad numbers:\n%s", name, svg)
		}
	}
}

func TestChartWindowAtMidnight(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC)
	rows := []apikey.UsageRow{
		{Hour: time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC), Outcome: apikey.OutcomeOK, Count: 1},
		{Hour: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Outcome: apikey.OutcomeOK, Count: 2},
	}
	if c := dayChart(rows, now); c.Summary != "3 requests" || c.Max != 2 {
		t.Errorf("day: %q max %d", c.Summary, c.Max)
	}
	if c := weekChart(rows, now); c.Summary != "3 requests" || len(c.Bars) != 2 {
		t.Errorf("week: %q bars %d", c.Summary, len(c.Bars))
	}
}
