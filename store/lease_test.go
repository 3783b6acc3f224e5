package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store/pgtest"
)

// The tests of several processes on one database: each opens two stores on it, as two
// processes would, on SQLite and on PostgreSQL.

// onBothEngines runs test on a SQLite file and on a PostgreSQL database (skipped without
// one), giving it a function that opens one more store on the database.
func onBothEngines(t *testing.T, test func(t *testing.T, open func() *Store)) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "pointpost.db")
			if engine == "postgres" {
				name = pgtest.Need(t, pgServer).NewDatabase(t)
			}
			test(t, func() *Store {
				t.Helper()
				s, err := Open(context.Background(), name)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

// seedLeaseJob makes n consumers and a running job to every one, selected, none sent.
func seedLeaseJob(t testing.TB, s *Store, n int) *postoffice.Job {
	t.Helper()
	ctx := context.Background()
	seedAckConsumers(t, s, n)
	job := &postoffice.Job{IssuerID: seedAckIssuer(t, s, "acme"), Name: "spring", State: postoffice.JobRunning,
		Start: ackT0.Add(-time.Hour), Stop: ackT0.Add(time.Hour), ClientCount: n}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	for complete := false; !complete; {
		var err error
		if _, complete, err = s.SelectBatch(ctx, job, false, 10000); err != nil {
			t.Fatal(err)
		}
	}
	return job
}

func leaseIDs(rs []postoffice.Recipient) []int64 {
	ids := make([]int64, len(rs))
	for i, r := range rs {
		ids[i] = r.DeliveryID
	}
	return ids
}

func sentOutcomes(ids []int64, at time.Time) []postoffice.Outcome {
	out := make([]postoffice.Outcome, len(ids))
	for i, id := range ids {
		out[i] = postoffice.Outcome{DeliveryID: id, Kind: postoffice.OutcomeSent, At: at}
	}
	return out
}

// TestLeasesOfTwoStoresAreDisjoint: four mail servers in two processes claim one job's
// deliveries at once, none recording an outcome until every delivery is claimed: no
// delivery is claimed twice and every one is claimed. Recorded, the job is sent, each once.
func TestLeasesOfTwoStoresAreDisjoint(t *testing.T) {
	onBothEngines(t, func(t *testing.T, open func() *Store) {
		ctx := context.Background()
		a, b := open(), open()
		const n = 3000
		job := seedLeaseJob(t, a, n)
		var claimed [4][]int64
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for owner := range 4 {
			s := []*Store{a, b}[owner%2]
			wg.Go(func() {
				for {
					rs, err := s.LeaseRecipients(ctx, job.Key, owner+1, ackT0, ackT0.Add(time.Minute), 37)
					if err != nil {
						errs <- err
						return
					}
					if len(rs) == 0 {
						return
					}
					claimed[owner] = append(claimed[owner], leaseIDs(rs)...)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[int64]int{}
		for owner, ids := range claimed {
			for _, id := range ids {
				if prev, ok := seen[id]; ok {
					t.Fatalf("delivery %d claimed by mail servers %d and %d", id, prev+1, owner+1)
				}
				seen[id] = owner
			}
		}
		if len(seen) != n {
			t.Fatalf("%d of %d deliveries claimed", len(seen), n)
		}
		if rs, err := b.LeaseRecipients(ctx, job.Key, 9, ackT0, ackT0.Add(time.Minute), 10); err != nil || len(rs) != 0 {
			t.Fatalf("a claim while every delivery is leased took %d, %v", len(rs), err)
		}
		for owner, ids := range claimed {
			if err := []*Store{a, b}[owner%2].RecordOutcomes(ctx, sentOutcomes(ids, ackT0)); err != nil {
				t.Fatal(err)
			}
		}
		c, err := a.JobCounts(ctx, job.Key)
		if err != nil || c.Sent != n || c.Pending != 0 {
			t.Fatalf("counts %+v, %v; want %d sent", c, err, n)
		}
		if _, ok, err := a.NextClaimable(ctx, job.Key); ok || err != nil {
			t.Fatalf("NextClaimable of a job sent: %v, %v", ok, err)
		}
	})
}

// TestExpiredLeaseIsTakenOver: a mail server's claims outlive it by its lease, then another
// server takes them over; a heartbeat extends a lease, a release ends it at once; and of the
// two servers' outcomes for one delivery, the first recorded stands, sent once.
func TestExpiredLeaseIsTakenOver(t *testing.T) {
	onBothEngines(t, func(t *testing.T, open func() *Store) {
		ctx := context.Background()
		a, b := open(), open()
		job := seedLeaseJob(t, a, 10)
		ids, err := a.RegisterProcessMailServers(ctx, "a", 1, "", ackT0)
		if err != nil {
			t.Fatal(err)
		}
		mine, err := b.RegisterProcessMailServers(ctx, "b", 1, "", ackT0)
		if err != nil {
			t.Fatal(err)
		}
		dead, live := ids[0], mine[0]
		first, err := a.LeaseRecipients(ctx, job.Key, dead, ackT0, ackT0.Add(time.Minute), 100)
		if err != nil || len(first) != 10 {
			t.Fatalf("the first claim took %d, %v", len(first), err)
		}
		if at, ok, err := b.NextClaimable(ctx, job.Key); err != nil || !ok || !at.Equal(ackT0.Add(time.Minute)) {
			t.Fatalf("NextClaimable = %v, %v, %v; want the lease's end", at, ok, err)
		}
		// A heartbeat at +50s extends the lease to +110s.
		if err := a.ReportMailServers(ctx, []postoffice.MailServerStatus{{ID: dead, State: "sending",
			ReportedAt: ackT0.Add(50 * time.Second), Leases: ackT0.Add(110 * time.Second)}}); err != nil {
			t.Fatal(err)
		}
		for _, at := range []time.Duration{0, 59 * time.Second, 109 * time.Second} {
			if rs, err := b.LeaseRecipients(ctx, job.Key, live, ackT0.Add(at), ackT0.Add(at+time.Minute), 100); err != nil || len(rs) != 0 {
				t.Fatalf("at +%v, while the lease holds, another server took %d, %v", at, len(rs), err)
			}
		}
		// The first server records half of what it sent before it died.
		half := leaseIDs(first[:5])
		if err := a.RecordOutcomes(ctx, sentOutcomes(half, ackT0.Add(5*time.Second))); err != nil {
			t.Fatal(err)
		}
		later := ackT0.Add(2 * time.Minute)
		taken, err := b.LeaseRecipients(ctx, job.Key, live, later, later.Add(time.Minute), 100)
		if err != nil || !slices.Equal(leaseIDs(taken), leaseIDs(first[5:])) {
			t.Fatalf("after the lease the live server took %v, %v; want %v", leaseIDs(taken), err, leaseIDs(first[5:]))
		}
		// A late retry of the first server's, for a delivery the live one holds now, undoes
		// nothing: the lease stays the live server's.
		if err := a.RecordOutcomes(ctx, []postoffice.Outcome{{DeliveryID: taken[0].DeliveryID, Kind: postoffice.OutcomeRetry,
			At: later, NextAttempt: later.Add(time.Hour), Error: "421 late", Owner: dead}}); err != nil {
			t.Fatal(err)
		}
		var owner, retries int
		if err := a.read.QueryRow(`SELECT lease_owner, retry_count FROM deliveries WHERE id = ?`, taken[0].DeliveryID).
			Scan(&owner, &retries); err != nil || owner != live || retries != 0 {
			t.Fatalf("after a late retry of a delivery taken over: lease mail-%d's, %d retries, %v; want mail-%d's, none", owner, retries, err, live)
		}
		// A late hard refusal of the first server's, for a delivery the live one holds: not
		// recorded, so no bounce is counted against her either.
		if err := a.RecordOutcomes(ctx, []postoffice.Outcome{{DeliveryID: taken[1].DeliveryID, Kind: postoffice.OutcomeRejected,
			At: later, Error: "550 5.1.1 late", Owner: dead,
			Refusal: postoffice.Refusal{Reply: 550, Status: "5.1.1", Class: postoffice.RefusalHard}}}); err != nil {
			t.Fatal(err)
		}
		var bounced int
		if err := a.read.QueryRow(`SELECT count(*) FROM bounces WHERE delivery_id = ?`, taken[1].DeliveryID).Scan(&bounced); err != nil || bounced != 0 {
			t.Fatalf("a late refusal of a delivery taken over counted %d bounces, %v; want none", bounced, err)
		}
		if st := consumer(t, a, taken[1].Consumer.Email).Status; st != rewards.StatusActive {
			t.Fatalf("a late refusal of a delivery taken over left her %s", st)
		}
		// The first server's outcomes again, late, then the live server's for all ten: five
		// of them duplicates of what the first recorded, and a rejection after the send.
		if err := a.RecordOutcomes(ctx, sentOutcomes(half, later)); err != nil {
			t.Fatal(err)
		}
		if err := b.RecordOutcomes(ctx, sentOutcomes(leaseIDs(first), later.Add(time.Second))); err != nil {
			t.Fatal(err)
		}
		if err := b.RecordOutcomes(ctx, []postoffice.Outcome{{DeliveryID: half[0], Kind: postoffice.OutcomeRetry,
			At: later, NextAttempt: later.Add(time.Hour), Error: "421 late"}}); err != nil {
			t.Fatal(err)
		}
		c, err := b.JobCounts(ctx, job.Key)
		if err != nil || c.Sent != 10 || c.Pending != 0 {
			t.Fatalf("counts %+v, %v; want 10 sent", c, err)
		}
		for i, r := range first {
			d, err := b.Delivery(ctx, job.Key, r.Consumer.ID)
			if err != nil {
				t.Fatal(err)
			}
			want := later.Add(time.Second)
			if i < 5 {
				want = ackT0.Add(5 * time.Second) // the first record stands
			}
			if !d.Sent || !d.SentAt.Equal(want) || d.RetryCount != 0 || d.LastError != "" {
				t.Errorf("delivery %d: sent %v at %v, %d retries; want sent at %v", r.DeliveryID, d.Sent, d.SentAt, d.RetryCount, want)
			}
		}
		var leased int
		if err := b.read.QueryRow(`SELECT count(*) FROM deliveries WHERE lease_owner <> 0 OR lease_until <> 0`).Scan(&leased); err != nil || leased != 0 {
			t.Fatalf("%d deliveries still leased after their outcomes, %v", leased, err)
		}
	})
}

// TestReleaseLeasesFreesAtOnce: what a server claimed and let go of is another's claim at
// once, without waiting for the lease; what it still holds of another job stays its own
// until released too.
func TestReleaseLeasesFreesAtOnce(t *testing.T) {
	onBothEngines(t, func(t *testing.T, open func() *Store) {
		ctx := context.Background()
		a, b := open(), open()
		job := seedLeaseJob(t, a, 5)
		if rs, err := a.LeaseRecipients(ctx, job.Key, 1, ackT0, ackT0.Add(time.Hour), 100); err != nil || len(rs) != 5 {
			t.Fatalf("claimed %d, %v", len(rs), err)
		}
		if err := a.ReleaseLeases(ctx, 2); err != nil {
			t.Fatal(err)
		}
		if rs, err := b.LeaseRecipients(ctx, job.Key, 2, ackT0, ackT0.Add(time.Hour), 100); err != nil || len(rs) != 0 {
			t.Fatalf("another server's release freed %d, %v", len(rs), err)
		}
		if err := a.ReleaseLeases(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if rs, err := b.LeaseRecipients(ctx, job.Key, 2, ackT0, ackT0.Add(time.Hour), 100); err != nil || len(rs) != 5 {
			t.Fatalf("after the release another server claimed %d, %v", len(rs), err)
		}
	})
}

// TestLeaseRecipientsRefusesNoOwnerOrNoTime: a claim must name its server and last a while.
func TestLeaseRecipientsRefusesNoOwnerOrNoTime(t *testing.T) {
	s := openTest(t)
	for _, c := range []struct {
		owner int
		until time.Time
	}{{0, ackT0.Add(time.Minute)}, {1, ackT0}, {1, ackT0.Add(-time.Second)}} {
		if _, err := s.LeaseRecipients(context.Background(), 1, c.owner, ackT0, c.until, 10); err == nil {
			t.Errorf("a lease for owner %d until %v was taken", c.owner, c.until)
		}
	}
}

// TestProcessesRegisterTheirOwnMailServers: processes registering at once each get mail
// servers of their own; one started again under its name gets its rows back.
func TestProcessesRegisterTheirOwnMailServers(t *testing.T) {
	onBothEngines(t, func(t *testing.T, open func() *Store) {
		ctx := context.Background()
		stores := []*Store{open(), open()}
		got := make([][]int, 6)
		var wg sync.WaitGroup
		errs := make(chan error, len(got))
		for i := range got {
			wg.Go(func() {
				var err error
				got[i], err = stores[i%2].RegisterProcessMailServers(ctx, fmt.Sprint("p", i), 3, "smtp://relay", ackT0)
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		seen := map[int]bool{}
		for _, ids := range got {
			for _, id := range ids {
				if seen[id] || id <= 0 {
					t.Fatalf("mail server ids %v: %d given twice", got, id)
				}
				seen[id] = true
			}
		}
		// A process silent for more than a day leaves no rows once another registers, unless
		// a job names one of them.
		gone, err := stores[0].RegisterProcessMailServers(ctx, "gone", 2, "", ackT0.Add(-25*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		job := seedLeaseJob(t, stores[0], 1)
		if err := stores[0].AssignJob(ctx, job.Key, gone[1]); err != nil {
			t.Fatal(err)
		}
		again, err := stores[1].RegisterProcessMailServers(ctx, "p4", 3, "smtp://other", ackT0.Add(time.Minute))
		if err != nil || !slices.Equal(again, got[4]) {
			t.Fatalf("p4 started again got %v, %v; want its rows %v", again, err, got[4])
		}
		all, err := stores[0].MailServers(ctx)
		if err != nil || len(all) != 19 || !slices.ContainsFunc(all, func(st postoffice.MailServerStatus) bool { return st.ID == gone[1] }) {
			t.Fatalf("%d mail servers, %v; want 18 and the silent process's row a job names", len(all), err)
		}
		for _, st := range all {
			if st.Name != fmt.Sprint("mail-", st.ID) || st.Process == "" {
				t.Errorf("mail server %+v: want its name from its id and its process", st)
			}
			if st.Process == "p4" && (st.Relay != "smtp://other" || !st.ReportedAt.Equal(ackT0.Add(time.Minute))) {
				t.Errorf("p4's server after the restart: %+v", st)
			}
		}
	})
}

// TestSettlementOfTwoProcesses: two stores on one database settle the same accruals at
// once, in small batches: each accrual is posted once, and the balances are the points.
func TestSettlementOfTwoProcesses(t *testing.T) {
	onBothEngines(t, func(t *testing.T, open func() *Store) {
		ctx := context.Background()
		a, b := open(), open()
		ids := seedAckConsumers(t, a, 20)
		iss := seedAckIssuer(t, a, "acme")
		rule := seedAckRule(t, a, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
		job := seedAckJob(t, a, iss, time.Time{}, rule)
		const perConsumer = 30
		var total int64
		for occ := range perConsumer {
			for i, id := range ids {
				points := int64(1 + (occ+i)%9)
				if _, err := a.write.Exec(`INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
					VALUES (?, ?, ?, ?, ?, ?, ?)`, rule.ID, job.Key, id, occ, iss, points, ms(ackT0)); err != nil {
					t.Fatal(err)
				}
				total += points
			}
		}
		var wg sync.WaitGroup
		posted := make([]int, 4)
		errs := make(chan error, 4)
		for i := range posted {
			s := []*Store{a, b}[i%2]
			wg.Go(func() {
				for {
					n, err := s.Settle(ctx, 23)
					if err != nil {
						errs <- err
						return
					}
					if n == 0 {
						return
					}
					posted[i] += n
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		want := len(ids) * perConsumer
		if sum := posted[0] + posted[1] + posted[2] + posted[3]; sum != want {
			t.Fatalf("the settlers posted %v, %d in all; want %d", posted, sum, want)
		}
		var balances, entries, unposted int64
		if err := a.read.QueryRow(`SELECT coalesce(sum(points_balance), 0) FROM consumers`).Scan(&balances); err != nil {
			t.Fatal(err)
		}
		if err := a.read.QueryRow(`SELECT count(*) FROM ledger_entries WHERE kind = 'accrual'`).Scan(&entries); err != nil {
			t.Fatal(err)
		}
		if err := a.read.QueryRow(`SELECT count(*) FROM accruals WHERE posted_at IS NULL`).Scan(&unposted); err != nil {
			t.Fatal(err)
		}
		if balances != total || entries != int64(2*want) || unposted != 0 {
			t.Fatalf("balances %d (want %d), %d accrual entries (want %d), %d unposted", balances, total, entries, 2*want, unposted)
		}
	})
}

// TestNextClaimableFollowsLeasesAndRetries: when a job's next delivery can be claimed, as
// its deliveries are leased, retried, released and sent; read off two indexes, not a scan of
// the job's deliveries.
func TestNextClaimableFollowsLeasesAndRetries(t *testing.T) {
	onBothEngines(t, func(t *testing.T, open func() *Store) {
		ctx := context.Background()
		s := open()
		job := seedLeaseJob(t, s, 10)
		ids, err := s.RegisterProcessMailServers(ctx, "a", 2, "", ackT0)
		if err != nil {
			t.Fatal(err)
		}
		a, b := ids[0], ids[1]
		want := func(step string, at time.Time) {
			t.Helper()
			got, ok, err := s.NextClaimable(ctx, job.Key)
			if err != nil || !ok || !got.Equal(at) {
				t.Fatalf("%s: NextClaimable = %v, %v, %v; want %v", step, got, ok, err, at)
			}
		}
		want("none leased, none tried", time.UnixMilli(0).UTC())
		all, err := s.LeaseRecipients(ctx, job.Key, a, ackT0, ackT0.Add(time.Minute), 100)
		if err != nil || len(all) != 10 {
			t.Fatalf("claimed %d, %v", len(all), err)
		}
		want("all leased", ackT0.Add(time.Minute))
		if err := s.ReportMailServers(ctx, []postoffice.MailServerStatus{{ID: a, State: "sending",
			ReportedAt: ackT0.Add(30 * time.Second), Leases: ackT0.Add(90 * time.Second)}}); err != nil {
			t.Fatal(err)
		}
		want("all leased, extended", ackT0.Add(90*time.Second))
		var retries []postoffice.Outcome
		for _, r := range all[:3] {
			retries = append(retries, postoffice.Outcome{DeliveryID: r.DeliveryID, Kind: postoffice.OutcomeRetry, At: ackT0,
				NextAttempt: ackT0.Add(2 * time.Hour), Error: "421 later", Owner: a})
		}
		if err := s.RecordOutcomes(ctx, retries); err != nil {
			t.Fatal(err)
		}
		want("seven leased, three retrying later", ackT0.Add(90*time.Second))
		if err := s.ReleaseLeases(ctx, a); err != nil {
			t.Fatal(err)
		}
		want("seven released", time.UnixMilli(0).UTC())
		due, err := s.LeaseRecipients(ctx, job.Key, b, ackT0.Add(time.Minute), ackT0.Add(2*time.Minute), 100)
		if err != nil || !slices.Equal(leaseIDs(due), leaseIDs(all[3:])) {
			t.Fatalf("claimed %v, %v; want the seven not retrying", leaseIDs(due), err)
		}
		want("seven leased again", ackT0.Add(2*time.Minute))
		if err := s.RecordOutcomes(ctx, sentOutcomes(leaseIDs(due), ackT0.Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
		want("three retrying", ackT0.Add(2*time.Hour))
		// The server dies with the retries leased: they are claimable when its lease ends.
		if rs, err := s.LeaseRecipients(ctx, job.Key, a, ackT0.Add(3*time.Hour), ackT0.Add(3*time.Hour+time.Minute), 100); err != nil || len(rs) != 3 {
			t.Fatalf("claimed %d retries, %v", len(rs), err)
		}
		want("three retries leased", ackT0.Add(3*time.Hour+time.Minute))

		// Each minimum is read off its index (0067), not by a scan of the job's deliveries.
		p := queryPlan(t, s, nextClaimable, job.Key, job.Key)
		t.Logf("plan: %s", p)
		for _, index := range []string{"deliveries_unleased", "deliveries_job_leased"} {
			if !strings.Contains(p, index) {
				t.Errorf("the plan does not use %s: %s", index, p)
			}
		}
		if strings.Contains(p, "Seq Scan") || strings.Contains(p, "SCAN deliveries") || strings.Contains(p, "Sort") {
			t.Errorf("the plan scans or sorts: %s", p)
		}
	})
}

// BenchmarkNextClaimable compares NextClaimable on a job of 100,000 deliveries still to
// send, 1,024 of them leased, with the scan of every one it replaced, in rounds that
// alternate the two (POINTPOST_BIG=1; building the job takes some seconds):
//
//	POINTPOST_BIG=1 go test -run '^$' -bench NextClaimable -benchtime 2s ./store/
//	POINTPOST_BIG=1 POINTPOST_TEST_ENGINE=postgres go test -run '^$' -bench NextClaimable -benchtime 2s ./store/
func BenchmarkNextClaimable(b *testing.B) {
	if os.Getenv("POINTPOST_BIG") == "" {
		b.Skip("set POINTPOST_BIG=1 to build a job of 100,000 deliveries")
	}
	const n = 100_000
	ctx := context.Background()
	s := openTest(b)
	job := seedLeaseJob(b, s, n)
	ids, err := s.RegisterProcessMailServers(ctx, "a", 1, "", ackT0)
	if err != nil {
		b.Fatal(err)
	}
	if rs, err := s.LeaseRecipients(ctx, job.Key, ids[0], ackT0, ackT0.Add(time.Minute), 1024); err != nil || len(rs) != 1024 {
		b.Fatalf("claimed %d, %v", len(rs), err)
	}
	if _, err := s.write.ExecContext(ctx, s.either(`ANALYZE`, `ANALYZE deliveries`)); err != nil {
		b.Fatal(err)
	}
	// The query NextClaimable ran before 0067: the later of next attempt and lease end, over
	// every delivery of the job still to send.
	const scan = `SELECT min(CASE WHEN next_attempt_at > lease_until THEN next_attempt_at ELSE lease_until END)
		FROM deliveries WHERE job_key = ? AND sent = 0 AND rejected = 0 AND failed = 0`
	want := time.UnixMilli(0).UTC()
	for range 3 {
		b.Run("scan", func(b *testing.B) {
			for b.Loop() {
				var next sql.NullInt64
				if err := s.read.QueryRowContext(ctx, scan, job.Key).Scan(&next); err != nil || next.Int64 != 0 {
					b.Fatal(next, err)
				}
			}
		})
		b.Run("indexes", func(b *testing.B) {
			for b.Loop() {
				if at, ok, err := s.NextClaimable(ctx, job.Key); err != nil || !ok || !at.Equal(want) {
					b.Fatal(at, ok, err)
				}
			}
		})
	}
}

// TestDueRecipientsAreWhatAClaimTakes: DueRecipients lists, leasing nothing, what
// LeaseRecipients would take at the same time: not what a lease holds, nor a retry not yet
// due; a lease that ended lets its deliveries be listed again. afterID pages through them.
func TestDueRecipientsAreWhatAClaimTakes(t *testing.T) {
	onBothEngines(t, func(t *testing.T, open func() *Store) {
		ctx := context.Background()
		s := open()
		job := seedLeaseJob(t, s, 10)
		ids, err := s.RegisterProcessMailServers(ctx, "a", 2, "", ackT0)
		if err != nil {
			t.Fatal(err)
		}
		a, b := ids[0], ids[1]
		all, err := s.DueRecipients(ctx, job.Key, 0, ackT0, 100)
		if err != nil || len(all) != 10 {
			t.Fatalf("listed %d, %v; want all 10", len(all), err)
		}
		held, err := s.LeaseRecipients(ctx, job.Key, a, ackT0, ackT0.Add(time.Minute), 4)
		if err != nil || !slices.Equal(leaseIDs(held), leaseIDs(all[:4])) {
			t.Fatalf("claimed %v, %v; want the first four", leaseIDs(held), err)
		}
		if err := s.RecordOutcomes(ctx, []postoffice.Outcome{{DeliveryID: held[0].DeliveryID, Kind: postoffice.OutcomeRetry,
			At: ackT0, NextAttempt: ackT0.Add(time.Hour), Error: "421 later", Owner: a}}); err != nil {
			t.Fatal(err)
		}
		listed, err := s.DueRecipients(ctx, job.Key, 0, ackT0, 100)
		if err != nil || !slices.Equal(leaseIDs(listed), leaseIDs(all[4:])) {
			t.Fatalf("listed %v, %v; want the six no lease holds", leaseIDs(listed), err)
		}
		page, err := s.DueRecipients(ctx, job.Key, all[6].DeliveryID, ackT0, 2)
		if err != nil || !slices.Equal(leaseIDs(page), leaseIDs(all[7:9])) {
			t.Fatalf("listed after %d: %v, %v; want the two next", all[6].DeliveryID, leaseIDs(page), err)
		}
		// Once the lease has ended the three still held are due again; the retry is not yet.
		later := ackT0.Add(2 * time.Minute)
		listed, err = s.DueRecipients(ctx, job.Key, 0, later, 100)
		if err != nil || !slices.Equal(leaseIDs(listed), leaseIDs(all[1:])) {
			t.Fatalf("after the lease listed %v, %v; want all but the retry", leaseIDs(listed), err)
		}
		taken, err := s.LeaseRecipients(ctx, job.Key, b, later, later.Add(time.Minute), 100)
		if err != nil || !slices.Equal(leaseIDs(taken), leaseIDs(listed)) {
			t.Fatalf("a claim took %v, %v; want what was listed, %v", leaseIDs(taken), err, leaseIDs(listed))
		}
		if listed, err := s.DueRecipients(ctx, job.Key, 0, later, 100); err != nil || len(listed) != 0 {
			t.Fatalf("after the claim listed %v, %v; want none", leaseIDs(listed), err)
		}
	})
}

// BenchmarkHeartbeat is the cost of one mail server's heartbeat (ReportMailServers) while it
// holds a batch of 512 leases, which the heartbeat extends row by row, against its status row
// alone, in rounds that alternate the two:
//
//	go test -run '^$' -bench Heartbeat ./store/
//	POINTPOST_TEST_ENGINE=postgres go test -run '^$' -bench Heartbeat ./store/
func BenchmarkHeartbeat(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	job := seedLeaseJob(b, s, 2048)
	ids, err := s.RegisterProcessMailServers(ctx, "a", 1, "", ackT0)
	if err != nil {
		b.Fatal(err)
	}
	if rs, err := s.LeaseRecipients(ctx, job.Key, ids[0], ackT0, ackT0.Add(time.Minute), 512); err != nil || len(rs) != 512 {
		b.Fatalf("claimed %d, %v", len(rs), err)
	}
	at := ackT0
	beat := func(leases bool) func(b *testing.B) {
		return func(b *testing.B) {
			for b.Loop() {
				at = at.Add(time.Millisecond) // each beat extends every lease
				st := postoffice.MailServerStatus{ID: ids[0], State: "sending", ReportedAt: at}
				if leases {
					st.Leases = at.Add(time.Minute)
				}
				if err := s.ReportMailServers(ctx, []postoffice.MailServerStatus{st}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	for range 3 {
		b.Run("leases-512", beat(true))
		b.Run("row-only", beat(false))
	}
}

// BenchmarkLeaseAndRelease is a claim of 512 deliveries of a job of 20,000 and their
// release, which moves each between the indexes of 0067:
//
//	go test -run '^$' -bench LeaseAndRelease ./store/
//	POINTPOST_TEST_ENGINE=postgres go test -run '^$' -bench LeaseAndRelease ./store/
func BenchmarkLeaseAndRelease(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	job := seedLeaseJob(b, s, 20_000)
	ids, err := s.RegisterProcessMailServers(ctx, "a", 1, "", ackT0)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if rs, err := s.LeaseRecipients(ctx, job.Key, ids[0], ackT0, ackT0.Add(time.Minute), 512); err != nil || len(rs) != 512 {
			b.Fatalf("claimed %d, %v", len(rs), err)
		}
		if err := s.ReleaseLeases(ctx, ids[0]); err != nil {
			b.Fatal(err)
		}
	}
}
