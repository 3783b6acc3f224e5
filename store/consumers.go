package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"pointpost/rewards"
)

// importBatch is how many consumers one import transaction writes: enough that the commit
// costs nothing per row, few enough that the writer is not held from the post office and the
// mail servers for more than a few tens of milliseconds.
const importBatch = 5000

// upsertConsumerSQL inserts a consumer or updates the one with the same e-mail address.
//
// On update, an empty value (and a NULL birth year) keeps what is stored, so that a file with
// fewer columns, or a blank cell, does not wipe what an earlier import or the consumer gave.
// Attributes are merged: json_patch writes the new keys over the stored object and keeps the
// others. status and points_balance are never touched, so a re-import cannot re-activate an
// unsubscribed, bounced or suppressed address, nor change a balance the ledger owns. ?11 is
// the format as given, empty when the file has none: new consumers then read text.
const upsertConsumerSQL = `INSERT INTO consumers (email, first_name, last_name, city, region, country,
		postal_code, birth_year, gender, interests, format, attributes, status, created_at, updated_at)
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, coalesce(nullif(?11, ''), 'text'), ?12, ?13, ?14, ?14)
	ON CONFLICT (email) DO UPDATE SET
		first_name  = iif(excluded.first_name <> '', excluded.first_name, first_name),
		last_name   = iif(excluded.last_name <> '', excluded.last_name, last_name),
		city        = iif(excluded.city <> '', excluded.city, city),
		region      = iif(excluded.region <> '', excluded.region, region),
		country     = iif(excluded.country <> '', excluded.country, country),
		postal_code = iif(excluded.postal_code <> '', excluded.postal_code, postal_code),
		birth_year  = coalesce(excluded.birth_year, birth_year),
		gender      = iif(excluded.gender <> '', excluded.gender, gender),
		interests   = iif(excluded.interests <> '', excluded.interests, interests),
		format      = iif(?11 <> '', excluded.format, format),
		attributes  = iif(excluded.attributes = '{}', attributes, json_patch(attributes, excluded.attributes)),
		updated_at  = excluded.updated_at`

// upsertConsumerPG is upsertConsumerSQL for PostgreSQL: the stored columns named by their
// table, and jsonb's || for json_patch, the same merge for attributes, a flat object of
// strings.
const upsertConsumerPG = consumerInsert + consumerValues + `
	ON CONFLICT (email) DO UPDATE SET` + upsertKeepPG + `,
		format      = CASE WHEN ?11 <> '' THEN excluded.format ELSE consumers.format END`

// consumerInsert, consumerValues and consumerUnnest are the parts of the statements that write
// consumers: one (?1 to ?14), or a batch, one array per column (consumerUnnest). A batch's
// new consumers take their ids in the batch's order, as one at a time they would, but its
// rows are written in the order of their addresses, so that two imports of overlapping files
// wait for each other instead of deadlocking.
const (
	consumerInsert = `INSERT INTO consumers (` + consumerFields + `)`
	consumerFields = `email, first_name, last_name, city, region, country,
		postal_code, birth_year, gender, interests, format, attributes, status, created_at, updated_at`
	consumerValues = `
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, coalesce(nullif(?11, ''), 'text'), ?12, ?13, ?14, ?14)`
	consumerUnnest = `INSERT INTO consumers (id, ` + consumerFields + `)
	SELECT id, email, first_name, last_name, city, region, country, postal_code, nullif(birth_year, 0),
		gender, interests, coalesce(nullif(format, ''), 'text'), attributes, status, ?14, ?14
	FROM (SELECT nextval((SELECT pg_get_serial_sequence('consumers', 'id'))::regclass) AS id, *
		FROM unnest(?1::text[], ?2::text[], ?3::text[], ?4::text[], ?5::text[], ?6::text[], ?7::text[],
			?8::bigint[], ?9::text[], ?10::text[], ?11::text[], ?12::text[], ?13::text[])
			AS v(email, first_name, last_name, city, region, country, postal_code, birth_year, gender,
				interests, format, attributes, status)) AS v
	ORDER BY email`
)

// upsertKeepPG is upsertConsumerPG's update but for the format, which a batch sets apart
// (setFormatsPG): whether a row gave one is not in excluded.
const upsertKeepPG = `
		first_name  = CASE WHEN excluded.first_name <> '' THEN excluded.first_name ELSE consumers.first_name END,
		last_name   = CASE WHEN excluded.last_name <> '' THEN excluded.last_name ELSE consumers.last_name END,
		city        = CASE WHEN excluded.city <> '' THEN excluded.city ELSE consumers.city END,
		region      = CASE WHEN excluded.region <> '' THEN excluded.region ELSE consumers.region END,
		country     = CASE WHEN excluded.country <> '' THEN excluded.country ELSE consumers.country END,
		postal_code = CASE WHEN excluded.postal_code <> '' THEN excluded.postal_code ELSE consumers.postal_code END,
		birth_year  = coalesce(excluded.birth_year, consumers.birth_year),
		gender      = CASE WHEN excluded.gender <> '' THEN excluded.gender ELSE consumers.gender END,
		interests   = CASE WHEN excluded.interests <> '' THEN excluded.interests ELSE consumers.interests END,
		attributes  = CASE WHEN excluded.attributes = '{}' THEN consumers.attributes
			ELSE (consumers.attributes::jsonb || excluded.attributes::jsonb)::text END,
		updated_at  = excluded.updated_at`

// setFormatsPG gives the consumers of a batch that named a format that format, after
// upsertConsumersPG wrote the rest (and locked their rows).
const setFormatsPG = `UPDATE consumers SET format = v.format
	FROM unnest(?::text[], ?::text[]) AS v(email, format)
	WHERE consumers.email = v.email AND consumers.format <> v.format`

// consumerBatchPG is the statement that writes a batch of distinct addresses, one array per
// column, on conflict doing what onConflict says, and returns how many rows it inserted: a
// row it updated carries the lock the update took, so its xmax is not 0.
func consumerBatchPG(onConflict string) string {
	return `WITH written AS (` + consumerUnnest + onConflict + `
	RETURNING xmax = 0 AS inserted)
	SELECT count(*) FILTER (WHERE inserted) FROM written`
}

var (
	upsertConsumersPG = consumerBatchPG(`
	ON CONFLICT (email) DO UPDATE SET` + upsertKeepPG)
	enrollConsumersPG = consumerBatchPG(enrollConflictPG)
)

// UpsertConsumers writes a batch of consumers in one transaction, matching existing ones by
// e-mail address (trimmed and lower-cased here too), and reports how many rows it inserted and
// how many it updated; an address twice in the batch counts once as each. New consumers take
// c.Status, or active when it is empty, and a zero balance. For existing ones see
// upsertConsumerSQL: empty fields keep the stored value, attributes merge, status and balance
// stay. Returns an error, having written nothing, if a consumer has no e-mail address or a
// value the table refuses (a format other than text or html), or the context ends.
func (s *Store) UpsertConsumers(ctx context.Context, batch []rewards.Consumer) (inserted, updated int, err error) {
	return s.writeConsumers(ctx, batch, upsertWrite, "")
}

// enrollConsumerSQL inserts a consumer an issuer enrolls; for an address that is a consumer
// already it merges the issuer's attributes alone: her profile is hers (and an operator's) to
// change, not an issuer's.
const enrollConsumerSQL = `INSERT INTO consumers (email, first_name, last_name, city, region, country,
		postal_code, birth_year, gender, interests, format, attributes, status, created_at, updated_at)
	VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, coalesce(nullif(?11, ''), 'text'), ?12, ?13, ?14, ?14)
	ON CONFLICT (email) DO UPDATE SET
		attributes  = json_patch(attributes, excluded.attributes),
		updated_at  = excluded.updated_at
	WHERE excluded.attributes <> '{}'`

// enrollConsumerPG is enrollConsumerSQL for PostgreSQL (see upsertConsumerPG).
const enrollConsumerPG = consumerInsert + consumerValues + enrollConflictPG

// enrollConflictPG is enrollConsumerPG's update, for one consumer or a batch.
const enrollConflictPG = `
	ON CONFLICT (email) DO UPDATE SET
		attributes  = (consumers.attributes::jsonb || excluded.attributes::jsonb)::text,
		updated_at  = excluded.updated_at
	WHERE excluded.attributes <> '{}'`

// EnrollConsumers writes a batch of consumers as the issuer with slug enrolls them: a new
// address becomes a consumer with the profile given; an address that is a consumer already
// keeps her whole profile, status and balance. Attributes are written under the issuer's
// namespace (rewards.IssuerAttribute), so they never touch the program's or another
// issuer's. Counts and errors are UpsertConsumers'; the counts are not for the issuer's
// eyes, since they tell which addresses were enrolled before.
func (s *Store) EnrollConsumers(ctx context.Context, slug string, batch []rewards.Consumer) (inserted, updated int, err error) {
	if slug == "" {
		return 0, 0, errors.New("enroll consumers: no issuer named")
	}
	return s.writeConsumers(ctx, batch, enrollWrite, slug)
}

// consumerWrite is how UpsertConsumers or EnrollConsumers writes: rowSQL and rowPG, a
// consumer at a time (upsertConsumerSQL's parameters); batchPG, a batch at a time on
// PostgreSQL (consumerBatchPG's), followed by setFormatsPG when setFormats.
type consumerWrite struct {
	rowSQL, rowPG, batchPG string
	setFormats             bool
}

var (
	upsertWrite = consumerWrite{upsertConsumerSQL, upsertConsumerPG, upsertConsumersPG, true}
	enrollWrite = consumerWrite{enrollConsumerSQL, enrollConsumerPG, enrollConsumersPG, false}
)

// consumerRow is a consumer of a batch as its columns are written; birthYear 0 is none.
type consumerRow struct {
	email, firstName, lastName, city, region, country, postalCode, gender, interests, format,
	attributes, status string
	birthYear int64
}

// consumerRows makes batch's rows, attributes renamed into the namespace of the issuer with
// slug. Returns an error for a consumer without an e-mail address.
func consumerRows(batch []rewards.Consumer, slug string) ([]consumerRow, error) {
	rows := make([]consumerRow, len(batch))
	for i := range batch {
		c := &batch[i]
		email := strings.ToLower(strings.TrimSpace(c.Email))
		if email == "" {
			return nil, fmt.Errorf("consumer %d of the batch has no e-mail address", i+1)
		}
		attrs := "{}"
		if len(c.Attributes) > 0 {
			stored := c.Attributes
			if slug != "" {
				stored = make(map[string]string, len(c.Attributes))
				for k, v := range c.Attributes {
					stored[rewards.IssuerAttribute(slug, k)] = v
				}
			}
			b, err := json.Marshal(stored)
			if err != nil {
				return nil, err
			}
			attrs = string(b)
		}
		status := c.Status
		if status == "" {
			status = rewards.StatusActive
		}
		rows[i] = consumerRow{email: email, firstName: c.FirstName, lastName: c.LastName, city: c.City,
			region: c.Region, country: c.Country, postalCode: c.PostalCode, gender: c.Gender,
			interests: interestsColumn(c.Interests), format: string(c.Format), attributes: attrs,
			status: string(status), birthYear: int64(c.BirthYear)}
	}
	return rows, nil
}

// writeConsumers writes batch in one transaction as w says, attributes renamed into the
// namespace of the issuer with slug, and counts the rows inserted and updated.
func (s *Store) writeConsumers(ctx context.Context, batch []rewards.Consumer, w consumerWrite, slug string) (inserted, updated int, err error) {
	if len(batch) == 0 {
		return 0, 0, nil
	}
	rows, err := consumerRows(batch, slug)
	if err != nil {
		return 0, 0, err
	}
	now := ms(s.Now())
	if s.engine == enginePostgres {
		inserted, err = s.writeConsumersPG(ctx, rows, w, now)
		if err != nil {
			return 0, 0, err
		}
		return inserted, len(batch) - inserted, nil
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	// Rows with an id past the largest one at the start are the batch's new rows: the writer
	// lock is ours for the transaction, and SQLite gives new rows max(id)+1.
	var maxID int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM consumers`).Scan(&maxID); err != nil {
		return 0, 0, err
	}
	if err := writeEachConsumer(ctx, tx, w.rowSQL, rows, now); err != nil {
		return 0, 0, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM consumers WHERE id > ?`, maxID).Scan(&n); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, err
	}
	return n, len(batch) - n, nil
}

// writeEachConsumer runs query (upsertConsumerSQL's parameters) for each of rows in tx.
// Returns the first error, naming the consumer.
func writeEachConsumer(ctx context.Context, tx *sql.Tx, query string, rows []consumerRow, now int64) error {
	stmt, err := tx.PrepareContext(ctx, query)
	if err != nil {
		return err
	}
	defer stmt.Close()
	// mattn/go-sqlite3 starts a goroutine per statement to watch a cancellable context, a
	// cost the rows of a million-row import do not need: they run without it, and the
	// context is checked every few hundred rows instead.
	rowCtx := context.WithoutCancel(ctx)
	for i := range rows {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		r := &rows[i]
		var birthYear any
		if r.birthYear != 0 {
			birthYear = r.birthYear
		}
		if _, err := stmt.ExecContext(rowCtx, r.email, r.firstName, r.lastName, r.city, r.region, r.country,
			r.postalCode, birthYear, r.gender, r.interests, r.format, r.attributes, r.status, now); err != nil {
			return fmt.Errorf("consumer %s: %w", r.email, err)
		}
	}
	return nil
}

// writeConsumersPG writes rows on PostgreSQL in one transaction, a statement for all of them
// (w.batchPG) rather than one each, and returns how many it inserted, as the statement counts
// them: another process may be inserting consumers too, so ids say nothing. An address that
// is in rows again goes in a later statement, its second time in the second, and so on, since
// one statement cannot touch a row twice; the later statements touch only rows the first has
// locked, so they keep its order of locking (consumerUnnest). When a statement
// fails, the rows are tried one at a time, in a transaction rolled back, to name the consumer
// that fails.
func (s *Store) writeConsumersPG(ctx context.Context, rows []consumerRow, w consumerWrite, now int64) (inserted int, err error) {
	var rounds [][]*consumerRow
	seen := make(map[string]int, len(rows))
	for i := range rows {
		k := seen[rows[i].email]
		seen[rows[i].email] = k + 1
		if k == len(rounds) {
			rounds = append(rounds, make([]*consumerRow, 0, len(rows)>>k))
		}
		rounds[k] = append(rounds[k], &rows[i])
	}
	write := func(tx *sql.Tx) (inserted int, err error) {
		var cols [12][]string // the text columns, in the order of the parameters
		var birthYears []int64
		var formatEmails, formats []string
		for _, round := range rounds {
			for i := range cols {
				cols[i] = cols[i][:0]
			}
			birthYears, formatEmails, formats = birthYears[:0], formatEmails[:0], formats[:0]
			for _, r := range round {
				for i, v := range [...]string{r.email, r.firstName, r.lastName, r.city, r.region, r.country,
					r.postalCode, r.gender, r.interests, r.format, r.attributes, r.status} {
					cols[i] = append(cols[i], v)
				}
				birthYears = append(birthYears, r.birthYear)
				if r.format != "" && w.setFormats {
					formatEmails, formats = append(formatEmails, r.email), append(formats, r.format)
				}
			}
			var n int
			if err := tx.QueryRowContext(ctx, w.batchPG, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5],
				cols[6], birthYears, cols[7], cols[8], cols[9], cols[10], cols[11], now).Scan(&n); err != nil {
				return 0, err
			}
			inserted += n
			if len(formats) > 0 && n < len(round) { // new consumers have theirs already
				if _, err := tx.ExecContext(ctx, setFormatsPG, formatEmails, formats); err != nil {
					return 0, err
				}
			}
		}
		return inserted, nil
	}

	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if inserted, err = write(tx); err == nil {
		return inserted, tx.Commit()
	}
	tx.Rollback()
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	tx, txErr := s.write.BeginTx(ctx, nil)
	if txErr != nil {
		return 0, err
	}
	defer tx.Rollback()
	if rowErr := writeEachConsumer(ctx, tx, w.rowPG, rows, now); rowErr != nil {
		return 0, rowErr
	}
	return 0, err
}

// interestsColumn is the stored form of a consumer's interests, ';golf;tennis;', or empty
// when there are none.
func interestsColumn(interests []string) string {
	interests = rewards.NormalizeInterests(interests)
	if len(interests) == 0 {
		return ""
	}
	return ";" + strings.Join(interests, ";") + ";"
}

// ImportResult counts what ImportConsumersCSV did. Rows is the number of records after the
// header; each was Inserted, Updated, or Bad (reported and skipped).
type ImportResult struct {
	Rows, Inserted, Updated, Bad int
}

// importChunk is a batch of parsed records on its way from the CSV reader to the writer.
type importChunk struct {
	consumers []rewards.Consumer
	bad       []rewards.RowError
	err       error // what ended the reading, other than the end of the file
	last      bool
}

// ImportConsumersCSV reads a consumer CSV (see rewards.NewConsumerCSV for its columns) and
// upserts its consumers in transactions of importBatch, holding no more of the file than a few
// of those. report, if not nil, is called for each record that is skipped, with its line and
// why, on the caller's goroutine. Returns an error for a header it cannot use, a read error, a
// failed write or the end of the context; batches written before the error stay written, and
// the result counts those.
func (s *Store) ImportConsumersCSV(ctx context.Context, r io.Reader, report func(rewards.RowError)) (ImportResult, error) {
	var res ImportResult
	cr, err := rewards.NewConsumerCSV(r)
	if err != nil {
		return res, err
	}
	restore, err := s.tuneForImport(ctx)
	if err != nil {
		return res, err
	}
	defer restore()

	// Parsing and validating cost about a sixth of writing; a goroutine reads the next batch
	// while this one writes the last, so on two cores that sixth comes free. Three chunks
	// circulate: one being read, one waiting, one being written.
	readCtx, stop := context.WithCancel(ctx)
	defer stop()
	full := make(chan *importChunk, 1)
	free := make(chan *importChunk, 3)
	for range 3 {
		free <- &importChunk{consumers: make([]rewards.Consumer, 0, importBatch)}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(full)
		for {
			var ch *importChunk
			select {
			case ch = <-free:
			case <-readCtx.Done():
				return
			}
			readChunk(cr, ch)
			select {
			case full <- ch:
			case <-readCtx.Done():
				return
			}
			if ch.last {
				return
			}
		}
	}()

	for ch := range full {
		for _, e := range ch.bad {
			if report != nil {
				report(e)
			}
		}
		ins, upd, werr := s.UpsertConsumers(ctx, ch.consumers)
		if werr != nil {
			err = werr
			break
		}
		res.Rows += len(ch.consumers) + len(ch.bad)
		res.Bad += len(ch.bad)
		res.Inserted += ins
		res.Updated += upd
		if ch.err != nil {
			err = ch.err
			break
		}
		free <- ch
	}
	if err == nil {
		err = ctx.Err() // the reader stops quietly when the context ends
	}
	stop()
	<-done
	return res, err
}

// readChunk fills ch with the next importBatch records of cr, good or bad, and marks it last
// at the end of the file or a read error.
func readChunk(cr *rewards.ConsumerCSV, ch *importChunk) {
	ch.consumers, ch.bad, ch.err, ch.last = ch.consumers[:0], ch.bad[:0], nil, false
	for len(ch.consumers)+len(ch.bad) < importBatch {
		c, err := cr.Next()
		if err == nil {
			ch.consumers = append(ch.consumers, c)
			continue
		}
		var rowErr *rewards.RowError
		if errors.As(err, &rowErr) {
			ch.bad = append(ch.bad, *rowErr)
			continue
		}
		if err != io.EOF {
			ch.err = err
		}
		ch.last = true
		return
	}
}

// tuneForImport gives the writer connection, for the length of an import, a page cache that
// holds the e-mail index of a million consumers and a WAL checkpoint every 64 MiB instead of
// every 4 MiB. Random e-mail addresses dirty most of the index's pages in every batch; with
// the defaults each commit was followed by a checkpoint copying them all back, which was half
// the time of a million-row import. The writer pool has exactly one connection, so the
// pragmas reach the connection every write uses; restore puts back the values found and
// checkpoints the WAL. Two imports at once may leave the import values in place, which costs
// memory, not correctness.
func (s *Store) tuneForImport(ctx context.Context) (restore func(), err error) {
	if s.engine == enginePostgres {
		return func() {}, nil // SQLite's page cache and checkpoints only
	}
	var cacheSize, autoCheckpoint int
	if err := s.write.QueryRowContext(ctx, `PRAGMA cache_size`).Scan(&cacheSize); err != nil {
		return nil, err
	}
	if err := s.write.QueryRowContext(ctx, `PRAGMA wal_autocheckpoint`).Scan(&autoCheckpoint); err != nil {
		return nil, err
	}
	if _, err := s.exec(ctx, `PRAGMA cache_size = -65536`); err != nil {
		return nil, err
	}
	if _, err := s.exec(ctx, `PRAGMA wal_autocheckpoint = 16384`); err != nil {
		return nil, err
	}
	return func() {
		bg := context.WithoutCancel(ctx)
		_, _ = s.exec(bg, fmt.Sprintf(`PRAGMA cache_size = %d`, cacheSize))
		_, _ = s.exec(bg, fmt.Sprintf(`PRAGMA wal_autocheckpoint = %d`, autoCheckpoint))
		_, _ = s.exec(bg, `PRAGMA wal_checkpoint(PASSIVE)`)
	}, nil
}

// ConsumerByEmail returns the consumer with the address (compared trimmed and lower-cased).
// Returns rewards.ErrNotFound if there is none.
func (s *Store) ConsumerByEmail(ctx context.Context, email string) (*rewards.Consumer, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	return s.consumerWhere(ctx, "email = ?", email)
}

// ConsumerByID returns the consumer with id. Returns rewards.ErrNotFound if there is none.
func (s *Store) ConsumerByID(ctx context.Context, id int64) (*rewards.Consumer, error) {
	return s.consumerWhere(ctx, "id = ?", id)
}

func (s *Store) consumerWhere(ctx context.Context, where string, key any) (*rewards.Consumer, error) {
	c := &rewards.Consumer{}
	err := scanConsumer(s.read.QueryRowContext(ctx, `SELECT `+consumerColumns+` FROM consumers c WHERE `+where, key), c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("consumer %v: %w", key, rewards.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// consumerColumns are a consumer's columns (table alias c) in the order scanConsumer reads.
const consumerColumns = `c.id, c.email, c.first_name, c.last_name, c.city, c.region, c.country,
	c.postal_code, coalesce(c.birth_year, 0), c.gender, c.interests, c.format, c.attributes, c.status,
	c.points_balance`

// scanConsumer reads a row of before's columns followed by consumerColumns into c.
func scanConsumer(row interface{ Scan(...any) error }, c *rewards.Consumer, before ...any) error {
	var interests, format, attrs, status string
	dst := append(before, &c.ID, &c.Email, &c.FirstName, &c.LastName, &c.City, &c.Region, &c.Country,
		&c.PostalCode, &c.BirthYear, &c.Gender, &interests, &format, &attrs, &status, &c.PointsBalance)
	if err := row.Scan(dst...); err != nil {
		return err
	}
	c.Interests = splitInterests(interests)
	c.Format = rewards.Format(format)
	c.Status = rewards.ConsumerStatus(status)
	if attrs != "{}" && attrs != "" {
		if err := json.Unmarshal([]byte(attrs), &c.Attributes); err != nil {
			return fmt.Errorf("consumer %d attributes: %w", c.ID, err)
		}
	}
	return nil
}

// CountConsumers returns how many consumers there are, whatever their status.
func (s *Store) CountConsumers(ctx context.Context) (int, error) {
	var n int
	err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM consumers`).Scan(&n)
	return n, err
}

// SetConsumerStatus sets the status of the consumer with the address, as an unsubscribe, a
// bounce or an operator does. Returns rewards.ErrNotFound if there is no such consumer, and an error
// for a status that is not one of rewards' four.
func (s *Store) SetConsumerStatus(ctx context.Context, email string, status rewards.ConsumerStatus) error {
	switch status {
	case rewards.StatusActive, rewards.StatusUnsubscribed, rewards.StatusBounced, rewards.StatusSuppressed:
	default:
		return fmt.Errorf("consumer status %q is not active, unsubscribed, bounced or suppressed", status)
	}
	email = strings.ToLower(strings.TrimSpace(email))
	res, err := s.exec(ctx, `UPDATE consumers SET status = ?, updated_at = ? WHERE email = ?`,
		string(status), ms(s.Now()), email)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("consumer %s: %w", email, rewards.ErrNotFound)
	}
	s.statusGen.Add(1)
	return nil
}

// Unsubscribe stops all mail to a consumer: she is never selected again, and mail servers
// skip her pending deliveries. A bounced or suppressed consumer stays so. Returns
// rewards.ErrNotFound if there is no such consumer.
// The change is on disk (synchronous=FULL) before it returns: she is told it is done.
func (s *Store) Unsubscribe(ctx context.Context, consumerID int64) error {
	var n int64
	err := s.ledgerTx(ctx, true, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE consumers SET status = 'unsubscribed', updated_at = ?
			WHERE id = ? AND status = 'active'`, ms(s.Now()), consumerID)
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		if _, err := s.ConsumerByID(ctx, consumerID); err != nil {
			return err
		}
		return nil
	}
	s.statusGen.Add(1)
	return nil
}

// StatusGeneration is a counter that moves, after the commit, whenever this Store has
// taken a consumer out of 'active' (SetConsumerStatus, Unsubscribe, RecordBounce,
// RecordOutcomes' refusals that bounce an address). A mail server reads it at a claim and
// again before each send: while it has not moved, the statuses the claim read still hold,
// and checking costs one atomic load. Writes by another process on the same file do not
// move it.
func (s *Store) StatusGeneration() uint64 { return s.statusGen.Load() }

// ConsumerStatuses returns the current status of each of the consumers with ids, in one
// query however many there are; ids with no consumer are absent from the map. Returns the
// database's error or the context's.
func (s *Store) ConsumerStatuses(ctx context.Context, ids []int64) (map[int64]rewards.ConsumerStatus, error) {
	out := make(map[int64]rewards.ConsumerStatus, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	// One JSON array bound to one parameter: no limit on the number of variables, and one
	// statement text for the statement cache.
	list := make([]byte, 0, 1+len(ids)*8)
	list = append(list, '[')
	for i, id := range ids {
		if i > 0 {
			list = append(list, ',')
		}
		list = strconv.AppendInt(list, id, 10)
	}
	list = append(list, ']')
	rows, err := s.read.QueryContext(ctx, s.either(`SELECT id, status FROM consumers
		WHERE id IN (SELECT value FROM json_each(?))`, `SELECT id, status FROM consumers
		WHERE id IN (SELECT value::bigint FROM json_array_elements_text(?::json))`), string(list))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var status string
		if err := rows.Scan(&id, &status); err != nil {
			return nil, err
		}
		out[id] = rewards.ConsumerStatus(status)
	}
	return out, rows.Err()
}
