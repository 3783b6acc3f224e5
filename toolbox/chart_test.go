package toolbox

import (
	"context"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chartParts parses an SVG and returns the points of each polyline by data-series, the
// number of <title>s and the texts.
func chartParts(t *testing.T, svg string) (series map[string][]string, titles int, texts []string) {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(svg))
	series = map[string][]string{}
	var inText, root bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, svg)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if !root {
				if el.Name.Local != "svg" || el.Name.Space != "http://www.w3.org/2000/svg" {
					t.Fatalf("root %v, want svg in the SVG namespace", el.Name)
				}
				root = true
			}
			switch el.Name.Local {
			case "polyline":
				var name, points string
				for _, a := range el.Attr {
					switch a.Name.Local {
					case "data-series":
						name = a.Value
					case "points":
						points = a.Value
					}
				}
				series[name] = strings.Fields(points)
			case "title":
				titles++
			case "text":
				inText = true
			}
		case xml.EndElement:
			inText = false
		case xml.CharData:
			if inText {
				texts = append(texts, string(el))
			}
		}
	}
	return series, titles, texts
}

func TestTimelineSVGHasOnePointPerBucket(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	for _, n := range []int{1, 2, 7, 60} {
		buckets := make([]timeBucket, n)
		for i := range buckets {
			buckets[i] = timeBucket{Start: t0.Add(time.Duration(i) * 5 * time.Minute), Sends: 1000 + i*37, Acks: i * 3}
		}
		svg := timelineSVG(buckets, 5*time.Minute)
		series, titles, texts := chartParts(t, svg)
		if len(series["sends"]) != n || len(series["acks"]) != n {
			t.Errorf("%d buckets: %d send points, %d ack points", n, len(series["sends"]), len(series["acks"]))
		}
		if titles != n+1 {
			t.Errorf("%d buckets: %d titles, want one per bucket and the chart's", n, titles)
		}
		all := strings.Join(texts, "|")
		if !strings.Contains(all, "Sent") || !strings.Contains(all, "Acknowledged") || !strings.Contains(all, "10:00") {
			t.Errorf("%d buckets: legend or time axis missing: %s", n, all)
		}
		if !strings.Contains(all, "|0|") && !strings.HasPrefix(all, "0|") {
			t.Errorf("%d buckets: value axis does not start at 0: %s", n, all)
		}
		if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
			t.Errorf("%d buckets: %s", n, svg)
		}
	}
	// The highest point is at the top of the scale or below it, never above the frame.
	series, _, _ := chartParts(t, timelineSVG([]timeBucket{{Start: t0, Sends: 7}, {Start: t0.Add(time.Minute), Sends: 0}}, time.Minute))
	for _, p := range series["sends"] {
		_, ys, _ := strings.Cut(p, ",")
		if y, err := strconv.ParseFloat(ys, 64); err != nil || y < chartTop || y > chartH-chartBottom {
			t.Errorf("point %q outside the plot", p)
		}
	}
}

func TestTimelineSVGTooltipsGiveTheFigures(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	svg := timelineSVG([]timeBucket{{Start: t0, Sends: 12345, Acks: 67}}, time.Hour)
	if !strings.Contains(svg, "Jan 2 10:00 – Jan 2 11:00 UTC: 12,345 sent, 67 acknowledged") {
		t.Errorf("tooltip missing: %s", svg)
	}
	if _, titles, _ := chartParts(t, timelineSVG(nil, time.Minute)); titles != 1 {
		t.Error("an empty chart is not a valid, titled SVG")
	}
}

func TestChooseBucketsFitsTheSpan(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 10, 7, 30, 0, time.UTC)
	for _, tc := range []struct {
		span time.Duration
		size time.Duration
		n    int
		from time.Time
	}{
		// A job done in an instant or within a minute is drawn per second, over at least
		// chartMinBuckets seconds: never a single dot.
		{0, time.Second, chartMinBuckets, t0.Add(-(chartMinBuckets - 1) * time.Second)},
		{3 * time.Second, time.Second, chartMinBuckets, t0.Add(-(chartMinBuckets - 4) * time.Second)},
		{40 * time.Second, time.Second, 41, t0},
		{90 * time.Second, 2 * time.Second, 46, t0},
		{10 * time.Minute, 15 * time.Second, 41, t0},
		{30 * time.Minute, time.Minute, 31, time.Date(2030, 1, 2, 10, 7, 0, 0, time.UTC)},
		{2 * time.Hour, 5 * time.Minute, 25, time.Date(2030, 1, 2, 10, 5, 0, 0, time.UTC)},
		{72 * time.Hour, 2 * time.Hour, 37, time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)},
		{100 * 24 * time.Hour, 48 * time.Hour, 51, time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)},
		{2 * 365 * 24 * time.Hour, 7 * 24 * time.Hour, 105, time.Date(2029, 12, 31, 0, 0, 0, 0, time.UTC)},
	} {
		from, size, n := chooseBuckets(t0, t0.Add(tc.span))
		if size != tc.size || n != tc.n || !from.Equal(tc.from) {
			t.Errorf("span %v: from %v size %v n %d, want %v %v %d", tc.span, from, size, n, tc.from, tc.size, tc.n)
		}
		if end := from.Add(time.Duration(n) * size); end.Before(t0.Add(tc.span)) || n > chartMaxBuckets && size < 7*24*time.Hour {
			t.Errorf("span %v: buckets end %v (%d of them): the span's end left out, or too many", tc.span, end, n)
		}
	}
	if _, _, n := chooseBuckets(t0, t0.Add(-time.Hour)); n != chartMinBuckets {
		t.Errorf("last before first: %d buckets", n)
	}
}

// TestTimelineAcknowledgementsHaveTheirOwnScale: 3 acknowledgements beside thousands of
// sends reach the top of their own panel instead of lying on the sends' floor, and each
// panel's legend gives its total.
func TestTimelineAcknowledgementsHaveTheirOwnScale(t *testing.T) {
	t0 := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	buckets := []timeBucket{{Start: t0, Sends: 9000}, {Start: t0.Add(time.Second), Sends: 824, Acks: 3}, {Start: t0.Add(2 * time.Second)}}
	svg := timelineSVG(buckets, time.Second)
	series, _, texts := chartParts(t, svg)
	y := func(p string) float64 {
		_, ys, _ := strings.Cut(p, ",")
		v, err := strconv.ParseFloat(ys, 64)
		if err != nil {
			t.Fatalf("point %q: %v", p, err)
		}
		return v
	}
	acksTop, acksBase := chartTop+sendsH+panelGap, chartTop+sendsH+panelGap+acksH
	if len(series["acks"]) != 3 {
		t.Fatalf("ack points %v", series["acks"])
	}
	if got := y(series["acks"][1]); got < acksTop || got > acksTop+acksH/4 {
		t.Errorf("3 acknowledgements drawn at y=%v: want near the top of their panel (%v..%v)", got, acksTop, acksBase)
	}
	if got := y(series["acks"][0]); got != acksBase {
		t.Errorf("no acknowledgements drawn at y=%v, want the panel's floor %v", got, acksBase)
	}
	if got := y(series["sends"][0]); got < chartTop || got > chartTop+sendsH/4 {
		t.Errorf("the peak of sends drawn at y=%v, want near the top of its panel", got)
	}
	for _, p := range series["sends"] {
		if y(p) > chartTop+sendsH {
			t.Errorf("a send point %q below the sends' panel", p)
		}
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"Sent: 9,824", "Acknowledged: 3", "10:00:01"} {
		if !strings.Contains(all, want) {
			t.Errorf("chart texts lack %q: %s", want, all)
		}
	}
	if !strings.Contains(svg, "Jan 2 10:00:01 – Jan 2 10:00:02 UTC: 824 sent, 3 acknowledged") {
		t.Errorf("a second's tooltip does not give its seconds: %s", svg)
	}
	if got := durationWords(time.Second); got != "second" {
		t.Errorf("durationWords(1s) = %q", got)
	}
	if got := durationWords(15 * time.Second); got != "15 seconds" {
		t.Errorf("durationWords(15s) = %q", got)
	}
}

func TestAckRateIsNeverRoundedAway(t *testing.T) {
	for _, tc := range []struct {
		received, sent int
		want           string
	}{
		{0, 0, "–"},
		{0, 9824, "0.0%"},
		{3, 9824, "0.03%"},
		{1, 1_000_000, "0.0001%"},
		{1, 3, "33.3%"},
		{2, 8, "25.0%"},
		{9823, 9824, "99.99%"},
		{9824, 9824, "100.0%"},
	} {
		if got := ackRate(tc.received, tc.sent); got != tc.want {
			t.Errorf("ackRate(%d, %d) = %q, want %q", tc.received, tc.sent, got, tc.want)
		}
	}
}

// timelineSVG renders the timeline component as the report shows it.
func timelineSVG(buckets []timeBucket, size time.Duration) string {
	var b strings.Builder
	if err := timelineChart(timelineView(buckets, size)).Render(context.Background(), &b); err != nil {
		panic(err)
	}
	return b.String()
}
