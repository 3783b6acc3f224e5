package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"pointpost/postoffice"
	"pointpost/rewards"
)

var _ postoffice.AckStore = (*Store)(nil)

// Acknowledge records an acknowledgement (claims 10-11): it sets the delivery's received flag
// and, for each rule of the job whose type is the channel's, records the rule's decision and,
// when it awards, the accrual in the issuer's toolbox account, all in one transaction that is
// on disk (synchronous=FULL) before it returns. An accrual is keyed by (rule, job, consumer,
// occurrence), so replays and parallel duplicates award once. ack.At is the time the rules
// judge (the store's clock when zero).
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

// The statements of an acknowledgement. They run on the driver's connection and stay
// prepared across batches (see ackStmts).
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

// ackRunner runs the acknowledgement statements: ackStmts on SQLite, pgAckRunner on
// PostgreSQL.
type ackRunner interface {
	// exec runs statement q and returns how many rows it changed.
	exec(q int, args ...driver.Value) (int64, error)
	// queryRow runs statement q and keeps its first row for int64At; false if it has none.
	queryRow(q int, args ...driver.Value) (bool, error)
	// int64At is column i of the last row queryRow read.
	int64At(i int) int64
}

// pgAckRunner runs the acknowledgement statements on a PostgreSQL connection, in the
// batch's transaction, through database/sql (pgx caches the prepared statements).
type pgAckRunner struct {
	ctx  context.Context
	conn *sql.Conn
	dest [6]sql.NullInt64
	// ackRows are the acknowledgements' rows not yet inserted: nothing reads them back but
	// qSameMessage, so they wait and go in as one statement (flush), which saves a round
	// trip for each.
	ackRows []any
}

// pgAckRowsPerInsert keeps one insert of acknowledgement rows under PostgreSQL's 65,535
// parameters.
const pgAckRowsPerInsert = 1000

// flush inserts the acknowledgement rows that wait, before a statement that reads them and
// before the batch commits.
func (c *pgAckRunner) flush() error {
	const cols = 9
	for len(c.ackRows) > 0 {
		n := min(len(c.ackRows)/cols, pgAckRowsPerInsert)
		var q strings.Builder
		q.WriteString(`INSERT INTO acknowledgements (job_key, consumer_id, channel, source, rule_id, awarded, points, reason, created_at) VALUES `)
		for i := range n {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
		}
		if _, err := c.conn.ExecContext(c.ctx, q.String(), c.ackRows[:n*cols]...); err != nil {
			return err
		}
		c.ackRows = c.ackRows[n*cols:]
	}
	return nil
}

func (c *pgAckRunner) exec(q int, args ...driver.Value) (int64, error) {
	if q == qAckRow {
		c.ackRows = append(c.ackRows, anys(args)...)
		return 1, nil
	}
	res, err := c.conn.ExecContext(c.ctx, ackQueries[q], anys(args)...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c *pgAckRunner) queryRow(q int, args ...driver.Value) (bool, error) {
	if q == qSameMessage {
		if err := c.flush(); err != nil {
			return false, err
		}
	}
	rows, err := c.conn.QueryContext(c.ctx, ackQueries[q], anys(args)...)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return false, rows.Err()
	}
	cols, err := rows.Columns()
	if err != nil {
		return false, err
	}
	dest := make([]any, len(cols))
	for i := range dest {
		dest[i] = &c.dest[i]
	}
	if err := rows.Scan(dest...); err != nil {
		return false, err
	}
	return true, rows.Close()
}

func (c *pgAckRunner) int64At(i int) int64 { return c.dest[i].Int64 }

func anys(vs []driver.Value) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
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

// ackJob is a job as its acknowledgements need it, with its rules by type.
type ackJob struct {
	issuerID int64
	name     string
	stop     time.Time
	rules    map[rewards.RuleType][]rewards.AwardRule
}

// loadAckJobs reads the jobs the batch's acknowledgements name, with their rules, inside the
// batch's transaction: nothing can change them before it commits. A job that does not exist
// is left out; its acknowledgements find no delivery.
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
func (s *Store) applyAck(c ackRunner, jobs map[int64]*ackJob, ack postoffice.Ack) (*postoffice.AckResult, error) {
	res := &postoffice.AckResult{JobKey: ack.JobKey, ConsumerID: ack.ConsumerID}
	job := jobs[ack.JobKey]
	if job == nil {
		return nil, fmt.Errorf("job %d, consumer %d: %w", ack.JobKey, ack.ConsumerID, postoffice.ErrNoDelivery)
	}
	// A delivery not yet marked sent (or rejected, or given up) is acknowledged all the same:
	// the token proves the consumer had the invitation, and a send whose outcome was not yet
	// recorded, or was lost in a crash, may well have reached her.
	at := ms(ack.At)
	found, err := c.queryRow(qMarkReceived, at, ms(s.Now()), ack.JobKey, ack.ConsumerID)
	if err != nil {
		return nil, err
	}
	res.FirstReceipt = found
	if !found {
		if found, err = c.queryRow(qDelivery, ack.JobKey, ack.ConsumerID); err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("job %d, consumer %d: %w", ack.JobKey, ack.ConsumerID, postoffice.ErrNoDelivery)
		}
	}
	res.DeliveryID = c.int64At(0)
	res.JobName = job.name
	channel := string(ack.Channel)
	rules := job.rules[ack.Channel.RuleType()]
	if len(rules) == 0 {
		reason := fmt.Sprintf("no award rule of this campaign applies to a %s", ack.Channel)
		if _, err := c.exec(qAckRow, ack.JobKey, ack.ConsumerID, channel, ack.Source, nil, false, int64(0), reason, at); err != nil {
			return nil, err
		}
		return res, nil
	}
	res.SuccessURL, res.IssuerURL = rules[0].SuccessURL, rules[0].IssuerURL
	res.Decisions = make([]rewards.Decision, 0, len(rules))
	seen := false
	if strings.HasPrefix(ack.Source, "smtp <") {
		if _, err := c.queryRow(qSameMessage, ack.ConsumerID, ack.JobKey, ack.Source); err != nil {
			return nil, err
		}
		seen = c.int64At(0) > 0
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
		if _, err := c.exec(qAckRow, ack.JobKey, ack.ConsumerID, channel, ack.Source, d.RuleID, d.Awarded, d.Points,
			d.Reason, at); err != nil {
			return nil, err
		}
		res.Decisions = append(res.Decisions, d)
	}
	return res, nil
}

// decideAck asks the rule about the acknowledgement, given what the accruals say was awarded
// before, and writes the accrual when it awards.
func decideAck(c ackRunner, r *rewards.AwardRule, job *ackJob, ack postoffice.Ack) (rewards.Decision, error) {
	from, until := int64(math.MinInt64), int64(math.MaxInt64)
	if r.Frequency == rewards.FrequencyPeriod {
		// Bounded above too, so that an acknowledgement carrying an earlier time than one
		// already recorded does not count the later period's award as its own.
		from = r.PeriodStart(ack.At).UnixMilli()
		until = from + r.Period.Milliseconds()
	}
	found, err := c.queryRow(qHistory, r.ID, ack.JobKey, ack.ConsumerID, r.Occurrence(ack.At), from, until, job.issuerID)
	if err != nil {
		return rewards.Decision{}, err
	}
	if !found {
		return rewards.Decision{}, fmt.Errorf("rule %d history: no row", r.ID)
	}
	h := rewards.History{
		ThisJob:      int(c.int64At(0)),
		InPeriod:     int(c.int64At(1)),
		Total:        int(c.int64At(2)),
		RuleSpent:    c.int64At(3),
		IssuerSpent:  c.int64At(4),
		IssuerBudget: c.int64At(5),
	}
	d := r.Decide(ack.At, job.stop, h)
	if !d.Awarded {
		return d, nil
	}
	n, err := c.exec(qAccrual, r.ID, ack.JobKey, ack.ConsumerID, d.Occurrence, job.issuerID, d.Points, ms(ack.At))
	if err != nil {
		return rewards.Decision{}, err
	}
	if n == 0 {
		d.Awarded, d.Points, d.Reason = false, 0, "already awarded for this invitation"
	}
	return d, nil
}
