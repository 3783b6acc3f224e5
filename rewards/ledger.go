package rewards

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The ledger (claim 14) is double-entry and append-only: every posting is a set of entries
// that sum to zero over these accounts, and a mistake is put right by a new posting.
const (
	// AccountRedeemed holds the points consumers spent on rewards (redeemer 40).
	AccountRedeemed = "redeemed"
)

// IssuerAccount is the ledger account of the points an issuer has given out; it runs
// negative.
func IssuerAccount(issuerID int64) string { return "issuer:" + strconv.FormatInt(issuerID, 10) }

// ConsumerAccount is the ledger account of a consumer's posted points.
func ConsumerAccount(consumerID int64) string {
	return "consumer:" + strconv.FormatInt(consumerID, 10)
}

// ErrOutOfStock is returned, wrapped, when a catalog item has no stock left.
var ErrOutOfStock = errors.New("out of stock")

// ErrInsufficientPoints is returned, wrapped, when a redemption or a correction would take a
// consumer's balance below zero.
var ErrInsufficientPoints = errors.New("not enough points")

// Event kinds of an account's history.
const (
	EventAcknowledgement = "acknowledgement"
	EventAccrual         = "accrual"
	EventPosting         = "posting"
	EventRedemption      = "redemption"
	EventCorrection      = "correction"
)

// Account is a consumer's points as the account page shows them.
type Account struct {
	ConsumerID int64
	// Balance is the posted points, the ones she can redeem.
	Balance int64
	// Pending is the points accrued in issuers' toolbox accounts and not yet settled.
	Pending int64
	// History is newest first.
	History []AccountEvent
}

// AccountEvent is one line of an account's history: an award (an accrual, pending or
// posted), an acknowledgement that earned nothing, a redemption or a correction.
type AccountEvent struct {
	At time.Time
	// Kind is one of the Event constants.
	Kind    string
	JobKey  int64 // 0 when the event belongs to no job
	JobName string
	// Points is what the event added to (or, negative, took from) the account, or, for an
	// award, will add once posted.
	Points int64
	Detail string
	// Pending marks an award not yet posted to the balance; settlement posts it and the same
	// line then counts in the balance.
	Pending bool
}

// CatalogItem is a reward consumers may redeem points for (redeemer 40).
type CatalogItem struct {
	ID          int64
	Name        string
	Description string
	Cost        int64 // points
	Stock       int64
}

// Validate checks an item's fields. Returns an error naming the field.
func (it *CatalogItem) Validate() error {
	switch {
	case strings.TrimSpace(it.Name) == "":
		return fmt.Errorf("name: a catalog item needs a name")
	case it.Cost <= 0 || it.Cost > MaxBudget:
		return CheckPoints("cost", it.Cost, MaxBudget)
	case it.Stock < 0:
		return fmt.Errorf("stock: must not be negative")
	}
	return nil
}

// Redemption is a reward a consumer redeemed.
type Redemption struct {
	ID         int64     `json:"id"`
	ConsumerID int64     `json:"consumer_id"`
	ItemID     int64     `json:"item_id"`
	ItemName   string    `json:"item_name"`
	Cost       int64     `json:"cost"`
	At         time.Time `json:"at"`
	// Voucher is the code she claims the reward with (NewVoucher).
	Voucher string `json:"voucher,omitempty"`
	// BalanceAfter is the consumer's balance once this redemption was paid; Redeem sets it,
	// lists leave it zero.
	BalanceAfter int64 `json:"balance_after,omitempty"`
}

// SettleStore posts accruals into consumer accounts.
type SettleStore interface {
	// Settle posts up to limit unposted accruals, oldest first, and says how many. The ones
	// it could not post it holds and reports in a *SettleError, having posted the others.
	Settle(ctx context.Context, limit int) (int, error)
}

// HeldAccrual is an accrual settlement could not post, and why; it stays pending and later
// settlements skip it.
type HeldAccrual struct {
	ID, ConsumerID int64
	Reason         string
}

// SettleError reports the accruals a settlement held; everything else it took it posted.
type SettleError struct {
	Held []HeldAccrual
}

func (e *SettleError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "settlement held %d accrual(s) it could not post:", len(e.Held))
	for _, h := range e.Held {
		fmt.Fprintf(&b, " accrual %d of consumer %d (%s);", h.ID, h.ConsumerID, h.Reason)
	}
	return strings.TrimSuffix(b.String(), ";")
}

// DefaultSettleInterval and DefaultSettleBatch are what a Settler uses when its fields are
// zero. A batch is one writer transaction that acknowledgements queue behind: measured on a
// ledger of 100,000 postings, 1000 accruals for 1000 consumers held the writer 20-50 ms, too
// near the acknowledgements' 50 ms p99; 250 hold it about 6 ms and still settle some 40,000
// accruals a second.
const (
	DefaultSettleInterval = 5 * time.Second
	DefaultSettleBatch    = 250
)

// Settler is the settlement loop of claim 14: on an interval it posts what issuers' toolbox
// accounts accrued into the consumers' accounts. The store makes settling idempotent, so a
// Settler has no state of its own and Run and SettleNow may run at once.
type Settler struct {
	Store    SettleStore
	Interval time.Duration // 0: DefaultSettleInterval
	// Batch bounds one transaction, so settlement never holds the writer for long.
	Batch  int          // 0: DefaultSettleBatch
	Logger *slog.Logger // nil: discard
}

// Run settles everything pending at once and then every Interval, until ctx ends; it then
// returns nil. A failed pass is logged and tried again at the next tick, because a busy
// database is no reason to stop paying consumers.
func (s *Settler) Run(ctx context.Context) error {
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultSettleInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.SettleNow(ctx); err != nil && ctx.Err() == nil {
			s.logger().Error("settlement", "err", err, "posted", n)
		} else if n > 0 {
			s.logger().Info("settlement", "posted", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SettleNow posts every pending accrual, in batches, and returns how many it posted. Returns
// the store's error or the context's, with the count of what was posted before it; or, having
// posted everything else, a *SettleError listing every accrual the store held.
func (s *Settler) SettleNow(ctx context.Context) (int, error) {
	batch := s.Batch
	if batch <= 0 {
		batch = DefaultSettleBatch
	}
	total := 0
	var held []HeldAccrual
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := s.Store.Settle(ctx, batch)
		total += n
		var se *SettleError
		if errors.As(err, &se) {
			// The held ones are skipped from now on: go on with the rest.
			held = append(held, se.Held...)
			n += len(se.Held)
		} else if err != nil {
			return total, err
		}
		if n < batch {
			if len(held) > 0 {
				return total, &SettleError{Held: held}
			}
			return total, nil
		}
	}
}

func (s *Settler) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Timeline is everything pointpost did with one consumer, for the operators' question "why
// did (or didn't) this consumer get points?" (`pointpost consumer EMAIL`). Lists are oldest
// first.
type Timeline struct {
	Consumer Consumer `json:"consumer"`
	// Balance is the posted balance kept on the consumer (the one e-mails show);
	// LedgerBalance is the sum of her ledger account. They agree unless something is wrong.
	Balance       int64 `json:"balance"`
	LedgerBalance int64 `json:"ledger_balance"`
	// Pending is accrued and not yet settled.
	Pending          int64              `json:"pending"`
	Deliveries       []TimelineDelivery `json:"deliveries"`
	Acknowledgements []TimelineAck      `json:"acknowledgements"`
	Accruals         []TimelineAccrual  `json:"accruals"`
	Postings         []TimelineEntry    `json:"postings"`
	Redemptions      []Redemption       `json:"redemptions"`
}

// TimelineDelivery is one invitation (client mail entry 220) and its job.
type TimelineDelivery struct {
	ID          int64     `json:"id"`
	JobKey      int64     `json:"job_key"`
	JobName     string    `json:"job_name"`
	IssuerName  string    `json:"issuer_name"`
	JobStart    time.Time `json:"job_start,omitzero"`
	JobStop     time.Time `json:"job_stop,omitzero"`
	Sent        bool      `json:"sent"`
	Received    bool      `json:"received"`
	Rejected    bool      `json:"rejected"`
	Failed      bool      `json:"failed"`
	RetryCount  int       `json:"retry_count"`
	LastError   string    `json:"last_error,omitempty"`
	SentAt      time.Time `json:"sent_at,omitzero"`
	ReceivedAt  time.Time `json:"received_at,omitzero"`
	NextAttempt time.Time `json:"next_attempt_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
}

// TimelineAck is one acknowledgement and what one rule decided about it.
type TimelineAck struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	JobKey  int64     `json:"job_key"`
	JobName string    `json:"job_name"`
	Channel string    `json:"channel"`
	Source  string    `json:"source,omitempty"`
	// RuleID is 0 when no rule of the job applies to the channel.
	RuleID          int64  `json:"rule_id,omitempty"`
	RuleDescription string `json:"rule_description,omitempty"`
	RuleType        string `json:"rule_type,omitempty"`
	Awarded         bool   `json:"awarded"`
	Points          int64  `json:"points"`
	// Reason says why nothing was awarded.
	Reason string `json:"reason,omitempty"`
}

// TimelineAccrual is points held in an issuer's toolbox account for the consumer.
type TimelineAccrual struct {
	ID              int64     `json:"id"`
	At              time.Time `json:"at"`
	JobKey          int64     `json:"job_key"`
	JobName         string    `json:"job_name"`
	RuleID          int64     `json:"rule_id"`
	RuleDescription string    `json:"rule_description,omitempty"`
	IssuerID        int64     `json:"issuer_id"`
	IssuerName      string    `json:"issuer_name"`
	Points          int64     `json:"points"`
	Posted          bool      `json:"posted"`
	PostedAt        time.Time `json:"posted_at,omitzero"`
}

// TimelineEntry is one entry of the consumer's ledger account.
type TimelineEntry struct {
	ID        int64     `json:"id"`
	PostingID int64     `json:"posting_id"`
	At        time.Time `json:"at"`
	// Kind is accrual (a settlement), redemption or correction.
	Kind   string `json:"kind"`
	Amount int64  `json:"amount"`
	// Counter is the other side of the posting: issuer:ID or redeemed; IssuerName names
	// the issuer when it is one.
	Counter      string `json:"counter"`
	IssuerName   string `json:"issuer_name,omitempty"`
	AccrualID    int64  `json:"accrual_id,omitempty"`
	RedemptionID int64  `json:"redemption_id,omitempty"`
	JobKey       int64  `json:"job_key,omitempty"`
	JobName      string `json:"job_name,omitempty"`
	Memo         string `json:"memo,omitempty"`
}

// timelineProfile is the consumer as the timeline's JSON shows her, in snake_case like the
// rest of it; Consumer itself carries no JSON tags.
type timelineProfile struct {
	ID            int64             `json:"id"`
	Email         string            `json:"email"`
	FirstName     string            `json:"first_name"`
	LastName      string            `json:"last_name"`
	City          string            `json:"city,omitempty"`
	Region        string            `json:"region,omitempty"`
	Country       string            `json:"country,omitempty"`
	PostalCode    string            `json:"postal_code,omitempty"`
	BirthYear     int               `json:"birth_year,omitempty"`
	Gender        string            `json:"gender,omitempty"`
	Interests     []string          `json:"interests,omitempty"`
	Format        Format            `json:"format"`
	Attributes    map[string]string `json:"attributes,omitempty"`
	Status        ConsumerStatus    `json:"status"`
	PointsBalance int64             `json:"points_balance"`
}

// timelineJSON is Timeline with its consumer as a timelineProfile: the outer Consumer field
// hides the embedded one.
type timelineJSON struct {
	*timelinePlain
	Consumer timelineProfile `json:"consumer"`
}

// timelinePlain is Timeline without its methods, so marshalling it does not recurse.
type timelinePlain Timeline

// MarshalJSON writes the timeline with snake_case keys throughout.
func (t Timeline) MarshalJSON() ([]byte, error) {
	c := t.Consumer
	return json.Marshal(timelineJSON{timelinePlain: (*timelinePlain)(&t), Consumer: timelineProfile{
		ID: c.ID, Email: c.Email, FirstName: c.FirstName, LastName: c.LastName, City: c.City,
		Region: c.Region, Country: c.Country, PostalCode: c.PostalCode, BirthYear: c.BirthYear,
		Gender: c.Gender, Interests: c.Interests, Format: c.Format, Attributes: c.Attributes,
		Status: c.Status, PointsBalance: c.PointsBalance,
	}})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (t *Timeline) UnmarshalJSON(b []byte) error {
	v := timelineJSON{timelinePlain: (*timelinePlain)(t)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	p := v.Consumer
	t.Consumer = Consumer{
		ID: p.ID, Email: p.Email, FirstName: p.FirstName, LastName: p.LastName, City: p.City,
		Region: p.Region, Country: p.Country, PostalCode: p.PostalCode, BirthYear: p.BirthYear,
		Gender: p.Gender, Interests: p.Interests, Format: p.Format, Attributes: p.Attributes,
		Status: p.Status, PointsBalance: p.PointsBalance,
	}
	return nil
}

// timelineLine is one event of the chronological report; order breaks ties of time so an
// invitation comes before its acknowledgement, and that before its accrual and posting.
type timelineLine struct {
	at    time.Time
	order int
	job   string
	text  string
}

// WriteText prints the timeline as a report for an operator: the profile and balance, every
// event oldest first, and then, invitation by invitation, why points were or were not
// earned. Returns the first write error.
func (t *Timeline) WriteText(w io.Writer) error {
	p := &errWriter{w: w}
	c := &t.Consumer
	name := c.FullName()
	if name == "" {
		name = "(no name)"
	}
	p.printf("Consumer %d: %s <%s>\n", c.ID, name, c.Email)
	p.printf("  status %s, reads %s", c.Status, c.Format)
	if place := strings.Join(nonEmpty(c.City, c.Region, c.Country), ", "); place != "" {
		p.printf(", %s", place)
	}
	if len(c.Interests) > 0 {
		p.printf(", interests %s", strings.Join(c.Interests, ", "))
	}
	p.printf("\n")
	p.printf("Balance: %s posted, %s pending settlement\n", pointsText(t.Balance), pointsText(t.Pending))
	if t.LedgerBalance != t.Balance {
		p.printf("WARNING: the ledger says %s; the balance kept on the consumer says %s\n",
			pointsText(t.LedgerBalance), pointsText(t.Balance))
	}

	lines := t.events()
	p.printf("\nTimeline (oldest first):\n")
	if len(lines) == 0 {
		p.printf("  nothing yet: no invitation, acknowledgement or points\n")
	}
	for _, l := range lines {
		at := "(time unknown)         "
		if !l.at.IsZero() {
			at = l.at.UTC().Format("2006-01-02 15:04:05 UTC")
		}
		if l.job != "" {
			p.printf("  %s  %s: %s\n", at, l.job, l.text)
		} else {
			p.printf("  %s  %s\n", at, l.text)
		}
	}

	p.printf("\nWhy (or why not) points, invitation by invitation:\n")
	jobs := t.jobKeys()
	if len(jobs) == 0 {
		p.printf("  she has not been invited to any campaign, so she could not earn points\n")
	}
	for _, key := range jobs {
		p.printf("  %s\n", t.explain(key))
	}
	return p.err
}

// events merges every list into the chronological report.
func (t *Timeline) events() []timelineLine {
	var lines []timelineLine
	for _, d := range t.Deliveries {
		job := jobLabel(d.JobKey, d.JobName)
		switch {
		case d.Sent:
			lines = append(lines, timelineLine{d.SentAt, 0, job, fmt.Sprintf("invitation sent (from %s)", d.IssuerName)})
		case d.Rejected:
			lines = append(lines, timelineLine{d.UpdatedAt, 0, job, "invitation rejected by the receiving server: " + orNone(d.LastError)})
		case d.Failed:
			lines = append(lines, timelineLine{d.UpdatedAt, 0, job,
				fmt.Sprintf("invitation given up after %d retries: %s", d.RetryCount, orNone(d.LastError))})
		case d.RetryCount > 0:
			lines = append(lines, timelineLine{d.UpdatedAt, 0, job, fmt.Sprintf("invitation not sent yet: %d retries, next attempt %s, last error: %s",
				d.RetryCount, d.NextAttempt.UTC().Format(time.RFC3339), orNone(d.LastError))})
		default:
			lines = append(lines, timelineLine{d.JobStart, 0, job, "selected for the campaign, invitation not sent yet"})
		}
	}
	for _, a := range t.Acknowledgements {
		lines = append(lines, timelineLine{a.At, 1, jobLabel(a.JobKey, a.JobName), ackText(a)})
	}
	for _, a := range t.Accruals {
		text := fmt.Sprintf("%s accrued in %s's account under %s", pointsText(a.Points), a.IssuerName, ruleLabel(a.RuleID, a.RuleDescription))
		if a.Posted {
			text += ", posted " + a.PostedAt.UTC().Format("2006-01-02 15:04:05 UTC")
		} else {
			text += ", pending settlement"
		}
		lines = append(lines, timelineLine{a.At, 2, jobLabel(a.JobKey, a.JobName), text})
	}
	redeemed := map[int64]bool{}
	for _, r := range t.Redemptions {
		redeemed[r.ID] = true
	}
	for _, e := range t.Postings {
		var text string
		from := e.Counter
		if e.IssuerName != "" {
			from = e.IssuerName
		}
		switch {
		case e.Kind == "accrual":
			// The memo repeats the job and rule the line already names.
			text = fmt.Sprintf("%s posted to her account from %s (accrual %d)", signedPoints(e.Amount), from, e.AccrualID)
		case e.Kind == "redemption" && redeemed[e.RedemptionID]:
			continue // the redemption's own line says it
		case e.Kind == "redemption":
			text = fmt.Sprintf("%s paid to %s for redemption %d", signedPoints(e.Amount), from, e.RedemptionID)
		default:
			text = fmt.Sprintf("correction of %s against %s: %s", signedPoints(e.Amount), from, orNone(e.Memo))
		}
		job := ""
		if e.JobKey != 0 {
			job = jobLabel(e.JobKey, e.JobName)
		}
		lines = append(lines, timelineLine{e.At, 3, job, text})
	}
	for _, r := range t.Redemptions {
		lines = append(lines, timelineLine{r.At, 4, "", fmt.Sprintf("redeemed %q (item %d) for %s, taken from her account",
			r.ItemName, r.ItemID, pointsText(r.Cost))})
	}
	sort.SliceStable(lines, func(i, j int) bool {
		if !lines[i].at.Equal(lines[j].at) {
			return lines[i].at.Before(lines[j].at)
		}
		return lines[i].order < lines[j].order
	})
	return lines
}

// jobKeys is every job the consumer was invited to or acknowledged, in key order.
func (t *Timeline) jobKeys() []int64 {
	seen := map[int64]bool{}
	var keys []int64
	add := func(k int64) {
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, d := range t.Deliveries {
		add(d.JobKey)
	}
	for _, a := range t.Acknowledgements {
		add(a.JobKey)
	}
	for _, a := range t.Accruals {
		add(a.JobKey)
	}
	slices.Sort(keys)
	return keys
}

// explain says in one line what became of one invitation.
func (t *Timeline) explain(key int64) string {
	var d *TimelineDelivery
	for i := range t.Deliveries {
		if t.Deliveries[i].JobKey == key {
			d = &t.Deliveries[i]
		}
	}
	var acks []TimelineAck
	for _, a := range t.Acknowledgements {
		if a.JobKey == key {
			acks = append(acks, a)
		}
	}
	var posted, pending int64
	for _, a := range t.Accruals {
		if a.JobKey != key {
			continue
		}
		if a.Posted {
			posted += a.Points
		} else {
			pending += a.Points
		}
	}
	name := ""
	switch {
	case d != nil:
		name = d.JobName
	case len(acks) > 0:
		name = acks[0].JobName
	}
	var parts []string
	switch {
	case d == nil:
		parts = append(parts, "no invitation on record")
	case d.Rejected:
		parts = append(parts, "never delivered: rejected ("+orNone(d.LastError)+"), so nothing could be earned")
	case d.Failed:
		parts = append(parts, "never delivered: given up after retries ("+orNone(d.LastError)+"), so nothing could be earned")
	case !d.Sent:
		parts = append(parts, "not sent yet, so nothing could be earned yet")
	case len(acks) == 0:
		if !d.JobStop.IsZero() {
			parts = append(parts, fmt.Sprintf("sent; she has not replied or pressed Submit (the campaign awards until %s)",
				d.JobStop.UTC().Format("2006-01-02 15:04 UTC")))
		} else {
			parts = append(parts, "sent; she has not replied or pressed Submit")
		}
	default:
		parts = append(parts, "sent and acknowledged")
	}
	var awarded int64
	var refusals []string
	for _, a := range acks {
		if a.Awarded {
			awarded += a.Points
			continue
		}
		reason := a.Reason
		if a.RuleID == 0 && reason == "" {
			reason = "no rule of the campaign awards a " + a.Channel
		}
		if reason = a.Channel + ": " + orNone(reason); !slices.Contains(refusals, reason) {
			refusals = append(refusals, reason)
		}
	}
	if len(acks) > 0 {
		parts = append(parts, fmt.Sprintf("awarded %s", pointsText(awarded)))
	}
	if len(refusals) > 0 {
		parts = append(parts, "refused: "+strings.Join(refusals, "; "))
	}
	if posted > 0 || pending > 0 {
		parts = append(parts, fmt.Sprintf("%s posted, %s pending settlement", pointsText(posted), pointsText(pending)))
	}
	return jobLabel(key, name) + ": " + strings.Join(parts, "; ")
}

func ackText(a TimelineAck) string {
	via := a.Channel + " acknowledged"
	if a.Source != "" {
		via += " (" + a.Source + ")"
	}
	switch {
	case a.Awarded:
		return fmt.Sprintf("%s: %s awarded under %s", via, pointsText(a.Points), ruleLabel(a.RuleID, a.RuleDescription))
	case a.RuleID == 0:
		reason := a.Reason
		if reason == "" {
			reason = "no rule of the campaign awards a " + a.Channel
		}
		return fmt.Sprintf("%s: no points: %s", via, reason)
	default:
		return fmt.Sprintf("%s: no points under %s: %s", via, ruleLabel(a.RuleID, a.RuleDescription), orNone(a.Reason))
	}
}

func jobLabel(key int64, name string) string {
	if name == "" {
		return fmt.Sprintf("job %d", key)
	}
	return fmt.Sprintf("job %d %q", key, name)
}

func ruleLabel(id int64, description string) string {
	if description == "" {
		return fmt.Sprintf("rule %d", id)
	}
	return fmt.Sprintf("rule %d %q", id, description)
}

func pointsText(n int64) string {
	if n == 1 || n == -1 {
		return fmt.Sprintf("%d point", n)
	}
	return fmt.Sprintf("%d points", n)
}

// signedPoints writes a ledger amount with its sign, "+10 points".
func signedPoints(n int64) string {
	if n > 0 {
		return "+" + pointsText(n)
	}
	return pointsText(n)
}

func orNone(s string) string {
	if s == "" {
		return "no reason recorded"
	}
	return s
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// errWriter keeps the first write error so a report can be printed without checking each
// line.
type errWriter struct {
	w   io.Writer
	err error
}

func (p *errWriter) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
