package toolbox

import (
	"fmt"
	"html"
	"math"
	"strings"
	"time"
)

// timeBucket is one interval of a job's timeline: the messages it sent and the
// acknowledgements it received from Start for the bucket's size.
type timeBucket struct {
	Start time.Time
	Sends int
	Acks  int
}

// chartMaxBuckets keeps a timeline readable: at most this many points per line;
// chartMinBuckets keeps a short job from being a single dot: a timeline that spans fewer
// buckets of the smallest size starts that many earlier, empty.
const (
	chartMaxBuckets = 60
	chartMinBuckets = 10
)

// bucketSizes are the round steps a timeline may take, smallest first: a job that sends
// everything within a minute is drawn per second.
var bucketSizes = [...]time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
	15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute,
	15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 48 * time.Hour, 7 * 24 * time.Hour}

// chooseBuckets picks the smallest round bucket size (1 second … 1 week) that covers first
// to last in at most chartMaxBuckets buckets, aligned on the size in UTC, and returns where
// the first bucket starts and how many there are (at least chartMinBuckets, the extra ones
// before first).
func chooseBuckets(first, last time.Time) (from time.Time, size time.Duration, n int) {
	if last.Before(first) {
		last = first
	}
	for _, size = range bucketSizes {
		from = first.UTC().Truncate(size)
		n = int(last.Sub(from)/size) + 1
		if n <= chartMaxBuckets {
			if n < chartMinBuckets {
				// Pad before the first send, where nothing was sent indeed, not into a future
				// that a running job has not reached.
				from = from.Add(-time.Duration(chartMinBuckets-n) * size)
				n = chartMinBuckets
			}
			return from, size, n
		}
	}
	return from, size, min(n, 10000) // a job of more than a year: weekly, however many
}

// The chart's frame, in SVG user units, and its colours (those of toolbox.css). Sends and
// acknowledgements are two panels, one above the other, each on its own scale: a few
// acknowledgements drawn on the scale of thousands of sends would lie flat on the floor.
const (
	chartW      = 720.0
	chartLeft   = 56.0
	chartRight  = 16.0
	chartTop    = 30.0  // the sends panel's title
	sendsH      = 140.0 // the sends panel
	panelGap    = 34.0  // the acknowledgements panel's title
	acksH       = 80.0  // the acknowledgements panel
	chartBottom = 30.0  // the time axis
	chartH      = chartTop + sendsH + panelGap + acksH + chartBottom
	sendColor   = "#2f7d4f"
	ackColor    = "#6b4fbb"
	inkColor    = "#5a6272"
	lineColor   = "#e3e6ec"
)

// timelineSVG draws the buckets as an SVG chart: sends per bucket in one panel (a line over
// a light area), acknowledgements in a panel below with a scale of their own, one point per
// bucket, a shared time axis, and a tooltip (<title>) per bucket giving its exact figures.
// It needs no script.
func timelineSVG(buckets []timeBucket, size time.Duration) string {
	n := len(buckets)
	var b strings.Builder
	label := "Messages sent and acknowledgements received per " + durationWords(size)
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-testid="timeline" viewBox="0 0 %g %g" role="img" aria-labelledby="timeline-title">`, chartW, chartH)
	fmt.Fprintf(&b, `<title id="timeline-title">%s</title>`, html.EscapeString(label))
	if n == 0 {
		b.WriteString(`</svg>`)
		return b.String()
	}
	plotW := chartW - chartLeft - chartRight
	x := func(i int) float64 {
		if n == 1 {
			return chartLeft + plotW/2
		}
		return chartLeft + float64(i)*plotW/float64(n-1)
	}
	sends, acks := make([]int, n), make([]int, n)
	totalSends, totalAcks := 0, 0
	for i, k := range buckets {
		sends[i], acks[i] = k.Sends, k.Acks
		totalSends += k.Sends
		totalAcks += k.Acks
	}
	acksTop := chartTop + sendsH + panelGap
	chartPanel(&b, panel{series: "sends", title: "Sent: " + thousands(totalSends), color: sendColor, top: chartTop,
		height: sendsH, parts: 4, area: true}, sends, x)
	chartPanel(&b, panel{series: "acks", title: "Acknowledged: " + thousands(totalAcks) + " (own scale)", color: ackColor,
		top: acksTop, height: acksH, parts: 2}, acks, x)

	// Time axis, under the acknowledgements: at most 8 labels.
	base := acksTop + acksH
	layout := "15:04"
	switch {
	case size >= 24*time.Hour:
		layout = "Jan 2"
	case buckets[n-1].Start.Sub(buckets[0].Start) >= 24*time.Hour || buckets[0].Start.Day() != buckets[n-1].Start.Day():
		layout = "Jan 2 15:04"
	case size < time.Minute:
		layout = "15:04:05"
	}
	b.WriteString(`<g font-size="11" fill="` + inkColor + `">`)
	every := (n + 7) / 8
	for i := 0; i < n; i += every {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, x(i), base, x(i), base+4, inkColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x(i), base+17,
			html.EscapeString(buckets[i].Start.UTC().Format(layout)))
	}
	b.WriteString(`</g>`)

	// One hover band per bucket, over both panels, with its figures.
	band := plotW
	if n > 1 {
		band = plotW / float64(n-1)
	}
	tipLayout := "Jan 2 15:04"
	if size < time.Minute {
		tipLayout = "Jan 2 15:04:05"
	}
	for i, k := range buckets {
		left := max(x(i)-band/2, chartLeft)
		right := min(x(i)+band/2, chartLeft+plotW)
		tip := fmt.Sprintf("%s – %s UTC: %s sent, %s acknowledged", k.Start.UTC().Format(tipLayout),
			k.Start.Add(size).UTC().Format(tipLayout), thousands(k.Sends), thousands(k.Acks))
		fmt.Fprintf(&b, `<g data-testid="bucket"><title>%s</title><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="transparent"/></g>`,
			html.EscapeString(tip), left, chartTop, right-left, base-chartTop)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// panel is one series of the timeline and where it is drawn.
type panel struct {
	series, title, color string
	top, height          float64
	// parts is at most how many steps the value axis has; area fills under the line.
	parts int
	area  bool
}

// chartPanel draws one series on a value axis of its own, from 0 to a round step above its
// peak, with a titled legend above it.
func chartPanel(b *strings.Builder, p panel, values []int, x func(int) float64) {
	n := len(values)
	peak := 0
	for _, v := range values {
		peak = max(peak, v)
	}
	step := niceStep(peak, p.parts)
	top := step * int(math.Ceil(float64(max(peak, 1))/float64(step)))
	base := p.top + p.height
	y := func(v int) float64 { return base - float64(v)*p.height/float64(top) }

	fmt.Fprintf(b, `<g font-size="12" fill="#1d2330" data-testid="legend-%s"><rect x="%g" y="%g" width="10" height="10" rx="2" fill="%s"/><text x="%g" y="%g">%s</text></g>`,
		p.series, chartLeft, p.top-20, p.color, chartLeft+15, p.top-11, html.EscapeString(p.title))
	fmt.Fprintf(b, `<g font-size="11" fill="%s" data-testid="axis-%s">`, inkColor, p.series)
	for v := 0; v <= top; v += step {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, chartLeft, y(v), chartW-chartRight, y(v), lineColor)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, chartLeft-6, y(v)+4, thousands(v))
	}
	fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, chartLeft, base, chartW-chartRight, base, inkColor)
	b.WriteString(`</g>`)

	points := make([]string, n)
	for i, v := range values {
		points[i] = fmt.Sprintf("%.1f,%.1f", x(i), y(v))
	}
	if p.area {
		fmt.Fprintf(b, `<polygon points="%.1f,%.1f %s %.1f,%.1f" fill="%s" fill-opacity="0.12"/>`,
			x(0), base, strings.Join(points, " "), x(n-1), base, p.color)
	}
	fmt.Fprintf(b, `<polyline data-series="%s" points="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"/>`,
		p.series, strings.Join(points, " "), p.color)
	if n <= 30 {
		for i, v := range values {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`, x(i), y(v), p.color)
		}
	}
}

// niceStep is a round step (1, 2 or 5 × 10ⁿ) that divides 0..peak into at most parts parts.
func niceStep(peak, parts int) int {
	for step := 1; ; step *= 10 {
		for _, m := range [...]int{1, 2, 5} {
			if peak <= parts*m*step {
				return m * step
			}
		}
	}
}

// durationWords names a bucket size: "second", "5 seconds", "minute", "hour", "day", "week".
func durationWords(d time.Duration) string {
	switch {
	case d == 7*24*time.Hour:
		return "week"
	case d%(24*time.Hour) == 0:
		return pluralUnit(int(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return pluralUnit(int(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return pluralUnit(int(d/time.Minute), "minute")
	default:
		return pluralUnit(int(d/time.Second), "second")
	}
}

func pluralUnit(n int, unit string) string {
	if n == 1 {
		return unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
