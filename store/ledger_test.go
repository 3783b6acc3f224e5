package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
	"pointpost/store/pgtest"
)

// ledgerWorld is an issuer with a job and a reply rule, and some consumers.
type ledgerWorld struct {
	s         *Store
	issuer    rewards.Issuer
	job       *postoffice.Job
	rule      int64
	consumers []*rewards.Consumer
}

// newLedgerWorld opens a store whose clock moves one second a call, so events have an order.
func newLedgerWorld(t *testing.T, emails ...string) *ledgerWorld {
	t.Helper()
	ctx := context.Background()
	s := openTest(t)
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	var tick atomic.Int64
	s.Now = func() time.Time { return base.Add(time.Duration(tick.Add(1)) * time.Second) }
	w := &ledgerWorld{s: s}
	var err error
	if w.issuer, err = s.EnsureIssuer(ctx, "acme", "Acme Golf"); err != nil {
		t.Fatal(err)
	}
	batch := make([]rewards.Consumer, len(emails))
	for i, e := range emails {
		batch[i] = rewards.Consumer{Email: e, FirstName: strings.ToUpper(e[:1]) + e[1:strings.Index(e, "@")]}
	}
	if _, _, err := s.UpsertConsumers(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, e := range emails {
		w.consumers = append(w.consumers, consumer(t, s, e))
	}
	w.job = w.newJob(t, "Spring golf")
	w.rule = w.newRule(t, "reply bonus", 10)
	return w
}

func (w *ledgerWorld) newJob(t *testing.T, name string) *postoffice.Job {
	t.Helper()
	job := &postoffice.Job{IssuerID: w.issuer.ID, Name: name, ClientCount: 100,
		Start: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC), Stop: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
	if err := w.s.CreateJob(context.Background(), job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil,
		postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	return job
}

// newRule writes an award rule by SQL, as the toolbox would have.
func (w *ledgerWorld) newRule(t *testing.T, description string, points int64) int64 {
	t.Helper()
	var id int64
	if err := w.s.write.QueryRow(`INSERT INTO award_rules (issuer_id, description, type, points, frequency, created_at, updated_at)
		VALUES (?, ?, 'reply', ?, 'times', 0, 0) RETURNING id`, w.issuer.ID, description, points).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// accrue writes an accrual by SQL, as an acknowledgement would have.
func (w *ledgerWorld) accrue(t testing.TB, consumerID, occurrence, points int64) int64 {
	t.Helper()
	var id int64
	if err := w.s.write.QueryRow(`INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, w.rule, w.job.Key, consumerID, occurrence, w.issuer.ID, points,
		ms(w.s.Now())).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func (w *ledgerWorld) balance(t testing.TB, consumerID int64) int64 {
	t.Helper()
	var b int64
	if err := w.s.read.QueryRow(`SELECT points_balance FROM consumers WHERE id = ?`, consumerID).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkLedger asserts the invariants: entries sum to zero overall and per posting, and every
// consumer's kept balance is her ledger account's.
func (w *ledgerWorld) checkLedger(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if sum, err := w.s.LedgerSum(ctx); err != nil || sum != 0 {
		t.Errorf("LedgerSum = %d, %v; want 0", sum, err)
	}
	var unbalanced int
	if err := w.s.read.QueryRow(`SELECT count(*) FROM (SELECT posting_id FROM ledger_entries
		GROUP BY posting_id HAVING sum(amount) <> 0 OR count(*) < 2) AS unbalanced`).Scan(&unbalanced); err != nil || unbalanced != 0 {
		t.Errorf("%d postings do not balance (%v)", unbalanced, err)
	}
	for _, c := range w.consumers {
		acct, err := w.s.AccountBalance(ctx, rewards.ConsumerAccount(c.ID))
		if err != nil {
			t.Fatal(err)
		}
		if kept := w.balance(t, c.ID); kept != acct || kept < 0 {
			t.Errorf("consumer %d: points_balance %d, ledger account %d", c.ID, kept, acct)
		}
	}
}

func TestSettleConcurrentPostsEachAccrualOnce(t *testing.T) {
	ctx := context.Background()
	w := newLedgerWorld(t, "ann@example.com", "bob@example.com", "cy@example.com")
	const perConsumer = 200
	want := map[int64]int64{}
	for i := range perConsumer {
		for j, c := range w.consumers {
			points := int64(1 + (i+j)%7)
			w.accrue(t, c.ID, int64(i), points)
			want[c.ID] += points
		}
	}
	var total int64
	for _, p := range want {
		total += p
	}
	acct, err := w.s.Account(ctx, w.consumers[0].ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Balance != 0 || acct.Pending != want[w.consumers[0].ID] {
		t.Fatalf("before settlement: balance %d pending %d, want 0 and %d", acct.Balance, acct.Pending, want[w.consumers[0].ID])
	}

	var posted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				n, err := w.s.Settle(ctx, 37)
				if err != nil {
					errs <- err
					return
				}
				posted.Add(int64(n))
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := posted.Load(); got != perConsumer*3 {
		t.Fatalf("posted %d accruals, want %d", got, perConsumer*3)
	}
	var entries, perAccrual, unposted int
	w.s.read.QueryRow(`SELECT count(*) FROM ledger_entries`).Scan(&entries)
	w.s.read.QueryRow(`SELECT count(*) FROM (SELECT accrual_id FROM ledger_entries GROUP BY accrual_id HAVING count(*) <> 2) AS unbalanced`).Scan(&perAccrual)
	w.s.read.QueryRow(`SELECT count(*) FROM accruals WHERE posted_at IS NULL`).Scan(&unposted)
	if entries != 2*perConsumer*3 || perAccrual != 0 || unposted != 0 {
		t.Errorf("%d entries, %d accruals without exactly two, %d unposted", entries, perAccrual, unposted)
	}
	w.checkLedger(t)
	for _, c := range w.consumers {
		if got := w.balance(t, c.ID); got != want[c.ID] {
			t.Errorf("consumer %d balance %d, want %d", c.ID, got, want[c.ID])
		}
	}
	if got, _ := w.s.AccountBalance(ctx, rewards.IssuerAccount(w.issuer.ID)); got != -total {
		t.Errorf("issuer account %d, want %d", got, -total)
	}

	// What accrues after settlement is pending beside the posted balance.
	w.accrue(t, w.consumers[0].ID, 1000, 4)
	acct, err = w.s.Account(ctx, w.consumers[0].ID, 5)
	if err != nil {
		t.Fatal(err)
	}
	if acct.Balance != want[w.consumers[0].ID] || acct.Pending != 4 {
		t.Errorf("after settlement: balance %d pending %d, want %d and 4", acct.Balance, acct.Pending, want[w.consumers[0].ID])
	}
	if len(acct.History) != 5 || acct.History[0].Kind != rewards.EventAccrual || acct.History[0].Points != 4 {
		t.Errorf("history %+v, want 5 events, the newest the pending accrual of 4", acct.History)
	}
	if n, err := w.s.Settle(ctx, 10); err != nil || n != 1 {
		t.Errorf("Settle = %d, %v; want 1", n, err)
	}
	if n, err := w.s.Settle(ctx, 10); err != nil || n != 0 {
		t.Errorf("Settle with nothing pending = %d, %v", n, err)
	}
	w.checkLedger(t)
}

func TestSettlerPostsInBatchesAndOnInterval(t *testing.T) {
	ctx := context.Background()
	w := newLedgerWorld(t, "ann@example.com")
	id := w.consumers[0].ID
	for i := range 25 {
		w.accrue(t, id, int64(i), 2)
	}
	posted := make(chan int, 16)
	st := &rewards.Settler{Store: settleSignal{w.s, posted}, Batch: 10, Interval: 10 * time.Millisecond}
	if n, err := st.SettleNow(ctx); err != nil || n != 25 {
		t.Fatalf("SettleNow = %d, %v; want 25", n, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(runCtx) }()
	w.accrue(t, id, 100, 5)
	for total := 0; total < 26; {
		select {
		case n := <-posted:
			total += n
		case <-time.After(10 * time.Second):
			t.Fatalf("the loop did not post the new accrual: %d of 26 posted, balance %d", total, w.balance(t, id))
		}
	}
	if b := w.balance(t, id); b != 55 {
		t.Errorf("balance %d once the loop posted the new accrual, want 55", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v after cancel", err)
	}
	w.checkLedger(t)
}

// settleSignal is the store to a Settler, sending how many accruals each Settle posted.
type settleSignal struct {
	rewards.SettleStore
	posted chan<- int
}

func (s settleSignal) Settle(ctx context.Context, limit int) (int, error) {
	n, err := s.SettleStore.Settle(ctx, limit)
	if n > 0 {
		select {
		case s.posted <- n:
		case <-ctx.Done():
		}
	}
	return n, err
}

func TestLedgerIsAppendOnly(t *testing.T) {
	ctx := context.Background()
	w := newLedgerWorld(t, "ann@example.com")
	accrual := w.accrue(t, w.consumers[0].ID, 0, 10)
	if _, err := w.s.Settle(ctx, 10); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE ledger_entries SET amount = amount * 2`,
		`UPDATE ledger_entries SET memo = 'edited'`,
		`DELETE FROM ledger_entries`,
	} {
		_, err := w.s.write.Exec(q)
		if err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want the append-only refusal", q, err)
		}
	}
	// Migration 0004's guards: no second posting of an accrual, no unknown account, no
	// negative balance.
	if _, err := w.s.write.Exec(`UPDATE accruals SET posted_at = 1 WHERE id = ?`, accrual); err == nil {
		t.Error("re-marking a posted accrual was allowed")
	}
	if _, err := w.s.write.Exec(`INSERT INTO ledger_entries (posting_id, account, amount, kind, accrual_id, created_at)
		VALUES (99, ?, 10, 'accrual', ?, 0)`, rewards.ConsumerAccount(w.consumers[0].ID), accrual); err == nil {
		t.Error("a second entry for the accrual's account was allowed")
	}
	if _, err := w.s.write.Exec(`INSERT INTO ledger_entries (posting_id, account, amount, kind, created_at)
		VALUES (99, 'petty-cash', 10, 'correction', 0)`); err == nil {
		t.Error("an unknown account was allowed")
	}
	if _, err := w.s.write.Exec(`UPDATE consumers SET points_balance = -1`); err == nil {
		t.Error("a negative balance was allowed")
	}
	w.checkLedger(t)
}

func TestCorrect(t *testing.T) {
	ctx := context.Background()
	w := newLedgerWorld(t, "ann@example.com")
	id := w.consumers[0].ID
	if err := w.s.Correct(ctx, id, w.issuer.ID, 15, "missed reply of March 3"); err != nil {
		t.Fatal(err)
	}
	err := w.s.Correct(ctx, id, w.issuer.ID, -20, "double award")
	if !errors.Is(err, rewards.ErrInsufficientPoints) {
		t.Fatalf("correction below zero: err = %v, want ErrInsufficientPoints", err)
	}
	if got := w.balance(t, id); got != 15 {
		t.Errorf("balance %d after the refused correction, want 15", got)
	}
	if err := w.s.Correct(ctx, id, w.issuer.ID, -15, "double award"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		consumer, issuer, points int64
		memo                     string
		want                     error
	}{
		{id, w.issuer.ID, 0, "nothing", nil},
		{id, w.issuer.ID, 5, " ", nil},
		{id + 100, w.issuer.ID, 5, "no such consumer", rewards.ErrNotFound},
		{id, w.issuer.ID + 100, 5, "no such issuer", rewards.ErrNotFound},
	} {
		err := w.s.Correct(ctx, c.consumer, c.issuer, c.points, c.memo)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("Correct(%d, %d, %d, %q) = %v, want %v", c.consumer, c.issuer, c.points, c.memo, err, c.want)
		}
	}
	var corrections int
	w.s.read.QueryRow(`SELECT count(*) FROM ledger_entries WHERE kind = 'correction'`).Scan(&corrections)
	if corrections != 4 {
		t.Errorf("%d correction entries, want 4 (two postings)", corrections)
	}
	if got, _ := w.s.AccountBalance(ctx, rewards.IssuerAccount(w.issuer.ID)); got != 0 {
		t.Errorf("issuer account %d, want 0", got)
	}
	w.checkLedger(t)
}

// setBalance gives a consumer points the way the program does: an accrual, settled.
func (w *ledgerWorld) setBalance(t *testing.T, consumerID, points int64) {
	t.Helper()
	w.accrue(t, consumerID, 0, points)
	if _, err := w.s.Settle(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
}

func TestRedeemRaceNeverOverspends(t *testing.T) {
	ctx := context.Background()
	w := newLedgerWorld(t, "ann@example.com")
	id := w.consumers[0].ID
	w.setBalance(t, id, 75) // covers 7 of cost 10
	item := &rewards.CatalogItem{Name: "Golf balls", Description: "a dozen", Cost: 10, Stock: 10}
	if err := w.s.AddCatalogItem(ctx, item); err != nil {
		t.Fatal(err)
	}

	// A reader watches the balance the whole time.
	watch, stopWatch := context.WithCancel(ctx)
	var lowest atomic.Int64
	lowest.Store(75)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watch.Err() == nil {
			var b int64
			if err := w.s.read.QueryRow(`SELECT points_balance FROM consumers WHERE id = ?`, id).Scan(&b); err == nil && b < lowest.Load() {
				lowest.Store(b)
			}
		}
	}()

	var ok, poor, other atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			r, err := w.s.Redeem(ctx, id, item.ID)
			switch {
			case err == nil:
				ok.Add(1)
				if r.BalanceAfter < 0 || r.Cost != 10 || r.ItemName != "Golf balls" {
					t.Errorf("redemption %+v", r)
				}
			case errors.Is(err, rewards.ErrInsufficientPoints):
				poor.Add(1)
			default:
				other.Add(1)
				t.Errorf("Redeem: %v", err)
			}
		})
	}
	wg.Wait()
	stopWatch()
	<-watched
	if ok.Load() != 7 || poor.Load() != 43 || other.Load() != 0 {
		t.Errorf("%d redeemed, %d refused for points, %d other; want 7, 43, 0", ok.Load(), poor.Load(), other.Load())
	}
	if got := w.balance(t, id); got != 5 || lowest.Load() < 0 {
		t.Errorf("balance %d (lowest seen %d), want 5", got, lowest.Load())
	}
	items, err := w.s.Catalog(ctx)
	if err != nil || len(items) != 1 || items[0].Stock != 3 {
		t.Errorf("catalog %+v, %v; want stock 3", items, err)
	}
	if got, _ := w.s.AccountBalance(ctx, rewards.AccountRedeemed); got != 70 {
		t.Errorf("redeemed account %d, want 70", got)
	}
	var redemptions int
	w.s.read.QueryRow(`SELECT count(*) FROM redemptions`).Scan(&redemptions)
	if redemptions != 7 {
		t.Errorf("%d redemptions recorded, want 7", redemptions)
	}
	w.checkLedger(t)
}

func TestRedeemRaceNeverOversells(t *testing.T) {
	ctx := context.Background()
	w := newLedgerWorld(t, "ann@example.com", "bob@example.com")
	for _, c := range w.consumers {
		w.setBalance(t, c.ID, 1000)
	}
	item := &rewards.CatalogItem{Name: "Caddie for a day", Cost: 100, Stock: 3}
	if err := w.s.AddCatalogItem(ctx, item); err != nil {
		t.Fatal(err)
	}
	var ok, gone atomic.Int64
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			_, err := w.s.Redeem(ctx, w.consumers[i%2].ID, item.ID)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, rewards.ErrOutOfStock):
				gone.Add(1)
			default:
				t.Errorf("Redeem: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 3 || gone.Load() != 17 {
		t.Errorf("%d redeemed, %d out of stock; want 3 and 17", ok.Load(), gone.Load())
	}
	if got := w.balance(t, w.consumers[0].ID) + w.balance(t, w.consumers[1].ID); got != 2000-300 {
		t.Errorf("balances sum to %d, want 1700", got)
	}
	for _, c := range []struct {
		consumer, item int64
	}{{w.consumers[0].ID + 100, item.ID}, {w.consumers[0].ID, item.ID + 100}} {
		if _, err := w.s.Redeem(ctx, c.consumer, c.item); !errors.Is(err, rewards.ErrNotFound) {
			t.Errorf("Redeem(%d, %d) = %v, want rewards.ErrNotFound", c.consumer, c.item, err)
		}
	}
	for _, bad := range []rewards.CatalogItem{{Name: "", Cost: 1}, {Name: "x", Cost: 0}, {Name: "x", Cost: 1, Stock: -1}} {
		if err := w.s.AddCatalogItem(ctx, &bad); err == nil {
			t.Errorf("AddCatalogItem(%+v) accepted", bad)
		}
	}
	w.checkLedger(t)
}

func BenchmarkSettle(b *testing.B) {
	s := openTest(b)
	ctx := context.Background()
	iss, _ := s.EnsureIssuer(ctx, "acme", "")
	batch := make([]rewards.Consumer, 1000)
	for i := range batch {
		batch[i].Email = fmt.Sprintf("c%d@example.com", i)
	}
	if _, _, err := s.UpsertConsumers(ctx, batch); err != nil {
		b.Fatal(err)
	}
	job := &postoffice.Job{IssuerID: iss.ID, Name: "j", ClientCount: 1, Start: time.Now(), Stop: time.Now().Add(time.Hour)}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		b.Fatal(err)
	}
	var rule int64
	s.write.QueryRow(`INSERT INTO award_rules (issuer_id, type, points, frequency, created_at, updated_at)
		VALUES (?, 'reply', 1, 'times', 0, 0) RETURNING id`, iss.ID).Scan(&rule)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		if _, err := s.write.Exec(`INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
			SELECT ?, ?, id, ?, ?, 3, 0 FROM consumers`, rule, job.Key, i, iss.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if n, err := s.Settle(ctx, 1000); err != nil || n != 1000 {
			b.Fatalf("Settle = %d, %v", n, err)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "accruals/s")
}

// TestSettleWaitsForAccrualsInFlight: on PostgreSQL an acknowledgement's accrual whose id
// is below the batch's last may commit while settlement runs. Settlement waits for it and
// posts it with the rest, rather than seeing it in some statements and not in others.
func TestSettleWaitsForAccrualsInFlight(t *testing.T) {
	ctx := context.Background()
	name := pgtest.Need(t, pgServer).NewDatabase(t)
	s, err := Open(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The acknowledging process: a store's writer is one connection, which settlement takes.
	other, err := Open(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ids := seedAckConsumers(t, s, 2)
	iss := seedAckIssuer(t, s, "acme")
	rule := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job := seedAckJob(t, s, iss, time.Time{}, rule)
	// Another issuer's, committed after: an accrual's trigger holds its issuer's row.
	iss2 := seedAckIssuer(t, s, "globex")
	rule2 := seedAckRule(t, s, rewards.AwardRule{IssuerID: iss2, Type: rewards.RuleClick, Points: 5, Frequency: rewards.FrequencyOnce})
	job2 := seedAckJob(t, s, iss2, time.Time{}, rule2)
	accrue := `INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
		VALUES (?, ?, ?, 0, ?, ?, ?)`
	inFlight, err := other.write.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer inFlight.Rollback()
	if _, err := inFlight.ExecContext(ctx, accrue, rule.ID, job.Key, ids[0], iss, 3, ms(ackT0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.ExecContext(ctx, accrue, rule2.ID, job2.Key, ids[1], iss2, 4, ms(ackT0)); err != nil {
		t.Fatal(err)
	}
	settled := make(chan error, 1)
	var posted int
	go func() {
		var err error
		posted, err = s.Settle(ctx, 100)
		settled <- err
	}()
	// Settlement must be seen waiting on a lock while the first accrual is uncommitted.
	waiting := false
	for range 2000 {
		var n int
		if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE accruals%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if waiting = n > 0; waiting {
			break
		}
		select {
		case err := <-settled:
			t.Fatalf("settlement ended (posted %d, %v) while an accrual below its batch's last was in flight", posted, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !waiting {
		t.Fatal("settlement never waited for the accrual in flight")
	}
	if err := inFlight.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-settled; err != nil {
		t.Fatal(err)
	}
	if posted != 2 {
		t.Errorf("posted %d accruals, want both", posted)
	}
	var entries int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM ledger_entries`).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	var balances int64
	if err := s.read.QueryRowContext(ctx, `SELECT sum(points_balance) FROM consumers`).Scan(&balances); err != nil {
		t.Fatal(err)
	}
	if entries != 4 || balances != 7 {
		t.Errorf("%d ledger entries and balances of %d, want 4 and 7", entries, balances)
	}
}
