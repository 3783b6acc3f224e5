package toolbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// ScheduleStore is what scheduling reads to price a stored job against its issuer's budget.
type ScheduleStore interface {
	CheckSelection(ctx context.Context, where string, args []any, raw bool) (int, error)
	JobRules(ctx context.Context, jobKey int64) ([]rewards.AwardRule, error)
	RulesSpent(ctx context.Context, issuerID int64) (map[int64]int64, error)
	BudgetOfIssuer(ctx context.Context, issuerID int64) (budget, spent int64, err error)
}

// scheduler schedules drafts, from the toolbox's review page and from the API alike: a job
// whose worst case exceeds what is left of its issuer's budget is refused to issuers, and
// an operator's override is recorded on the job.
type scheduler struct {
	store ScheduleStore
	po    *postoffice.PostOffice
}

// worstCase prices job as stored: its selection counted now (up to its client count), its
// rules (retired ones award nothing) and its issuer's budget.
func (s scheduler) worstCase(ctx context.Context, job *postoffice.Job) (costView, error) {
	c := costView{ClientCount: job.ClientCount}
	raw := false
	if sel, err := postoffice.ParseSelection([]byte(job.Selection)); err == nil {
		raw = sel.IsRaw()
	}
	n, err := s.store.CheckSelection(postoffice.WithSelectionOwner(ctx, job.IssuerSlug), job.SelectionSQL, job.SelectionArgs, raw)
	if err != nil {
		return c, err
	}
	c.Counted, c.Matching, c.Recipients = true, n, min(n, job.ClientCount)
	rules, err := s.store.JobRules(ctx, job.Key)
	if err != nil {
		return c, err
	}
	spent, err := s.store.RulesSpent(ctx, job.IssuerID)
	if err != nil {
		return c, err
	}
	for _, r := range rules {
		if !r.Retired {
			c.Rules = append(c.Rules, priceRule(r, spent[r.ID], c.Recipients, job.Start, job.Stop))
		}
	}
	budget, used, err := s.store.BudgetOfIssuer(ctx, job.IssuerID)
	if err != nil {
		return c, err
	}
	if budget > 0 {
		c.HasBudget, c.Budget, c.Spent = true, budget, used
	}
	c.total()
	return c, nil
}

// OverBudgetError is a schedule refused because job Key may award up to Most points, more
// than the Left of its issuer's budget.
type OverBudgetError struct {
	Key, Most, Left int64
}

func (e *OverBudgetError) Error() string {
	return fmt.Sprintf("campaign %d may cost up to %s points, %s more than the %s left of its issuer's budget: "+
		"an issuer cannot schedule it. Lower its client count or its rules' points, or ask an operator to schedule it over the budget",
		e.Key, thousands(e.Most), thousands(e.Most-e.Left), thousands(e.Left))
}

// schedule moves the draft job to scheduled. When its worst case exceeds its issuer's budget
// left, an issuer is refused (*OverBudgetError) and an operator must override, which the job
// records with who (by) and when. Returns a *postoffice.FieldError for a draft not complete
// enough to send.
func (s scheduler) schedule(ctx context.Context, job *postoffice.Job, operator, override bool, by string) (costView, error) {
	cost, err := s.worstCase(ctx, job)
	if err != nil {
		return cost, err
	}
	if !cost.Over {
		return cost, s.po.Schedule(ctx, job.Key)
	}
	if !operator || !override {
		return cost, &OverBudgetError{Key: job.Key, Most: cost.Most, Left: cost.Left}
	}
	return cost, s.po.ScheduleOverBudget(ctx, job.Key, by)
}

// ScheduleAsOperator schedules the draft job for an operator outside the toolbox (the
// command line) as the toolbox does: over its issuer's budget it is refused with an
// *OverBudgetError unless override is set, and the job then records by as who overrode.
func ScheduleAsOperator(ctx context.Context, st ScheduleStore, po *postoffice.PostOffice, job *postoffice.Job, override bool, by string) error {
	_, err := scheduler{store: st, po: po}.schedule(ctx, job, true, override, by)
	return err
}

// scheduleReview is what the review page shows before a draft is scheduled.
type scheduleReview struct {
	Job      *postoffice.Job
	Operator bool
	// StartsNow is set when the start date has come: scheduled, it sends at once.
	StartsNow bool
	Cost      costView
	// NotReady says what the draft lacks before it can be scheduled.
	NotReady string
	// Refused says why the last attempt was refused.
	Refused string
	CanTest bool
}

func (d campaignPages) scheduler() scheduler { return scheduler{store: d.campaigns, po: d.po} }

// reviewSchedule shows what scheduling the draft commits to: recipients, start, the most it
// can cost against the budget left, a test send; and the button that confirms.
func (d campaignPages) reviewSchedule(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	if job.State != postoffice.JobDraft {
		d.redirect(w, r, fmt.Sprintf("/jobs/%d", job.Key), fmt.Sprintf("Campaign %d is %s already: only a draft can be scheduled.", job.Key, job.State))
		return
	}
	d.renderReview(w, r, job, http.StatusOK, "")
}

func (d campaignPages) renderReview(w http.ResponseWriter, r *http.Request, job *postoffice.Job, status int, refused string) {
	ctx := r.Context()
	v := scheduleReview{Job: job, Operator: userFrom(ctx).Operator(), StartsNow: !d.now().Before(job.Start),
		Refused: refused, CanTest: d.canTest}
	cost, err := d.scheduler().worstCase(ctx, job)
	if err != nil && !errors.Is(err, postoffice.ErrTooManySelections) {
		d.fail(w, r, err)
		return
	}
	if err != nil {
		cost.Problem = "The selection could not be counted now: " + err.Error()
	}
	v.Cost = cost
	var fe *postoffice.FieldError
	if err := d.po.Ready(ctx, job); errors.As(err, &fe) {
		v.NotReady = readyText(fe)
	} else if err != nil {
		d.fail(w, r, err)
		return
	}
	p := d.page(w, r, fmt.Sprintf("Schedule campaign %d", job.Key), "campaigns")
	p.Styles = append(p.Styles, "editor.css")
	w.WriteHeader(status)
	d.render(w, r, scheduleReviewPage(p, v))
}

// readyText says what a draft lacks, in the editor's words.
func readyText(fe *postoffice.FieldError) string {
	switch fe.Field {
	case "text":
		return "It has no message yet: write a text or an HTML message."
	case "text.subject":
		return "Its text message has no subject yet."
	case "html.subject":
		return "Its HTML message has no subject yet."
	}
	return fe.Error()
}

// scheduleJob schedules a draft once its review is confirmed; a post without the
// confirmation shows the review.
func (d campaignPages) scheduleJob(w http.ResponseWriter, r *http.Request) {
	job := d.jobFor(w, r)
	if job == nil {
		return
	}
	review := fmt.Sprintf("/jobs/%d/schedule", job.Key)
	if why := actSchedule.refusal(job, d.now()); why != "" {
		d.redirect(w, r, fmt.Sprintf("/jobs/%d", job.Key), why)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		d.redirect(w, r, review, "Review the campaign before it is scheduled.")
		return
	}
	ctx := r.Context()
	u := userFrom(ctx)
	_, err := d.scheduler().schedule(ctx, job, u.Operator(), r.PostFormValue("override") == "yes", u.Email)
	var over *OverBudgetError
	var fe *postoffice.FieldError
	switch {
	case errors.As(err, &over):
		status := http.StatusForbidden
		if u.Operator() {
			status = http.StatusConflict // an operator may: the box was not ticked
		}
		d.renderReview(w, r, job, status, over.Error())
		return
	case errors.As(err, &fe):
		d.renderReview(w, r, job, http.StatusUnprocessableEntity, readyText(fe))
		return
	case rewards.ErrorCode(err) == rewards.ECONFLICT:
		d.redirect(w, r, fmt.Sprintf("/jobs/%d", job.Key), fmt.Sprintf("Campaign %d was scheduled or stopped meanwhile.", job.Key))
		return
	case err != nil:
		d.fail(w, r, err)
		return
	}
	done := "scheduled: it starts " + editorTime(job.Start) + " UTC"
	if !d.now().Before(job.Start) {
		done = "scheduled: it starts sending now"
	}
	if r.PostFormValue("override") == "yes" && u.Operator() {
		if got, err := d.jobs.Job(ctx, job.Key); err == nil && got.BudgetOverride.By != "" {
			done += ", over its issuer's budget (the override is recorded)"
		}
	}
	d.redirect(w, r, fmt.Sprintf("/jobs/%d", job.Key), fmt.Sprintf("Campaign %d %s.", job.Key, done))
}

// overrideText says on a job who scheduled it over its issuer's budget, and when.
func overrideText(o postoffice.BudgetOverride) string {
	return fmt.Sprintf("Scheduled over its issuer's budget by %s on %s UTC.", o.By, o.At.UTC().Format("2 Jan 2006 15:04"))
}
