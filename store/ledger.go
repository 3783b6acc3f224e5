package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"pointpost/rewards"
)

// The ledger (claim 14): append-only, double-entry. Every posting is a set of entries with one
// posting_id that sum to zero, written in the same writer transaction as what it pays for
// (the accrual's posted_at, the redemption, the balance kept on the consumer), so they can
// never disagree. Migration 0004 guards the same rules in the database.

// ledgerTx runs fn in one transaction on the writer connection. With durable, the commit is
// made at synchronous=FULL, so it is on disk, not only in the WAL, before the caller tells a
// person it happened. The pool's one connection is held for the whole call, so the pragma
// reaches the commit it is meant for and nothing else.
func (s *Store) ledgerTx(ctx context.Context, durable bool, fn func(tx *sql.Tx) error) error {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if s.engine == enginePostgres {
		return s.ledgerTxPG(ctx, conn, fn)
	}
	if durable {
		var was int
		if err := conn.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&was); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
			return err
		}
		// Put back after the commit, even if ctx has ended: left at FULL, the writes that
		// share the connection would only be slower.
		defer conn.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf(`PRAGMA synchronous = %d`, was))
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// ledgerTxPG is ledgerTx on PostgreSQL, whose commits are durable (synchronous_commit on):
// the transaction takes the ledger's advisory lock first, so ledger transactions run one at
// a time across processes, as SQLite's write lock runs them, and the posting ids past the
// largest are the holder's.
func (s *Store) ledgerTxPG(ctx context.Context, conn *sql.Conn, fn func(tx *sql.Tx) error) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, lockLedger); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// ledgerEntry is one side of a posting.
type ledgerEntry struct {
	account string
	amount  int64
}

// appendPosting appends one posting of kind in tx and returns its id. accrualID and
// redemptionID are 0 when the posting pays for neither. Returns an error, writing nothing,
// when the entries do not sum to zero.
func appendPosting(ctx context.Context, tx *sql.Tx, kind string, accrualID, redemptionID int64, memo string, at int64, entries ...ledgerEntry) (int64, error) {
	var sum int64
	for _, e := range entries {
		sum += e.amount
	}
	if sum != 0 || len(entries) < 2 {
		return 0, fmt.Errorf("ledger: a %s posting of %d entries sums to %d, not zero", kind, len(entries), sum)
	}
	// The transaction holds the writer lock, so max+1 cannot be taken by anyone else.
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(posting_id), 0) + 1 FROM ledger_entries`).Scan(&id); err != nil {
		return 0, err
	}
	for _, e := range entries {
		if _, err := tx.ExecContext(ctx, `INSERT INTO ledger_entries
				(posting_id, account, amount, kind, accrual_id, redemption_id, memo, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			id, e.account, e.amount, kind, nullID(accrualID), nullID(redemptionID), memo, at); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// Settle posts up to limit unposted accruals, oldest first, in one transaction: for each, a
// posting of -points on the issuer's account and +points on the consumer's, its posted_at,
// and the points added to the consumer's points_balance. It returns how many it posted; fewer
// than limit means none is left. Only accruals still unposted inside the writer's transaction
// are taken, so settlements running at once, or again after a crash, never post one twice.
// A lost commit (power failure) leaves its accruals unposted for the next run, so settlement
// does not pay for synchronous=FULL.
//
// An accrual that cannot be posted (points past rewards.MaxAwardPoints stored before the
// bound, a balance that would overflow) does not stop the others: the batch is then posted
// accrual by accrual, each under a savepoint, and the ones that fail are held (settle_error)
// so that later runs skip them. Returns, with the count posted, a *rewards.SettleError
// listing the held accruals; or the database's error, having posted nothing.
func (s *Store) Settle(ctx context.Context, limit int) (posted int, err error) {
	if limit <= 0 {
		return 0, nil
	}
	posted, err = s.settleBatch(ctx, limit)
	if err == nil || ctx.Err() != nil || IsBusy(err) {
		return posted, err
	}
	return s.settleEach(ctx, limit)
}

// settleBatch posts the batch set-wise, in four statements whatever its size, rather than
// three per accrual, to keep the writer (which acknowledgements wait for) held briefly. Every
// statement names the batch the same way: the unposted, unheld accruals up to upto.
func (s *Store) settleBatch(ctx context.Context, limit int) (posted int, err error) {
	err = s.ledgerTx(ctx, false, func(tx *sql.Tx) error {
		// On PostgreSQL an acknowledgement may hold an accrual id below upto and commit
		// between the statements below, each of which sees what has committed when it starts:
		// the posting would miss an accrual the balance and posted_at take. SHARE waits for the
		// transactions inserting accruals to end and holds new ones off until the commit, as
		// SQLite's write lock does.
		if s.engine == enginePostgres {
			if _, err := tx.ExecContext(ctx, `LOCK TABLE accruals IN SHARE MODE`); err != nil {
				return err
			}
		}
		var upto, base sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT max(id) FROM (SELECT id FROM accruals
			WHERE posted_at IS NULL AND settle_error IS NULL ORDER BY id LIMIT ?) AS batch`, limit).Scan(&upto); err != nil || !upto.Valid {
			return err
		}
		// The transaction holds the writer lock, so the posting ids past max are ours.
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(posting_id), 0) FROM ledger_entries`).Scan(&base); err != nil {
			return err
		}
		now := ms(s.Now())
		// One posting per accrual: the issuer's side, then the consumer's. The account
		// names are rewards.IssuerAccount and rewards.ConsumerAccount spelled in SQL.
		res, err := tx.ExecContext(ctx, `WITH batch AS (
				SELECT id, issuer_id, consumer_id, points, job_key, rule_id,
					?1 + row_number() OVER (ORDER BY id) AS posting
				FROM accruals WHERE posted_at IS NULL AND settle_error IS NULL AND id <= ?2)
			INSERT INTO ledger_entries (posting_id, account, amount, kind, accrual_id, memo, created_at)
			SELECT posting, CASE WHEN side = 0 THEN 'issuer:' || issuer_id ELSE 'consumer:' || consumer_id END,
				CASE WHEN side = 0 THEN -points ELSE points END, 'accrual', id, 'job ' || job_key || ', rule ' || rule_id, ?3
			FROM batch, (SELECT 0 AS side UNION ALL SELECT 1) AS sides
			ORDER BY posting, side`, base.Int64, upto.Int64, now)
		if err != nil {
			return err
		}
		entries, err := res.RowsAffected()
		if err != nil {
			return err
		}
		// Left to itself the planner groups along accruals_consumer, reading every accrual
		// ever made; the partial index reads only the batch.
		if _, err := tx.ExecContext(ctx, `UPDATE consumers SET points_balance = points_balance + b.points, updated_at = ?1
			FROM (SELECT consumer_id, sum(points) AS points FROM accruals `+s.either("INDEXED BY accruals_unposted", "")+`
				WHERE posted_at IS NULL AND settle_error IS NULL AND id <= ?2 GROUP BY consumer_id) AS b
			WHERE consumers.id = b.consumer_id`, now, upto.Int64); err != nil {
			return err
		}
		res, err = tx.ExecContext(ctx, `UPDATE accruals SET posted_at = ? WHERE posted_at IS NULL AND settle_error IS NULL AND id <= ?`, now, upto.Int64)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if entries != 2*n {
			return fmt.Errorf("settlement wrote %d ledger entries for %d accruals", entries, n)
		}
		posted = int(n)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return posted, nil
}

// settleEach posts up to limit accruals one by one, each under its own savepoint, after the
// set-wise batch failed: every accrual that can be posted is, and each one that cannot is
// held with its reason. Returns a *rewards.SettleError naming the held ones, if any.
func (s *Store) settleEach(ctx context.Context, limit int) (posted int, err error) {
	var held []rewards.HeldAccrual
	err = s.ledgerTx(ctx, false, func(tx *sql.Tx) error {
		posted, held = 0, nil
		rows, err := tx.QueryContext(ctx, `SELECT id, issuer_id, consumer_id, points, job_key, rule_id FROM accruals
			WHERE posted_at IS NULL AND settle_error IS NULL ORDER BY id LIMIT ?`, limit)
		if err != nil {
			return err
		}
		type accrual struct{ id, issuer, consumer, points, job, rule int64 }
		var batch []accrual
		for rows.Next() {
			var a accrual
			if err := rows.Scan(&a.id, &a.issuer, &a.consumer, &a.points, &a.job, &a.rule); err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := ms(s.Now())
		for _, a := range batch {
			if _, err := tx.ExecContext(ctx, `SAVEPOINT settle_one`); err != nil {
				return err
			}
			postErr := postAccrual(ctx, tx, a.id, a.issuer, a.consumer, a.points, fmt.Sprintf("job %d, rule %d", a.job, a.rule), now)
			if postErr == nil {
				posted++
			} else {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if _, err := tx.ExecContext(ctx, `ROLLBACK TO settle_one`); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `UPDATE accruals SET settle_error = ? WHERE id = ?`, postErr.Error(), a.id); err != nil {
					return err
				}
				held = append(held, rewards.HeldAccrual{ID: a.id, ConsumerID: a.consumer, Reason: postErr.Error()})
			}
			if _, err := tx.ExecContext(ctx, `RELEASE settle_one`); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(held) > 0 {
		return posted, &rewards.SettleError{Held: held}
	}
	return posted, nil
}

// postAccrual posts one accrual in tx: its posting, the consumer's balance, its posted_at.
func postAccrual(ctx context.Context, tx *sql.Tx, id, issuerID, consumerID, points int64, memo string, now int64) error {
	if points <= 0 || points > rewards.MaxAwardPoints {
		return fmt.Errorf("accrual %d: %d points, outside 1 to %d", id, points, rewards.MaxAwardPoints)
	}
	if _, err := appendPosting(ctx, tx, "accrual", id, 0, memo, now,
		ledgerEntry{rewards.IssuerAccount(issuerID), -points},
		ledgerEntry{rewards.ConsumerAccount(consumerID), points}); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE consumers SET points_balance = points_balance + ?, updated_at = ? WHERE id = ?`,
		points, now, consumerID); err != nil {
		return fmt.Errorf("accrual %d: consumer %d's balance: %w", id, consumerID, err)
	}
	_, err := tx.ExecContext(ctx, `UPDATE accruals SET posted_at = ? WHERE id = ?`, now, id)
	return err
}

// Correct posts a correction between an issuer and a consumer: positive points give her
// points from the issuer, negative ones take them back. memo says why, for the history.
// The commit is durable before it returns. Returns rewards.ErrNotFound if the consumer or the issuer
// does not exist, rewards.ErrInsufficientPoints (wrapped) if the correction would take her
// balance below zero, and an error for zero points or an empty memo.
func (s *Store) Correct(ctx context.Context, consumerID int64, issuerID int64, points int64, memo string) error {
	memo = strings.TrimSpace(memo)
	switch {
	case points == 0:
		return fmt.Errorf("correction: points must not be zero")
	case points < -rewards.MaxBudget || points > rewards.MaxBudget:
		return fmt.Errorf("correction: points must be from %d to %d", -rewards.MaxBudget, rewards.MaxBudget)
	case memo == "":
		return fmt.Errorf("correction: a memo must say why")
	}
	return s.ledgerTx(ctx, true, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM issuers WHERE id = ?`, issuerID).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("issuer %d: %w", issuerID, rewards.ErrNotFound)
		}
		balance, err := consumerBalanceTx(ctx, tx, consumerID)
		if err != nil {
			return err
		}
		after, ok := rewards.AddPoints(balance, points)
		if !ok {
			return fmt.Errorf("correction of %d points to consumer %d, whose balance is %d: the balance would overflow",
				points, consumerID, balance)
		}
		if after < 0 {
			return fmt.Errorf("correction of %d points to consumer %d, whose balance is %d: %w",
				points, consumerID, balance, rewards.ErrInsufficientPoints)
		}
		now := ms(s.Now())
		if _, err := appendPosting(ctx, tx, "correction", 0, 0, memo, now,
			ledgerEntry{rewards.IssuerAccount(issuerID), -points},
			ledgerEntry{rewards.ConsumerAccount(consumerID), points}); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE consumers SET points_balance = points_balance + ?, updated_at = ?
			WHERE id = ?`, points, now, consumerID)
		return err
	})
}

// consumerBalanceTx reads a consumer's posted balance inside a writer transaction. Returns
// rewards.ErrNotFound if there is no such consumer.
func consumerBalanceTx(ctx context.Context, tx *sql.Tx, consumerID int64) (int64, error) {
	var balance int64
	err := tx.QueryRowContext(ctx, `SELECT points_balance FROM consumers WHERE id = ?`, consumerID).Scan(&balance)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("consumer %d: %w", consumerID, rewards.ErrNotFound)
	}
	return balance, err
}

// LedgerSum returns the sum of every ledger entry, which double entry keeps at zero; anything
// else means the ledger is broken.
func (s *Store) LedgerSum(ctx context.Context) (int64, error) {
	var sum int64
	err := s.read.QueryRowContext(ctx, `SELECT coalesce(sum(amount), 0) FROM ledger_entries`).Scan(&sum)
	return sum, err
}

// AccountBalance returns the sum of a ledger account's entries ("issuer:7", "consumer:42",
// "redeemed"); an account with no entries has 0.
func (s *Store) AccountBalance(ctx context.Context, account string) (int64, error) {
	var sum int64
	err := s.read.QueryRowContext(ctx, `SELECT coalesce(sum(amount), 0) FROM ledger_entries WHERE account = ?`,
		account).Scan(&sum)
	return sum, err
}

// Account returns a consumer's posted balance, her pending points and up to historyLimit
// events of her history, newest first (0 or less: all), read from one snapshot so the three
// agree. Her history has one line per award, pending until settlement posts it, beside the
// acknowledgements that earned nothing, her redemptions and corrections: the award's
// acknowledgement and posting are the same points (Timeline keeps them apart). Returns
// rewards.ErrNotFound if there is no such consumer.
func (s *Store) Account(ctx context.Context, consumerID int64, historyLimit int) (*rewards.Account, error) {
	tx, err := s.read.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	a := &rewards.Account{ConsumerID: consumerID}
	err = tx.QueryRowContext(ctx, `SELECT points_balance,
			(SELECT coalesce(sum(points), 0) FROM accruals WHERE consumer_id = c.id AND posted_at IS NULL)
		FROM consumers c WHERE id = ?`, consumerID).Scan(&a.Balance, &a.Pending)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("consumer %d: %w", consumerID, rewards.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	limit := historyLimit
	if limit <= 0 {
		limit = math.MaxInt // all, in a LIMIT both engines read (PostgreSQL refuses -1)
	}
	// Each source gives its newest limit events; the newest limit of their union are among
	// those.
	acks, err := timelineAcks(ctx, tx, consumerID, limit)
	if err != nil {
		return nil, err
	}
	accruals, err := timelineAccruals(ctx, tx, consumerID, limit)
	if err != nil {
		return nil, err
	}
	entries, err := s.timelineEntries(ctx, tx, consumerID, limit)
	if err != nil {
		return nil, err
	}
	type event struct {
		rewards.AccountEvent
		order int // ties of time: the later step of the same moment first
	}
	var events []event
	for _, k := range acks {
		if k.Awarded {
			continue // its accrual is the line
		}
		detail := k.Channel + ": "
		switch {
		case k.RuleID == 0:
			detail += "no points: " + cmp.Or(k.Reason, "no rule of the campaign applies")
		default:
			detail += "no points under " + ledgerRuleText(k.RuleID, k.RuleDescription) + ": " + k.Reason
		}
		events = append(events, event{rewards.AccountEvent{At: k.At, Kind: rewards.EventAcknowledgement,
			JobKey: k.JobKey, JobName: k.JobName, Points: k.Points, Detail: detail}, 0})
	}
	for _, c := range accruals {
		detail := fmt.Sprintf("from %s under %s", c.IssuerName, ledgerRuleText(c.RuleID, c.RuleDescription))
		events = append(events, event{rewards.AccountEvent{At: c.At, Kind: rewards.EventAccrual,
			JobKey: c.JobKey, JobName: c.JobName, Points: c.Points, Detail: detail, Pending: !c.Posted}, 1})
	}
	for _, e := range entries {
		ev := rewards.AccountEvent{At: e.At, JobKey: e.JobKey, JobName: e.JobName, Points: e.Amount}
		switch e.Kind {
		case "accrual":
			continue // the posted award's line
		case "redemption":
			ev.Kind, ev.Detail = rewards.EventRedemption, e.Memo // the item's name
		default:
			ev.Kind, ev.Detail = rewards.EventCorrection, e.Memo+" ("+cmp.Or(e.IssuerName, e.Counter)+")"
		}
		events = append(events, event{ev, 2})
	}
	sort.SliceStable(events, func(i, j int) bool {
		if !events[i].At.Equal(events[j].At) {
			return events[i].At.After(events[j].At)
		}
		return events[i].order > events[j].order
	})
	if historyLimit > 0 && len(events) > historyLimit {
		events = events[:historyLimit]
	}
	a.History = make([]rewards.AccountEvent, len(events))
	for i, e := range events {
		a.History[i] = e.AccountEvent
	}
	return a, nil
}

func ledgerRuleText(id int64, description string) string {
	if description == "" {
		return fmt.Sprintf("rule %d", id)
	}
	return fmt.Sprintf("rule %d (%s)", id, description)
}

// AddCatalogItem adds a reward to the redemption catalog and sets it.ID. Returns an error
// naming the field for an item that fails rewards.CatalogItem.Validate.
func (s *Store) AddCatalogItem(ctx context.Context, it *rewards.CatalogItem) error {
	it.Name, it.Description = strings.TrimSpace(it.Name), strings.TrimSpace(it.Description)
	if err := it.Validate(); err != nil {
		return err
	}
	return s.write.QueryRowContext(ctx, `INSERT INTO catalog (name, description, cost, stock, created_at)
		VALUES (?, ?, ?, ?, ?) RETURNING id`, it.Name, it.Description, it.Cost, it.Stock, ms(s.Now())).Scan(&it.ID)
}

// Catalog lists the redemption catalog by cost, then name, out-of-stock items included.
func (s *Store) Catalog(ctx context.Context) ([]rewards.CatalogItem, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, name, description, cost, stock FROM catalog ORDER BY cost, name, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.CatalogItem
	for rows.Next() {
		var it rewards.CatalogItem
		if err := rows.Scan(&it.ID, &it.Name, &it.Description, &it.Cost, &it.Stock); err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// Redeem spends a consumer's points on a catalog item (redeemer 40), in one writer
// transaction that checks the stock and the balance, takes one from the stock, records the
// redemption, posts -cost on her account and +cost on "redeemed", and lowers her
// points_balance; redemptions at once queue on the writer, so together they can never
// overspend nor oversell. The commit is durable before it returns. Returns rewards.ErrNotFound if the
// consumer or the item does not exist, rewards.ErrOutOfStock or rewards.ErrInsufficientPoints
// (wrapped) when it cannot be had.
func (s *Store) Redeem(ctx context.Context, consumerID, itemID int64) (*rewards.Redemption, error) {
	var r *rewards.Redemption
	err := s.ledgerTx(ctx, true, func(tx *sql.Tx) error {
		r = &rewards.Redemption{ConsumerID: consumerID, ItemID: itemID, At: fromMS(ms(s.Now()))}
		var stock int64
		err := tx.QueryRowContext(ctx, `SELECT name, cost, stock FROM catalog WHERE id = ?`, itemID).
			Scan(&r.ItemName, &r.Cost, &stock)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("catalog item %d: %w", itemID, rewards.ErrNotFound)
		}
		if err != nil {
			return err
		}
		balance, err := consumerBalanceTx(ctx, tx, consumerID)
		if err != nil {
			return err
		}
		if stock <= 0 {
			return fmt.Errorf("%s: %w", r.ItemName, rewards.ErrOutOfStock)
		}
		if balance < r.Cost {
			return fmt.Errorf("%s costs %d points and the balance is %d: %w", r.ItemName, r.Cost, balance,
				rewards.ErrInsufficientPoints)
		}
		now := ms(r.At)
		if _, err := tx.ExecContext(ctx, `UPDATE catalog SET stock = stock - 1 WHERE id = ?`, itemID); err != nil {
			return err
		}
		r.Voucher = rewards.NewVoucher()
		if err := tx.QueryRowContext(ctx, `INSERT INTO redemptions (consumer_id, item_id, cost, created_at, voucher)
			VALUES (?, ?, ?, ?, ?) RETURNING id`, consumerID, itemID, r.Cost, now, r.Voucher).Scan(&r.ID); err != nil {
			return err
		}
		if _, err := appendPosting(ctx, tx, "redemption", 0, r.ID, r.ItemName, now,
			ledgerEntry{rewards.ConsumerAccount(consumerID), -r.Cost},
			ledgerEntry{rewards.AccountRedeemed, r.Cost}); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE consumers SET points_balance = points_balance - ?, updated_at = ?
			WHERE id = ?`, r.Cost, now, consumerID); err != nil {
			return err
		}
		r.BalanceAfter = balance - r.Cost
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redeem item %d for consumer %d: %w", itemID, consumerID, err)
	}
	return r, nil
}
