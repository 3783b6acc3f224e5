package store

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	sqlite3 "github.com/mattn/go-sqlite3"

	"pointpost/postoffice"
	"pointpost/rewards"
)

var _ postoffice.AckStore = (*Store)(nil)

// Acknowledge records an acknowledgement (claims 10-11): it sets the delivery's received flag
// and, for each rule of the job whose type is the channel's, records the rule's decision and,
// when it awards, the accrual in the issuer's toolbox account, all in one transaction that is
// on disk (synchronous=FULL; on PostgreSQL, synchronous_commit on) before it returns. An
// accrual is keyed by (rule, job, consumer, occurrence), so replays and parallel duplicates,
// in one process or several, award once. ack.At is the time the rules judge (the store's
// clock when zero).
//
// Returns an error wrapping postoffice.ErrNoDelivery, having written nothing, if the job has
// no delivery to the consumer (or there is no such job); ctx.Err() if ctx ends before the
// acknowledgement's batch begins (then nothing is written either); ErrClosed once the Store is
// closing; an error for a channel other than reply or click; or the database's error when the
// batch could not commit, in which case nothing of it was accepted.
func (s *Store) Acknowledge(ctx context.Context, ack postoffice.Ack) (*postoffice.AckResult, error) {
	if ack.Channel != postoffice.ChannelReply && ack.Channel != postoffice.ChannelClick {
		return nil, fmt.Errorf("acknowledgement channel %q is not reply or click", ack.Channel)
	}
	if ack.At.IsZero() {
		ack.At = s.Now()
	}
	return s.acks.submit(ctx, s, ack)
}

// ackRow is one row of the acknowledgements table: a rule's decision about an
// acknowledgement, or, with ruleID 0 (NULL), its record when no rule of the job applies.
type ackRow struct {
	job, consumer   int64
	channel, source string
	ruleID          int64
	awarded         bool
	points          int64
	reason          string
	at              int64
}

// accrual is an award as the accruals table keeps it.
type accrual struct {
	ruleID, job, consumer, occurrence, issuerID, points, at int64
}

// awardWindow is what a rule counts its past awards over for one acknowledgement: the
// occurrence it keys the award with and, for a period rule, the period's bounds (otherwise
// all time). Bounded above too, so that an acknowledgement carrying an earlier time than one
// already recorded does not count the later period's award as its own.
type awardWindow struct{ occurrence, since, until int64 }

func windowOf(r *rewards.AwardRule, at time.Time) awardWindow {
	w := awardWindow{occurrence: r.Occurrence(at), since: math.MinInt64, until: math.MaxInt64}
	if r.Frequency == rewards.FrequencyPeriod {
		w.since = r.PeriodStart(at).UnixMilli()
		w.until = w.since + r.Period.Milliseconds()
	}
	return w
}

// ackRunner reads and writes what an acknowledgement touches, inside its batch's
// transaction: ackStmts on SQLite, a statement each; pgAckBatch on PostgreSQL, from what it
// read for the whole batch at once and what the batch has added since.
type ackRunner interface {
	// markReceived sets the delivery's received flag unless it is set, and returns its id
	// and whether this was its first receipt; found is false when the job has no delivery to
	// the consumer.
	markReceived(job, consumer, at, now int64) (id int64, first, found bool, err error)
	// sameMessage reports whether an acknowledgement of the job by the consumer came from
	// source before.
	sameMessage(consumer, job int64, source string) (bool, error)
	// history is what was awarded before under rule r: to the consumer over w (for this job
	// in w's occurrence, in its period, ever), and the rule's and the issuer's running totals.
	history(r *rewards.AwardRule, job, consumer int64, w awardWindow, issuerID int64) (rewards.History, error)
	// accrue inserts the accrual; false, writing nothing, when its key is taken.
	accrue(a accrual) (bool, error)
	// record inserts an acknowledgement row.
	record(row ackRow) error
}

// The statements of an acknowledgement on SQLite. They run on the driver's connection and
// stay prepared across batches (see ackStmts).
const (
	qMarkReceived = iota
	qDelivery
	qHistory
	qAccrual
	qAckRow
	qSameMessage
	nAckQueries
)

var ackQueries = [nAckQueries]string{
	// The first acknowledgement of a delivery, the common case, takes one statement; the
	// others find nothing to update and look the delivery up.
	qMarkReceived: `UPDATE deliveries SET received = 1, received_at = ?1, updated_at = ?2
		WHERE job_key = ?3 AND consumer_id = ?4 AND received = 0 RETURNING id`,
	qDelivery: `SELECT id FROM deliveries WHERE job_key = ? AND consumer_id = ?`,
	// ?1 rule, ?2 job, ?3 consumer, ?4 occurrence, ?5 and ?6 the period's bounds, ?7 issuer.
	// The spent columns are the running totals of migration 0003. Scalar subqueries only: the
	// same lookups as a join of award_rules and issuers took three times as long.
	qHistory: `SELECT
			(SELECT count(*) FROM accruals WHERE rule_id = ?1 AND job_key = ?2 AND consumer_id = ?3 AND occurrence = ?4),
			(SELECT count(*) FROM accruals WHERE rule_id = ?1 AND consumer_id = ?3 AND created_at >= ?5 AND created_at < ?6),
			(SELECT count(*) FROM accruals WHERE rule_id = ?1 AND consumer_id = ?3),
			(SELECT spent FROM award_rules WHERE id = ?1),
			(SELECT spent FROM issuers WHERE id = ?7),
			(SELECT budget FROM issuers WHERE id = ?7)`,
	qAccrual: `INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (rule_id, job_key, consumer_id, occurrence) DO NOTHING`,
	qAckRow: `INSERT INTO acknowledgements (job_key, consumer_id, channel, source, rule_id, awarded, points, reason, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	// A reply already counted, by its Message-ID: a mail server that redelivers it (after a
	// 451, or a 250 it did not hear), or a mailbox read again after a crash, must neither
	// earn again in a later period nor add a second acknowledgement.
	qSameMessage: `SELECT count(*) FROM acknowledgements WHERE consumer_id = ?1 AND job_key = ?2 AND source = ?3`,
}

// ackStmts are the committer's statements, prepared on the writer's driver connection and
// kept for as long as it lives. Through database/sql, preparing them for every batch and
// its bookkeeping around every statement were a third of an acknowledgement's cost. Only the
// committer goroutine uses them, and only inside (*sql.Conn).Raw on the writer connection.
type ackStmts struct {
	conn  *sqlite3.SQLiteConn
	stmts [nAckQueries]*sqlite3.SQLiteStmt
	args  []driver.NamedValue
	dest  [6]driver.Value
}

// use points the statements at the driver connection dc, dropping those of an earlier one
// (the pool replaced a broken connection).
func (c *ackStmts) use(dc any) error {
	conn, ok := dc.(*sqlite3.SQLiteConn)
	if !ok {
		return fmt.Errorf("acknowledgements need the sqlite3 driver, not %T", dc)
	}
	if conn != c.conn {
		c.close()
		c.conn = conn
	}
	return nil
}

// close finalizes the statements; the committer calls it on the connection before the Store
// closes the pool.
func (c *ackStmts) close() {
	for i, st := range c.stmts {
		if st != nil {
			st.Close()
			c.stmts[i] = nil
		}
	}
	c.conn = nil
}

func (c *ackStmts) stmt(q int) (*sqlite3.SQLiteStmt, error) {
	if st := c.stmts[q]; st != nil {
		return st, nil
	}
	st, err := c.conn.PrepareContext(context.Background(), ackQueries[q])
	if err != nil {
		return nil, err
	}
	c.stmts[q] = st.(*sqlite3.SQLiteStmt)
	return c.stmts[q], nil
}

func (c *ackStmts) bind(args []driver.Value) []driver.NamedValue {
	c.args = c.args[:0]
	for i, v := range args {
		c.args = append(c.args, driver.NamedValue{Ordinal: i + 1, Value: v})
	}
	return c.args
}

// exec runs statement q and returns how many rows it changed.
func (c *ackStmts) exec(q int, args ...driver.Value) (int64, error) {
	st, err := c.stmt(q)
	if err != nil {
		return 0, err
	}
	// Background: no goroutine to watch for a cancellation that cannot come.
	res, err := st.ExecContext(context.Background(), c.bind(args))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// queryRow runs statement q and returns its first row in c.dest, or false if it has none.
func (c *ackStmts) queryRow(q int, args ...driver.Value) (bool, error) {
	st, err := c.stmt(q)
	if err != nil {
		return false, err
	}
	rows, err := st.QueryContext(context.Background(), c.bind(args))
	if err != nil {
		return false, err
	}
	defer rows.Close()
	n := len(rows.Columns())
	if err := rows.Next(c.dest[:n]); err == io.EOF {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, nil
}

// int64At is column i of the last row queryRow read.
func (c *ackStmts) int64At(i int) int64 {
	v, _ := c.dest[i].(int64)
	return v
}

func (c *ackStmts) markReceived(job, consumer, at, now int64) (int64, bool, bool, error) {
	found, err := c.queryRow(qMarkReceived, at, now, job, consumer)
	if err != nil || found {
		return c.int64At(0), found, found, err
	}
	found, err = c.queryRow(qDelivery, job, consumer)
	return c.int64At(0), false, found, err
}

func (c *ackStmts) sameMessage(consumer, job int64, source string) (bool, error) {
	if _, err := c.queryRow(qSameMessage, consumer, job, source); err != nil {
		return false, err
	}
	return c.int64At(0) > 0, nil
}

func (c *ackStmts) history(r *rewards.AwardRule, job, consumer int64, w awardWindow, issuerID int64) (rewards.History, error) {
	found, err := c.queryRow(qHistory, r.ID, job, consumer, w.occurrence, w.since, w.until, issuerID)
	if err != nil {
		return rewards.History{}, err
	}
	if !found {
		return rewards.History{}, fmt.Errorf("rule %d history: no row", r.ID)
	}
	return rewards.History{
		ThisJob:      int(c.int64At(0)),
		InPeriod:     int(c.int64At(1)),
		Total:        int(c.int64At(2)),
		RuleSpent:    c.int64At(3),
		IssuerSpent:  c.int64At(4),
		IssuerBudget: c.int64At(5),
	}, nil
}

func (c *ackStmts) accrue(a accrual) (bool, error) {
	n, err := c.exec(qAccrual, a.ruleID, a.job, a.consumer, a.occurrence, a.issuerID, a.points, a.at)
	return n > 0, err
}

func (c *ackStmts) record(row ackRow) error {
	var rule driver.Value
	if row.ruleID != 0 {
		rule = row.ruleID
	}
	_, err := c.exec(qAckRow, row.job, row.consumer, row.channel, row.source, rule, row.awarded, row.points, row.reason, row.at)
	return err
}

// pgAckBatch runs a batch of acknowledgements on PostgreSQL in two round trips, where a
// statement each would take a few per acknowledgement: read locks the batch's issuers and
// reads everything its decisions need; applyAck then decides each acknowledgement in turn,
// as on SQLite, against what was read and what the batch itself has added since; write
// inserts the batch's accruals and acknowledgement rows and commits.
//
// What was read stays true until the commit because every writer of what it read holds the
// issuers' row locks: only acknowledgements insert accruals (whose trigger keeps the rules'
// and the issuers' running totals) and set a delivery's received flag, and all of a job's
// acknowledgements lock its issuer first. So two processes' batches of the same issuer run
// one after the other, as on SQLite; other issuers' batches run alongside. The unique key
// of accruals stays the last word: an accrual inserted twice fails the batch, which is then
// read and decided again.
type pgAckBatch struct {
	deliveries map[deliveryKey]*pgDelivery
	// seen are the (consumer, job, source) that have an acknowledgement row.
	seen map[sourceKey]bool
	// counts are the accruals' counts read for each rule, consumer and window, before the
	// batch (rewards.History's first three fields).
	counts                               map[historyKey][3]int64
	ruleSpent, issuerSpent, issuerBudget map[int64]int64
	// awarded are the accruals' keys known to be taken: read, or added by the batch.
	awarded map[accrualKey]bool
	// accruals and rows wait for write; accruedTo indexes the accruals by rule and consumer.
	accruals  []accrual
	accruedTo map[[2]int64][]int
	rows      []ackRow
}

type deliveryKey struct{ job, consumer int64 }

type pgDelivery struct {
	id int64
	// first: this batch set its received flag, and no acknowledgement of the batch has
	// been told so yet.
	first bool
}

type sourceKey struct {
	consumer, job int64
	source        string
}

type historyKey struct {
	rule, job, consumer int64
	w                   awardWindow
}

type accrualKey struct{ rule, job, consumer, occurrence int64 }

// replySource begins the source of an acknowledgement by reply: the Message-ID follows.
const replySource = "smtp <"

// The statements of a batch of acknowledgements on PostgreSQL, given to pgx directly: arrays
// (unnest) carry the batch, so that each statement's text, and so its prepared plan, is the
// same for every batch.
const (
	// FOR NO KEY UPDATE: the lock the running totals' updates take, which leaves inserts of
	// rows naming the issuer (FOR KEY SHARE) free. In id order, so that batches wait for
	// each other rather than deadlock.
	pgLockIssuers = `SELECT id, spent, budget FROM issuers WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`
	pgRulesSpent  = `SELECT id, spent FROM award_rules WHERE id = ANY($1)`
	// Each delivery once, with the time of its first acknowledgement in the batch: the
	// update returns those it set, the select that follows every one.
	pgMarkReceived = `UPDATE deliveries d SET received = 1, received_at = w.at, updated_at = $4
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS w(job_key, consumer_id, at)
		WHERE d.job_key = w.job_key AND d.consumer_id = w.consumer_id AND d.received = 0
		RETURNING d.job_key, d.consumer_id`
	pgDeliveries = `SELECT d.job_key, d.consumer_id, d.id FROM unnest($1::bigint[], $2::bigint[]) AS w(job_key, consumer_id)
		JOIN deliveries d ON d.job_key = w.job_key AND d.consumer_id = w.consumer_id`
	// SQLite's qHistory's counts for every (rule, job, consumer, window), from one range of
	// accruals_rule_consumer each: a consumer's awards under a rule are few.
	pgHistories = `SELECT k.i, h.this_job, h.in_period, h.total
		FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
			WITH ORDINALITY AS k(rule, job, consumer, occurrence, since, until, i)
		CROSS JOIN LATERAL (SELECT
				count(*) FILTER (WHERE a.job_key = k.job AND a.occurrence = k.occurrence) AS this_job,
				count(*) FILTER (WHERE a.created_at >= k.since AND a.created_at < k.until) AS in_period,
				count(*) AS total
			FROM accruals a WHERE a.rule_id = k.rule AND a.consumer_id = k.consumer) h`
	pgSameMessages = `SELECT m.i FROM unnest($1::bigint[], $2::bigint[], $3::text[]) WITH ORDINALITY AS m(consumer, job, source, i)
		WHERE EXISTS (SELECT 1 FROM acknowledgements a WHERE a.consumer_id = m.consumer AND a.job_key = m.job AND a.source = m.source)`
	// No ON CONFLICT: under the issuers' locks a taken key is not expected, and if one is,
	// the batch's decisions were taken on a history that was not the whole truth.
	pgInsertAccruals = `INSERT INTO accruals (rule_id, job_key, consumer_id, occurrence, issuer_id, points, created_at)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[])`
	pgInsertAckRows = `INSERT INTO acknowledgements (job_key, consumer_id, channel, source, rule_id, awarded, points, reason, created_at)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::smallint[], $7::bigint[], $8::text[], $9::bigint[])`
)

func newPGAckBatch() *pgAckBatch {
	return &pgAckBatch{
		deliveries:   map[deliveryKey]*pgDelivery{},
		seen:         map[sourceKey]bool{},
		counts:       map[historyKey][3]int64{},
		ruleSpent:    map[int64]int64{},
		issuerSpent:  map[int64]int64{},
		issuerBudget: map[int64]int64{},
		awarded:      map[accrualKey]bool{},
		accruedTo:    map[[2]int64][]int{},
	}
}

// read begins the batch's transaction, locks the issuers of its jobs and reads what its
// decisions need, and marks its deliveries received, in one round trip. Returns false,
// having sent nothing, when none of the batch's jobs exists: then it has nothing to write.
func (b *pgAckBatch) read(ctx context.Context, conn *pgx.Conn, jobs map[int64]*ackJob, batch []*ackRequest, now int64) (bool, error) {
	var issuers, rules []int64
	var dJobs, dConsumers, dAts []int64
	var hKeys []historyKey
	var sKeys []sourceKey
	issuerSeen, ruleSeen, dSeen := map[int64]bool{}, map[int64]bool{}, map[deliveryKey]bool{}
	hSeen, sSeen := map[historyKey]bool{}, map[sourceKey]bool{}
	type firstAck struct {
		deliveryKey
		at int64
	}
	var firsts []firstAck
	for _, req := range batch {
		ack := req.ack
		job := jobs[ack.JobKey]
		if job == nil {
			continue
		}
		if !issuerSeen[job.issuerID] {
			issuerSeen[job.issuerID] = true
			issuers = append(issuers, job.issuerID)
		}
		dk := deliveryKey{ack.JobKey, ack.ConsumerID}
		if !dSeen[dk] {
			dSeen[dk] = true
			firsts = append(firsts, firstAck{dk, ms(ack.At)})
		}
		rs := job.rules[ack.Channel.RuleType()]
		for i := range rs {
			r := &rs[i]
			if !ruleSeen[r.ID] {
				ruleSeen[r.ID] = true
				rules = append(rules, r.ID)
			}
			if hk := (historyKey{r.ID, ack.JobKey, ack.ConsumerID, windowOf(r, ack.At)}); !hSeen[hk] {
				hSeen[hk] = true
				hKeys = append(hKeys, hk)
			}
		}
		if sk := (sourceKey{ack.ConsumerID, ack.JobKey, ack.Source}); len(rs) > 0 && strings.HasPrefix(ack.Source, replySource) && !sSeen[sk] {
			sSeen[sk] = true
			sKeys = append(sKeys, sk)
		}
	}
	if len(issuers) == 0 {
		return false, nil
	}
	// The deliveries' rows are locked in one order too, as far as the plan follows the input.
	slices.SortFunc(firsts, func(x, y firstAck) int {
		return cmp.Or(cmp.Compare(x.job, y.job), cmp.Compare(x.consumer, y.consumer))
	})
	for _, f := range firsts {
		dJobs, dConsumers, dAts = append(dJobs, f.job), append(dConsumers, f.consumer), append(dAts, f.at)
	}

	q := &pgx.Batch{}
	q.Queue(`BEGIN`)
	q.Queue(pgLockIssuers, issuers).Query(func(rows pgx.Rows) error {
		var id, spent, budget int64
		_, err := pgx.ForEachRow(rows, []any{&id, &spent, &budget}, func() error {
			b.issuerSpent[id], b.issuerBudget[id] = spent, budget
			return nil
		})
		return err
	})
	if len(rules) > 0 {
		q.Queue(pgRulesSpent, rules).Query(func(rows pgx.Rows) error {
			var id, spent int64
			_, err := pgx.ForEachRow(rows, []any{&id, &spent}, func() error {
				b.ruleSpent[id] = spent
				return nil
			})
			return err
		})
	}
	first := map[deliveryKey]bool{}
	q.Queue(pgMarkReceived, dJobs, dConsumers, dAts, now).Query(func(rows pgx.Rows) error {
		var d deliveryKey
		_, err := pgx.ForEachRow(rows, []any{&d.job, &d.consumer}, func() error {
			first[d] = true
			return nil
		})
		return err
	})
	q.Queue(pgDeliveries, dJobs, dConsumers).Query(func(rows pgx.Rows) error {
		var d deliveryKey
		var id int64
		_, err := pgx.ForEachRow(rows, []any{&d.job, &d.consumer, &id}, func() error {
			b.deliveries[d] = &pgDelivery{id: id, first: first[d]}
			return nil
		})
		return err
	})
	if len(hKeys) > 0 {
		cols := make([][]int64, 6)
		for _, k := range hKeys {
			for c, v := range []int64{k.rule, k.job, k.consumer, k.w.occurrence, k.w.since, k.w.until} {
				cols[c] = append(cols[c], v)
			}
		}
		q.Queue(pgHistories, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]).Query(func(rows pgx.Rows) error {
			var i int
			var n [3]int64
			_, err := pgx.ForEachRow(rows, []any{&i, &n[0], &n[1], &n[2]}, func() error {
				k := hKeys[i-1]
				b.counts[k] = n
				if n[0] > 0 {
					b.awarded[accrualKey{k.rule, k.job, k.consumer, k.w.occurrence}] = true
				}
				return nil
			})
			return err
		})
	}
	if len(sKeys) > 0 {
		var consumers, jobKeys []int64
		var sources []string
		for _, k := range sKeys {
			consumers, jobKeys, sources = append(consumers, k.consumer), append(jobKeys, k.job), append(sources, k.source)
		}
		q.Queue(pgSameMessages, consumers, jobKeys, sources).Query(func(rows pgx.Rows) error {
			var i int
			_, err := pgx.ForEachRow(rows, []any{&i}, func() error {
				b.seen[sKeys[i-1]] = true
				return nil
			})
			return err
		})
	}
	return true, conn.SendBatch(ctx, q).Close()
}

// write inserts what the batch decided and commits, in one round trip.
func (b *pgAckBatch) write(ctx context.Context, conn *pgx.Conn) error {
	q := &pgx.Batch{}
	if len(b.accruals) > 0 {
		cols := make([][]int64, 7)
		for _, a := range b.accruals {
			for c, v := range []int64{a.ruleID, a.job, a.consumer, a.occurrence, a.issuerID, a.points, a.at} {
				cols[c] = append(cols[c], v)
			}
		}
		q.Queue(pgInsertAccruals, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6])
	}
	if n := len(b.rows); n > 0 {
		jobs, consumers, points, ats := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		channels, sources, reasons := make([]string, n), make([]string, n), make([]string, n)
		rules, awarded := make([]*int64, n), make([]int16, n)
		for i, r := range b.rows {
			jobs[i], consumers[i], points[i], ats[i] = r.job, r.consumer, r.points, r.at
			channels[i], sources[i], reasons[i] = r.channel, r.source, r.reason
			if r.ruleID != 0 {
				rules[i] = &r.ruleID
			}
			if r.awarded {
				awarded[i] = 1
			}
		}
		q.Queue(pgInsertAckRows, jobs, consumers, channels, sources, rules, awarded, points, reasons, ats)
	}
	q.Queue(`COMMIT`)
	return conn.SendBatch(ctx, q).Close()
}

func (b *pgAckBatch) markReceived(job, consumer, at, now int64) (int64, bool, bool, error) {
	d := b.deliveries[deliveryKey{job, consumer}]
	if d == nil {
		return 0, false, false, nil
	}
	first := d.first
	d.first = false
	return d.id, first, true, nil
}

func (b *pgAckBatch) sameMessage(consumer, job int64, source string) (bool, error) {
	return b.seen[sourceKey{consumer, job, source}], nil
}

func (b *pgAckBatch) history(r *rewards.AwardRule, job, consumer int64, w awardWindow, issuerID int64) (rewards.History, error) {
	n, ok := b.counts[historyKey{r.ID, job, consumer, w}]
	spent, rok := b.ruleSpent[r.ID]
	issuerSpent, iok := b.issuerSpent[issuerID]
	if !ok || !rok || !iok {
		return rewards.History{}, fmt.Errorf("rule %d history: not read for the batch", r.ID)
	}
	for _, i := range b.accruedTo[[2]int64{r.ID, consumer}] {
		a := b.accruals[i]
		n[2]++
		if a.at >= w.since && a.at < w.until {
			n[1]++
		}
		if a.job == job && a.occurrence == w.occurrence {
			n[0]++
		}
	}
	return rewards.History{ThisJob: int(n[0]), InPeriod: int(n[1]), Total: int(n[2]),
		RuleSpent: spent, IssuerSpent: issuerSpent, IssuerBudget: b.issuerBudget[issuerID]}, nil
}

func (b *pgAckBatch) accrue(a accrual) (bool, error) {
	k := accrualKey{a.ruleID, a.job, a.consumer, a.occurrence}
	if b.awarded[k] {
		return false, nil
	}
	b.awarded[k] = true
	// As the trigger will: a total past int64 fails the insert, and the batch with it.
	b.ruleSpent[a.ruleID] = saturatingAdd(b.ruleSpent[a.ruleID], a.points)
	b.issuerSpent[a.issuerID] = saturatingAdd(b.issuerSpent[a.issuerID], a.points)
	rc := [2]int64{a.ruleID, a.consumer}
	b.accruedTo[rc] = append(b.accruedTo[rc], len(b.accruals))
	b.accruals = append(b.accruals, a)
	return true, nil
}

func saturatingAdd(a, b int64) int64 {
	if sum, ok := rewards.AddPoints(a, b); ok {
		return sum
	}
	return math.MaxInt64
}

func (b *pgAckBatch) record(row ackRow) error {
	b.seen[sourceKey{row.consumer, row.job, row.source}] = true
	b.rows = append(b.rows, row)
	return nil
}

// ackJob is a job as its acknowledgements need it, with its rules by type.
type ackJob struct {
	issuerID int64
	name     string
	stop     time.Time
	rules    map[rewards.RuleType][]rewards.AwardRule
}

// loadAckJobs reads the jobs the batch's acknowledgements name, with their rules: on SQLite
// inside the batch's transaction, where nothing can change them before it commits; on
// PostgreSQL just before it (the jobs cache keeps them across batches either way). A job
// that does not exist is left out; its acknowledgements find no delivery.
func loadAckJobs(ctx context.Context, conn *sql.Conn, batch []*ackRequest) (map[int64]*ackJob, error) {
	jobs := map[int64]*ackJob{}
	for _, req := range batch {
		key := req.ack.JobKey
		if _, seen := jobs[key]; seen {
			continue
		}
		j := &ackJob{rules: map[rewards.RuleType][]rewards.AwardRule{}}
		var stop int64
		err := conn.QueryRowContext(ctx, `SELECT issuer_id, name, stop_at FROM jobs WHERE key = ?`, key).Scan(&j.issuerID, &j.name, &stop)
		if errors.Is(err, sql.ErrNoRows) {
			jobs[key] = nil
			continue
		}
		if err != nil {
			return nil, err
		}
		j.stop = fromMS(stop)
		rows, err := conn.QueryContext(ctx, `SELECT `+ruleColumns+` FROM award_rules r JOIN job_rules jr ON jr.rule_id = r.id
			WHERE jr.job_key = ? ORDER BY r.id`, key)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			r, err := scanRule(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			j.rules[r.Type] = append(j.rules[r.Type], r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		jobs[key] = j
	}
	return jobs, nil
}

// applyAck records one acknowledgement. Returns an error wrapping postoffice.ErrNoDelivery,
// before writing anything, if the job has no delivery to the consumer; any other error
// leaves the transaction to be rolled back.
func (s *Store) applyAck(c ackRunner, jobs map[int64]*ackJob, ack postoffice.Ack, now int64) (*postoffice.AckResult, error) {
	res := &postoffice.AckResult{JobKey: ack.JobKey, ConsumerID: ack.ConsumerID}
	job := jobs[ack.JobKey]
	if job == nil {
		return nil, fmt.Errorf("job %d, consumer %d: %w", ack.JobKey, ack.ConsumerID, postoffice.ErrNoDelivery)
	}
	// A delivery not yet marked sent (or rejected, or given up) is acknowledged all the same:
	// the token proves the consumer had the invitation, and a send whose outcome was not yet
	// recorded, or was lost in a crash, may well have reached her.
	at := ms(ack.At)
	id, first, found, err := c.markReceived(ack.JobKey, ack.ConsumerID, at, now)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("job %d, consumer %d: %w", ack.JobKey, ack.ConsumerID, postoffice.ErrNoDelivery)
	}
	res.DeliveryID, res.FirstReceipt = id, first
	res.JobName = job.name
	row := ackRow{job: ack.JobKey, consumer: ack.ConsumerID, channel: string(ack.Channel), source: ack.Source, at: at}
	rules := job.rules[ack.Channel.RuleType()]
	if len(rules) == 0 {
		row.reason = fmt.Sprintf("no award rule of this campaign applies to a %s", ack.Channel)
		if err := c.record(row); err != nil {
			return nil, err
		}
		return res, nil
	}
	res.SuccessURL, res.IssuerURL = rules[0].SuccessURL, rules[0].IssuerURL
	res.Decisions = make([]rewards.Decision, 0, len(rules))
	seen := false
	if strings.HasPrefix(ack.Source, replySource) {
		if seen, err = c.sameMessage(ack.ConsumerID, ack.JobKey, ack.Source); err != nil {
			return nil, err
		}
	}
	for i := range rules {
		if seen {
			// The same message again (a redelivery, or a mailbox read again after a crash):
			// nothing new happened, so nothing more is recorded.
			res.Decisions = append(res.Decisions, rewards.Decision{RuleID: rules[i].ID, Occurrence: rules[i].Occurrence(ack.At),
				Reason: "this reply was already counted (the same Message-ID came again)"})
			continue
		}
		d, err := decideAck(c, &rules[i], job, ack)
		if err != nil {
			return nil, err
		}
		row.ruleID, row.awarded, row.points, row.reason = d.RuleID, d.Awarded, d.Points, d.Reason
		if err := c.record(row); err != nil {
			return nil, err
		}
		res.Decisions = append(res.Decisions, d)
	}
	return res, nil
}

// decideAck asks the rule about the acknowledgement, given what the accruals say was awarded
// before, and writes the accrual when it awards.
func decideAck(c ackRunner, r *rewards.AwardRule, job *ackJob, ack postoffice.Ack) (rewards.Decision, error) {
	h, err := c.history(r, ack.JobKey, ack.ConsumerID, windowOf(r, ack.At), job.issuerID)
	if err != nil {
		return rewards.Decision{}, err
	}
	d := r.Decide(ack.At, job.stop, h)
	if !d.Awarded {
		return d, nil
	}
	inserted, err := c.accrue(accrual{ruleID: r.ID, job: ack.JobKey, consumer: ack.ConsumerID, occurrence: d.Occurrence,
		issuerID: job.issuerID, points: d.Points, at: ms(ack.At)})
	if err != nil {
		return rewards.Decision{}, err
	}
	if !inserted {
		d.Awarded, d.Points, d.Reason = false, 0, "already awarded for this invitation"
	}
	return d, nil
}
