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

// chartMaxBuckets keeps a timeline readable: at most this many points per line.
const chartMaxBuckets = 60

// chooseBuckets picks the smallest round bucket size (1 minute … 1 week) that covers first
// to last in at most chartMaxBuckets buckets, aligned on the size in UTC, and returns where
// the first bucket starts and how many there are.
func chooseBuckets(first, last time.Time) (from time.Time, size time.Duration, n int) {
	if last.Before(first) {
		last = first
	}
	sizes := [...]time.Duration{time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
		30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour,
		48 * time.Hour, 7 * 24 * time.Hour}
	for _, size = range sizes {
		from = first.UTC().Truncate(size)
		n = int(last.Sub(from)/size) + 1
		if n <= chartMaxBuckets {
			return from, size, n
		}
	}
	return from, size, min(n, 10000) // a job of more than a year: weekly, however many
}

// The chart's frame, in SVG user units, and its colours (those of toolbox.css).
const (
	chartW      = 720.0
	chartH      = 260.0
	chartLeft   = 56.0
	chartRight  = 16.0
	chartTop    = 36.0
	chartBottom = 30.0
	sendColor   = "#2f7d4f"
	ackColor    = "#6b4fbb"
	inkColor    = "#5a6272"
	lineColor   = "#e3e6ec"
)

// timelineSVG draws the buckets as an SVG chart: a line (over a light area) of sends and
// one of acknowledgements, one point per bucket, with value and time axes, a legend, and a
// tooltip (<title>) per bucket giving its exact figures. It needs no script.
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
	peak := 0
	for _, k := range buckets {
		peak = max(peak, k.Sends, k.Acks)
	}
	step := niceStep(peak)
	top := step * int(math.Ceil(float64(max(peak, 1))/float64(step)))
	plotW, plotH := chartW-chartLeft-chartRight, chartH-chartTop-chartBottom
	base := chartTop + plotH
	x := func(i int) float64 {
		if n == 1 {
			return chartLeft + plotW/2
		}
		return chartLeft + float64(i)*plotW/float64(n-1)
	}
	y := func(v int) float64 { return base - float64(v)*plotH/float64(top) }

	// Value axis: grid lines and labels.
	b.WriteString(`<g font-size="11" fill="` + inkColor + `">`)
	for v := 0; v <= top; v += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, chartLeft, y(v), chartLeft+plotW, y(v), lineColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`, chartLeft-6, y(v)+4, thousands(v))
	}
	// Time axis: at most 8 labels.
	layout := "15:04"
	switch {
	case size >= 24*time.Hour:
		layout = "Jan 2"
	case buckets[n-1].Start.Sub(buckets[0].Start) >= 24*time.Hour || buckets[0].Start.Day() != buckets[n-1].Start.Day():
		layout = "Jan 2 15:04"
	}
	every := (n + 7) / 8
	for i := 0; i < n; i += every {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, x(i), base, x(i), base+4, inkColor)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x(i), base+17,
			html.EscapeString(buckets[i].Start.UTC().Format(layout)))
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`, chartLeft, base, chartLeft+plotW, base, inkColor)
	b.WriteString(`</g>`)

	// The lines, sends over a light area.
	sends, acks := make([]string, n), make([]string, n)
	for i, k := range buckets {
		sends[i] = fmt.Sprintf("%.1f,%.1f", x(i), y(k.Sends))
		acks[i] = fmt.Sprintf("%.1f,%.1f", x(i), y(k.Acks))
	}
	fmt.Fprintf(&b, `<polygon points="%.1f,%.1f %s %.1f,%.1f" fill="%s" fill-opacity="0.12"/>`,
		x(0), base, strings.Join(sends, " "), x(n-1), base, sendColor)
	fmt.Fprintf(&b, `<polyline data-series="sends" points="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"/>`,
		strings.Join(sends, " "), sendColor)
	fmt.Fprintf(&b, `<polyline data-series="acks" points="%s" fill="none" stroke="%s" stroke-width="2" stroke-linejoin="round"/>`,
		strings.Join(acks, " "), ackColor)
	if n <= 30 {
		for i, k := range buckets {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/><circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"/>`,
				x(i), y(k.Sends), sendColor, x(i), y(k.Acks), ackColor)
		}
	}

	// One hover band per bucket with its figures.
	band := plotW
	if n > 1 {
		band = plotW / float64(n-1)
	}
	for i, k := range buckets {
		left := max(x(i)-band/2, chartLeft)
		right := min(x(i)+band/2, chartLeft+plotW)
		tip := fmt.Sprintf("%s – %s UTC: %s sent, %s acknowledged", k.Start.UTC().Format("Jan 2 15:04"),
			k.Start.Add(size).UTC().Format("Jan 2 15:04"), thousands(k.Sends), thousands(k.Acks))
		fmt.Fprintf(&b, `<g data-testid="bucket"><title>%s</title><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="transparent"/></g>`,
			html.EscapeString(tip), left, chartTop, right-left, plotH)
	}

	// Legend.
	fmt.Fprintf(&b, `<g font-size="12" fill="#1d2330"><rect x="%g" y="12" width="10" height="10" rx="2" fill="%s"/><text x="%g" y="21">Sent</text>`+
		`<rect x="%g" y="12" width="10" height="10" rx="2" fill="%s"/><text x="%g" y="21">Acknowledged</text></g>`,
		chartLeft, sendColor, chartLeft+15, chartLeft+70, ackColor, chartLeft+85)
	b.WriteString(`</svg>`)
	return b.String()
}

// niceStep is a round step (1, 2 or 5 × 10ⁿ) that divides 0..peak into at most 5 parts.
func niceStep(peak int) int {
	for step := 1; ; step *= 10 {
		for _, m := range [...]int{1, 2, 5} {
			if peak <= 5*m*step {
				return m * step
			}
		}
	}
}

// durationWords names a bucket size: "minute", "5 minutes", "hour", "day", "week".
func durationWords(d time.Duration) string {
	switch {
	case d == 7*24*time.Hour:
		return "week"
	case d%(24*time.Hour) == 0:
		return pluralUnit(int(d/(24*time.Hour)), "day")
	case d%time.Hour == 0:
		return pluralUnit(int(d/time.Hour), "hour")
	default:
		return pluralUnit(int(d/time.Minute), "minute")
	}
}

func pluralUnit(n int, unit string) string {
	if n == 1 {
		return unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
