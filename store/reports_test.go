package store

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// reportJob is a job of six known deliveries (see newReportJob).
type reportJob struct {
	key       int64
	issuer    int64
	t0        time.Time
	consumers map[string]int64 // by first name
	reply     *rewards.AwardRule
	click     *rewards.AwardRule
}

// newReportJob stores six consumers and a job to all of them with a reply rule (10 points)
// and a click rule (5 points), then records what happened, from t0 = 2030-01-02 10:00 UTC:
//
//	ann  US f html golf;tennis plan=gold   1980  sent 10:00, replied 10:05, clicked 10:12
//	bob  US m text golf        plan=silver 1990  sent 10:01
//	cy   FR f text tennis      plan=gold         sent 10:02, clicked 10:11
//	di   FR   html                               sent 10:10
//	ed   DE m text                               rejected
//	fy   DE f text                               pending
func newReportJob(t *testing.T, s *Store) reportJob {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	people := []rewards.Consumer{
		{Email: "ann@example.com", FirstName: "ann", Country: "US", Gender: "f", Format: "html", Interests: []string{"golf", "tennis"}, Attributes: map[string]string{"plan": "gold"}, BirthYear: 1980},
		{Email: "bob@example.com", FirstName: "bob", Country: "US", Gender: "m", Format: "text", Interests: []string{"golf"}, Attributes: map[string]string{"plan": "silver"}, BirthYear: 1990},
		{Email: "cy@example.com", FirstName: "cy", Country: "FR", Gender: "f", Format: "text", Interests: []string{"tennis"}, Attributes: map[string]string{"plan": "gold"}},
		{Email: "di@example.com", FirstName: "di", Country: "FR", Format: "html"},
		{Email: "ed@example.com", FirstName: "ed", Country: "DE", Gender: "m", Format: "text"},
		{Email: "fy@example.com", FirstName: "fy", Country: "DE", Gender: "f", Format: "text"},
	}
	if _, _, err := s.UpsertConsumers(ctx, people); err != nil {
		t.Fatal(err)
	}
	iss, err := s.EnsureIssuer(ctx, "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	rj := reportJob{issuer: iss.ID, t0: t0, consumers: map[string]int64{},
		reply: &rewards.AwardRule{Type: "reply", Points: 10, Frequency: "once"},
		click: &rewards.AwardRule{Type: "click", Points: 5, Frequency: "once"}}
	job := &postoffice.Job{IssuerID: iss.ID, Name: "spring", State: postoffice.JobRunning, Start: t0.Add(-time.Hour),
		Stop: t0.Add(24 * time.Hour), ClientCount: 100,
		Selection: `{"all":[{"field":"country","op":"in","value":["US","FR","DE"]},{"field":"interests","op":"not in","value":["chess"]}]}`}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil,
		postoffice.JobRules{New: []*rewards.AwardRule{rj.reply, rj.click}}); err != nil {
		t.Fatal(err)
	}
	rj.key = job.Key
	if n, _, err := s.SelectBatch(ctx, job, false, 100); err != nil || n != len(people) {
		t.Fatalf("selected %d, %v; want %d", n, err, len(people))
	}
	recips, err := s.DueRecipients(ctx, job.Key, 0, t0.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recips {
		rj.consumers[r.Consumer.FirstName] = r.Consumer.ID
	}
	var outcomes []postoffice.Outcome
	for _, r := range recips {
		o := postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeSent}
		switch r.Consumer.FirstName {
		case "ann":
			o.At = t0
		case "bob":
			o.At = t0.Add(time.Minute)
		case "cy":
			o.At = t0.Add(2 * time.Minute)
		case "di":
			o.At = t0.Add(10 * time.Minute)
		case "ed":
			o = postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeRejected, At: t0, Error: "550 5.1.1 no such user"}
		default:
			continue
		}
		outcomes = append(outcomes, o)
	}
	if err := s.RecordOutcomes(ctx, outcomes); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		who string
		ch  postoffice.Channel
		at  time.Duration
	}{{"ann", postoffice.ChannelReply, 5 * time.Minute}, {"cy", postoffice.ChannelClick, 11 * time.Minute}, {"ann", postoffice.ChannelClick, 12 * time.Minute}} {
		if _, err := s.Acknowledge(ctx, postoffice.Ack{JobKey: job.Key, ConsumerID: rj.consumers[a.who], Channel: a.ch, At: t0.Add(a.at)}); err != nil {
			t.Fatal(err)
		}
	}
	return rj
}

func TestJobTimelineCountsSendsAndAcknowledgementsByBucket(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	rj := newReportJob(t, s)
	first, last, err := s.JobSpan(ctx, rj.key)
	if err != nil || !first.Equal(rj.t0) || !last.Equal(rj.t0.Add(11*time.Minute)) {
		t.Fatalf("span %v – %v, %v; want 10:00 – 10:11 (the last receipt)", first, last, err)
	}
	sends, acks, err := s.JobTimeline(ctx, rj.key, rj.t0, 5*time.Minute, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{3, 0, 1}; !equalInts(sends, want) {
		t.Errorf("sends %v, want %v", sends, want)
	}
	// ann's click at 10:12 does not move her receipt (10:05): a delivery is received once.
	if want := []int{0, 1, 1}; !equalInts(acks, want) {
		t.Errorf("acks %v, want %v", acks, want)
	}
	// Buckets that leave some out count only what falls in them.
	sends, acks, err = s.JobTimeline(ctx, rj.key, rj.t0.Add(time.Minute), time.Minute, 2)
	if err != nil || !equalInts(sends, []int{1, 1}) || !equalInts(acks, []int{0, 0}) {
		t.Errorf("10:01-10:03: sends %v acks %v, %v", sends, acks, err)
	}
	if _, _, err := s.JobTimeline(ctx, rj.key, rj.t0, 0, 3); err == nil {
		t.Error("a zero bucket is accepted")
	}
	if _, _, err := s.JobTimeline(ctx, rj.key, rj.t0, time.Minute, 0); err == nil {
		t.Error("zero buckets are accepted")
	}
	// A job that has sent nothing has no span.
	other := &postoffice.Job{IssuerID: rj.issuer, Name: "later", Start: rj.t0, Stop: rj.t0.Add(time.Hour), ClientCount: 1}
	if err := s.CreateJob(ctx, other, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	if first, last, err := s.JobSpan(ctx, other.Key); err != nil || !first.IsZero() || !last.IsZero() {
		t.Errorf("span of an unsent job: %v – %v, %v", first, last, err)
	}
}

func TestJobCountsByGroupsByConsumerField(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	rj := newReportJob(t, s)
	type c = postoffice.JobCounts
	for _, tc := range []struct {
		field string
		limit int
		want  map[string]c
	}{
		{"format", 10, map[string]c{"html": {Total: 2, Sent: 2, Received: 1}, "text": {Total: 4, Sent: 2, Received: 1}}},
		{"format", 1, map[string]c{"text": {Total: 4, Sent: 2, Received: 1}}},
		{"country", 10, map[string]c{"US": {Total: 2, Sent: 2, Received: 1}, "FR": {Total: 2, Sent: 2, Received: 1}, "DE": {Total: 2}}},
		{"country", 1, map[string]c{"DE": {Total: 2}}}, // a tie goes to the first value
		{"gender", 10, map[string]c{"f": {Total: 3, Sent: 2, Received: 2}, "m": {Total: 2, Sent: 1}, "": {Total: 1, Sent: 1}}},
		{"interests", 10, map[string]c{"golf": {Total: 2, Sent: 2, Received: 1}, "tennis": {Total: 2, Sent: 2, Received: 2}, "": {Total: 3, Sent: 1}}},
		{"interests", 2, map[string]c{"": {Total: 3, Sent: 1}, "golf": {Total: 2, Sent: 2, Received: 1}}},
		{"attr.plan", 10, map[string]c{"gold": {Total: 2, Sent: 2, Received: 2}, "silver": {Total: 1, Sent: 1}, "": {Total: 3, Sent: 1}}},
		{"birth_year", 10, map[string]c{"1980": {Total: 1, Sent: 1, Received: 1}, "1990": {Total: 1, Sent: 1}, "": {Total: 4, Sent: 2, Received: 1}}},
	} {
		got, err := s.JobCountsBy(ctx, rj.key, tc.field, tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.field, err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s limit %d: %v, want %v", tc.field, tc.limit, got, tc.want)
			continue
		}
		for v, w := range tc.want {
			if got[v] != w {
				t.Errorf("%s = %q: %+v, want %+v", tc.field, v, got[v], w)
			}
		}
	}
	for _, bad := range []string{"password", "c.email; DROP TABLE x", "attr.", `attr.a"b`, ""} {
		if _, err := s.JobCountsBy(ctx, rj.key, bad, 10); err == nil {
			t.Errorf("field %q accepted", bad)
		}
	}
	if _, err := s.JobCountsBy(ctx, rj.key, "country", 0); err == nil {
		t.Error("limit 0 accepted")
	}
}

func TestJobPointsChannelsAndRulePoints(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	rj := newReportJob(t, s)
	points, err := s.JobPoints(ctx, []int64{rj.key, rj.key + 100})
	if err != nil || len(points) != 1 || points[rj.key] != 20 {
		t.Fatalf("points %v, %v; want job %d: 20 (10 reply + 5 + 5 click) and no other", points, err, rj.key)
	}
	receipts, err := s.JobReceipts(ctx, []int64{rj.key, rj.key + 100})
	if err != nil || receipts[rj.key] != (postoffice.JobCounts{Sent: 4, Received: 2}) || len(receipts) != 2 {
		t.Errorf("receipts %v, %v; want job %d: 4 sent, 2 received", receipts, err, rj.key)
	}
	if p, err := s.JobPoints(ctx, nil); err != nil || len(p) != 0 {
		t.Errorf("no jobs: %v, %v", p, err)
	}
	byRule, err := s.JobRulePoints(ctx, rj.key)
	if err != nil || byRule[rj.reply.ID] != 10 || byRule[rj.click.ID] != 10 || len(byRule) != 2 {
		t.Errorf("by rule %v, %v; want reply 10, click 10", byRule, err)
	}
	ch, err := s.JobChannels(ctx, rj.key)
	if err != nil || ch[postoffice.ChannelReply] != 1 || ch[postoffice.ChannelClick] != 2 {
		t.Errorf("channels %v, %v; want 1 reply, 2 clicks (ann and cy)", ch, err)
	}
	if settled, earners, err := s.JobSettlement(ctx, rj.key); err != nil || settled != 0 || earners != 2 {
		t.Errorf("settlement %d to %d consumers, %v; want none settled of ann's and cy's", settled, earners, err)
	}
	if _, err := s.Settle(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if settled, earners, err := s.JobSettlement(ctx, rj.key); err != nil || settled != 20 || earners != 2 {
		t.Errorf("after settling: %d to %d consumers, %v; want 20 to 2", settled, earners, err)
	}
	if settled, earners, err := s.JobSettlement(ctx, rj.key+100); err != nil || settled != 0 || earners != 0 {
		t.Errorf("a job without accruals: %d to %d, %v", settled, earners, err)
	}
	if err := s.SetIssuerBudget(ctx, rj.issuer, 500); err != nil {
		t.Fatal(err)
	}
	if budget, spent, err := s.IssuerBudget(ctx, rj.issuer); err != nil || budget != 500 || spent != 20 {
		t.Errorf("budget %d spent %d, %v; want 500 and 20", budget, spent, err)
	}
	if _, _, err := s.IssuerBudget(ctx, 999); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("missing issuer: %v", err)
	}
}

func TestExportDeliveriesWalksEveryDelivery(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	rj := newReportJob(t, s)
	var names []string
	got := map[string]struct {
		d      postoffice.Delivery
		c      rewards.Consumer
		points int64
	}{}
	err := s.ExportDeliveries(ctx, rj.key, func(d *postoffice.Delivery, c *rewards.Consumer, points int64) error {
		names = append(names, c.FirstName)
		got[c.FirstName] = struct {
			d      postoffice.Delivery
			c      rewards.Consumer
			points int64
		}{*d, *c, points}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "ann,bob,cy,di,ed,fy" {
		t.Fatalf("order %v, want consumer order", names)
	}
	ann := got["ann"]
	if !ann.d.Sent || !ann.d.Received || !ann.d.SentAt.Equal(rj.t0) || !ann.d.ReceivedAt.Equal(rj.t0.Add(5*time.Minute)) ||
		ann.points != 15 || ann.c.Email != "ann@example.com" || ann.c.Format != "html" {
		t.Errorf("ann: %+v", ann)
	}
	if ed := got["ed"]; !ed.d.Rejected || ed.d.Sent || ed.d.LastError == "" || ed.points != 0 {
		t.Errorf("ed: %+v", ed)
	}
	if cy := got["cy"]; cy.points != 5 {
		t.Errorf("cy: %d points, want 5", cy.points)
	}
	stop := errors.New("enough")
	n := 0
	if err := s.ExportDeliveries(ctx, rj.key, func(*postoffice.Delivery, *rewards.Consumer, int64) error {
		n++
		return stop
	}); !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn's error: %v after %d rows", err, n)
	}
}

// queryPlan is how the engine would run q: SQLite's EXPLAIN QUERY PLAN, or PostgreSQL's
// EXPLAIN with sequential scans set aside, so that the tests' small tables still show
// whether an index can serve q.
func queryPlan(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	tx, err := s.read.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if s.engine == enginePostgres {
		if _, err := tx.Exec(`SET LOCAL enable_seqscan = off`); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := tx.Query(s.either(`EXPLAIN QUERY PLAN `, `EXPLAIN `)+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		dest := []any{&id, &parent, &unused, &detail}
		if s.engine == enginePostgres {
			dest = []any{&detail}
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, strings.TrimSpace(detail))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}

// TestReportQueriesUseIndexes keeps the report's reads on indexes that start with the job:
// without them each reads the whole table (acknowledgements, accruals) or every delivery of
// the job and sorts them.
func TestReportQueriesUseIndexes(t *testing.T) {
	s := openTest(t)
	for q, want := range map[string]string{
		`SELECT count(*) FROM deliveries WHERE job_key = 1 AND sent_at >= 1 AND sent_at < 2`:                   "COVERING INDEX deliveries_sent_at",
		`SELECT count(*) FROM deliveries WHERE job_key = 1 AND received_at >= 1 AND received_at < 2`:           "COVERING INDEX deliveries_received_at",
		`SELECT min(sent_at) FROM deliveries WHERE job_key = 1 AND sent_at IS NOT NULL`:                        "deliveries_sent_at",
		`SELECT max(received_at) FROM deliveries WHERE job_key = 1 AND received_at IS NOT NULL`:                "deliveries_received_at",
		`SELECT channel, count(DISTINCT consumer_id) FROM acknowledgements WHERE job_key = 1 GROUP BY channel`: "COVERING INDEX acknowledgements_job",
		`SELECT count(*) FROM deliveries WHERE job_key = 1 AND sent_at IS NOT NULL`:                            "COVERING INDEX deliveries_sent_at",
		`SELECT count(*) FROM deliveries WHERE job_key = 1 AND received_at IS NOT NULL`:                        "COVERING INDEX deliveries_received_at",
		`SELECT rule_id, sum(points) FROM accruals WHERE job_key = 1 GROUP BY rule_id`:                         "COVERING INDEX accruals_job",
		`SELECT job_key, sum(points) FROM accruals WHERE job_key IN (1, 2) GROUP BY job_key`:                   "COVERING INDEX accruals_job",
	} {
		p := queryPlan(t, s, q)
		if s.engine == enginePostgres {
			// PostgreSQL names the index it scans, covering or not.
			want = want[strings.LastIndexByte(want, ' ')+1:]
		}
		if !strings.Contains(p, want) || strings.Contains(p, "Seq Scan") {
			t.Errorf("%s\nplan: %s\nwant %s", q, p, want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkJobTimeline measures the job report's reads on a job of a million deliveries
// (POINTPOST_BIG=1; building it takes some seconds):
//
//	POINTPOST_BIG=1 go test -run '^$' -bench JobTimeline -benchtime 10x ./store/
func BenchmarkJobTimeline(b *testing.B) {
	if os.Getenv("POINTPOST_BIG") == "" {
		b.Skip("set POINTPOST_BIG=1 to build a job of a million deliveries")
	}
	s := openTest(b)
	ctx := context.Background()
	key, start := generateJob(b, s, 1_000_000)
	for _, bm := range []struct {
		name string
		run  func() error
	}{
		{"timeline-24x1h", func() error { _, _, err := s.JobTimeline(ctx, key, start, time.Hour, 25); return err }},
		{"span", func() error { _, _, err := s.JobSpan(ctx, key); return err }},
		{"job-counts", func() error { _, err := s.JobCounts(ctx, key); return err }},
		{"by-format", func() error { _, err := s.JobCountsBy(ctx, key, "format", 2); return err }},
		{"by-country", func() error { _, err := s.JobCountsBy(ctx, key, "country", 10); return err }},
		{"by-interests", func() error { _, err := s.JobCountsBy(ctx, key, "interests", 10); return err }},
		{"receipts", func() error { _, err := s.JobReceipts(ctx, []int64{key}); return err }},
		{"points", func() error { _, err := s.JobPoints(ctx, []int64{key}); return err }},
		{"rule-points", func() error { _, err := s.JobRulePoints(ctx, key); return err }},
		{"channels", func() error { _, err := s.JobChannels(ctx, key); return err }},
		{"settlement", func() error { _, _, err := s.JobSettlement(ctx, key); return err }},
	} {
		b.Run(bm.name, func(b *testing.B) {
			for b.Loop() {
				if err := bm.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// generateJob writes, in a few statements, a running job of n deliveries to n new consumers
// spread over the day from start: 9 in 10 sent (one in 5 of those acknowledged an hour
// later, alternately by reply and click, each earning 10 points under one rule), 1 in 20
// rejected, the rest pending (half of those retrying). Consumers vary by country (20
// values), gender, format (1 in 4 HTML), interests and an attribute "plan".
func generateJob(t testing.TB, s *Store, n int) (key int64, start time.Time) {
	t.Helper()
	ctx := context.Background()
	iss, err := s.EnsureIssuer(ctx, "big", "Big")
	if err != nil {
		t.Fatal(err)
	}
	start = time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	job := &postoffice.Job{IssuerID: iss.ID, Name: "big", State: postoffice.JobRunning, Start: start,
		Stop: start.Add(48 * time.Hour), ClientCount: n,
		Selection: `{"all":[{"field":"country","op":"!=","value":"ZZ"},{"field":"interests","op":"not in","value":["x"]}]}`}
	rule := &rewards.AwardRule{Type: "reply", Points: 10, Frequency: "once"}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil,
		postoffice.JobRules{New: []*rewards.AwardRule{rule}}); err != nil {
		t.Fatal(err)
	}
	var base int64
	if err := s.write.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM consumers`).Scan(&base); err != nil {
		t.Fatal(err)
	}
	day := int64(24 * time.Hour / time.Millisecond)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1)
			INSERT INTO consumers (id, email, first_name, last_name, country, gender, format, interests, attributes,
				created_at, updated_at)
			SELECT ?2 + i, 'gen' || (?2 + i) || '@example.com', 'F' || i, 'L' || i,
				char(65 + i % 20, 65 + i % 20), CASE i % 3 WHEN 0 THEN 'f' WHEN 1 THEN 'm' ELSE '' END,
				CASE i % 4 WHEN 0 THEN 'html' ELSE 'text' END,
				CASE i % 3 WHEN 0 THEN ';golf;' WHEN 1 THEN ';golf;tennis;' ELSE '' END,
				json_object('plan', CASE i % 2 WHEN 0 THEN 'gold' ELSE 'silver' END), 0, 0
			FROM seq`, []any{n, base}},
		// r = the consumer's rank: sent unless r%20 is 0 (rejected) or 1 (pending).
		{`INSERT INTO deliveries (job_key, consumer_id, sent, sent_at, received, received_at, rejected,
				retry_count, updated_at)
			SELECT ?1, id, (id - ?2) % 20 > 1,
				CASE WHEN (id - ?2) % 20 > 1 THEN ?3 + (id - ?2) * ?4 / ?5 END,
				(id - ?2) % 20 > 1 AND (id - ?2) % 5 = 2,
				CASE WHEN (id - ?2) % 20 > 1 AND (id - ?2) % 5 = 2 THEN ?3 + (id - ?2) * ?4 / ?5 + 3600000 END,
				(id - ?2) % 20 = 0, (id - ?2) % 40 = 1, 0
			FROM consumers WHERE id > ?2 ORDER BY id`, []any{job.Key, base, ms(start), day, n}},
		{`INSERT INTO acknowledgements (job_key, consumer_id, channel, rule_id, awarded, points, created_at)
			SELECT job_key, consumer_id, CASE consumer_id % 2 WHEN 0 THEN 'reply' ELSE 'click' END, ?2, 1, 10, received_at
			FROM deliveries WHERE job_key = ?1 AND received = 1`, []any{job.Key, rule.ID}},
		{`INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
			SELECT ?2, job_key, consumer_id, 1, ?3, 10, received_at FROM deliveries WHERE job_key = ?1 AND received = 1`,
			[]any{job.Key, rule.ID, iss.ID}},
		{`ANALYZE`, nil},
	} {
		if _, err := s.write.ExecContext(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%.60s: %v", q.sql, err)
		}
	}
	return job.Key, start
}
