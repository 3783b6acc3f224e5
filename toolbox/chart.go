package toolbox

import (
	"fmt"
	"math"
	"strconv"
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

// chartView is the timeline as the timelineChart component draws it: sends per bucket in one
// panel (a line over a light area), acknowledgements in a panel below with a scale of their
// own, one point per bucket, a shared time axis, and a tooltip per bucket giving its exact
// figures. It needs no script.
type chartView struct {
	Label   string
	ViewBox string
	Panels  []panelView
	Ticks   []chartTick
	Bands   []chartBand
	Bottom  float64 // the time axis
}

// panelView is one series drawn on a value axis of its own, from 0 to a round step above
// its peak, with a titled legend above it.
type panelView struct {
	Series, Title, Color string
	LegendY, TitleY      float64
	Grid                 []chartTick // Y and the value there
	Base                 float64
	Points, Area         string // polyline points; the filled polygon's, or ""
	Dots                 [][2]float64
}

// chartTick is a labelled place on an axis: X on the time axis, Y on a value axis.
type chartTick struct {
	X, Y  float64
	Label string
}

// chartBand is a bucket's hover band over both panels, with its figures.
type chartBand struct {
	Tip        string
	X, Y, W, H float64
}

// panel is one series of the timeline and where it is drawn.
type panel struct {
	series, title, color string
	top, height          float64
	// parts is at most how many steps the value axis has; area fills under the line.
	parts int
	area  bool
}

// timelineView lays the buckets out for the timelineChart component.
func timelineView(buckets []timeBucket, size time.Duration) chartView {
	n := len(buckets)
	v := chartView{Label: "Messages sent and acknowledgements received per " + durationWords(size),
		ViewBox: fmt.Sprintf("0 0 %g %g", chartW, chartH)}
	if n == 0 {
		return v
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
	v.Panels = []panelView{
		chartPanel(panel{series: "sends", title: "Sent: " + thousands(totalSends), color: sendColor, top: chartTop,
			height: sendsH, parts: 4, area: true}, sends, x),
		chartPanel(panel{series: "acks", title: "Acknowledged: " + thousands(totalAcks) + " (own scale)", color: ackColor,
			top: acksTop, height: acksH, parts: 2}, acks, x),
	}

	// Time axis, under the acknowledgements: at most 8 labels.
	v.Bottom = acksTop + acksH
	layout := "15:04"
	switch {
	case size >= 24*time.Hour:
		layout = "Jan 2"
	case buckets[n-1].Start.Sub(buckets[0].Start) >= 24*time.Hour || buckets[0].Start.Day() != buckets[n-1].Start.Day():
		layout = "Jan 2 15:04"
	case size < time.Minute:
		layout = "15:04:05"
	}
	every := (n + 7) / 8
	for i := 0; i < n; i += every {
		v.Ticks = append(v.Ticks, chartTick{X: x(i), Label: buckets[i].Start.UTC().Format(layout)})
	}

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
		v.Bands = append(v.Bands, chartBand{Tip: fmt.Sprintf("%s – %s UTC: %s sent, %s acknowledged", k.Start.UTC().Format(tipLayout),
			k.Start.Add(size).UTC().Format(tipLayout), thousands(k.Sends), thousands(k.Acks)),
			X: left, Y: chartTop, W: right - left, H: v.Bottom - chartTop})
	}
	return v
}

// chartPanel lays out one series on a value axis of its own.
func chartPanel(p panel, values []int, x func(int) float64) panelView {
	n := len(values)
	peak := 0
	for _, v := range values {
		peak = max(peak, v)
	}
	step := niceStep(peak, p.parts)
	top := step * int(math.Ceil(float64(max(peak, 1))/float64(step)))
	base := p.top + p.height
	y := func(v int) float64 { return base - float64(v)*p.height/float64(top) }

	pv := panelView{Series: p.series, Title: p.title, Color: p.color, LegendY: p.top - 20, TitleY: p.top - 11, Base: base}
	for v := 0; v <= top; v += step {
		pv.Grid = append(pv.Grid, chartTick{Y: y(v), Label: thousands(v)})
	}
	points := make([]string, n)
	for i, v := range values {
		points[i] = fmt.Sprintf("%.1f,%.1f", x(i), y(v))
	}
	pv.Points = strings.Join(points, " ")
	if p.area {
		pv.Area = fmt.Sprintf("%.1f,%.1f %s %.1f,%.1f", x(0), base, pv.Points, x(n-1), base)
	}
	if n <= 30 {
		for i, v := range values {
			pv.Dots = append(pv.Dots, [2]float64{x(i), y(v)})
		}
	}
	return pv
}

// coord writes a coordinate as the chart's attributes do, to a tenth.
func coord(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

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
