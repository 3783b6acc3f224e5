package toolbox

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"pointpost/rewards"
)

func (d campaignPages) ruleRoutes(r chi.Router) {
	r.Get("/rules", d.ruleList)
	r.Get("/rules/new", d.newRule)
	r.Post("/rules/new", d.createRule)
	r.Get("/rules/{id}/edit", d.editRule)
	r.Post("/rules/{id}/edit", d.updateRule)
	r.Post("/rules/{id}/retire", d.retireRule)
}

// ruleRow is a rule as the list shows it.
type ruleRow struct {
	Rule   rewards.AwardRule
	Issuer string
	Spent  int64
}

// ruleList shows the award rules of the user's issuer (every issuer's for operators).
func (d campaignPages) ruleList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u := userFrom(ctx)
	issuers, err := d.campaigns.Issuers(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	spent, err := d.campaigns.RulesSpent(ctx, issuerScope(ctx))
	if err != nil {
		d.fail(w, r, err)
		return
	}
	var rows []ruleRow
	for _, iss := range issuers {
		if !u.MaySee(iss.ID) {
			continue
		}
		rules, err := d.campaigns.Rules(ctx, iss.ID)
		if err != nil {
			d.fail(w, r, err)
			return
		}
		for _, rule := range rules {
			rows = append(rows, ruleRow{Rule: rule, Issuer: iss.Slug, Spent: spent[rule.ID]})
		}
	}
	d.render(w, r, ruleListPage(d.page(w, r, "Award rules", "rules"), rows, u.Operator()))
}

// ruleForm is the award-rule page's form.
type ruleForm struct {
	ID       int64
	Retired  bool
	Operator bool
	Issuer   string
	Issuers  []rewards.Issuer
	Fields   ruleFields
	Errors   map[string]string
}

func (f *ruleForm) setErr(field, reason string) {
	if f.Errors == nil {
		f.Errors = map[string]string{}
	}
	if _, ok := f.Errors[field]; !ok {
		f.Errors[field] = reason
	}
}

// ruleFieldsOf fills the form from a stored rule.
func ruleFieldsOf(r *rewards.AwardRule) ruleFields {
	rf := ruleFields{Description: r.Description, Type: string(r.Type), Points: strconv.FormatInt(r.Points, 10),
		Frequency: string(r.Frequency), IssuerURL: r.IssuerURL, SuccessURL: r.SuccessURL}
	if r.Period > 0 {
		rf.Period = strconv.FormatInt(int64(r.Period/time.Hour), 10)
	}
	if r.MaxTimes > 0 {
		rf.MaxTimes = strconv.Itoa(r.MaxTimes)
	}
	if !r.Start.IsZero() {
		rf.Start = r.Start.UTC().Format(editorTimeLayout)
	}
	if !r.Stop.IsZero() {
		rf.Stop = r.Stop.UTC().Format(editorTimeLayout)
	}
	if r.Budget > 0 {
		rf.Budget = strconv.FormatInt(r.Budget, 10)
	}
	return rf
}

// awardRule reads the form into a rule and checks it as the store will. Returns false, with
// the errors set beside the fields, when it is wrong.
func (rf ruleFields) awardRule(setErr func(field, reason string)) (rewards.AwardRule, bool) {
	if rf.Type == "" {
		setErr("rule_type", "choose what the consumer does to earn")
		return rewards.AwardRule{}, false
	}
	spec, ok := rf.spec(setErr)
	if !ok {
		return rewards.AwardRule{}, false
	}
	r := rewards.AwardRule{Description: spec.Description, Type: rewards.RuleType(spec.Type), Points: spec.Points,
		Frequency: rewards.Frequency(spec.Frequency), MaxTimes: spec.MaxTimes, IssuerURL: spec.IssuerURL,
		SuccessURL: spec.SuccessURL, Budget: spec.Budget}
	if r.Frequency == "" {
		r.Frequency = rewards.FrequencyOnce
	}
	if spec.Period != "" {
		r.Period, _ = time.ParseDuration(spec.Period) // spec wrote it as "Nh"
	}
	r.Start, _ = time.Parse(time.RFC3339, spec.Start)
	r.Stop, _ = time.Parse(time.RFC3339, spec.Stop)
	if err := r.Validate(); err != nil {
		field, reason, _ := strings.Cut(err.Error(), ": ")
		setErr("rule_"+field, reason)
		return rewards.AwardRule{}, false
	}
	return r, true
}

// ruleFor returns the rule named by the URL's {id} if the user may see it; otherwise it
// answers 404 (whether the rule is another issuer's or does not exist) and returns nil.
func (d campaignPages) ruleFor(w http.ResponseWriter, r *http.Request) *rewards.AwardRule {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil {
		d.notFound(w, r)
		return nil
	}
	rule, err := d.campaigns.Rule(r.Context(), id)
	if err != nil {
		d.fail(w, r, err)
		return nil
	}
	if !userFrom(r.Context()).MaySee(rule.IssuerID) {
		d.notFound(w, r)
		return nil
	}
	return rule
}

func (d campaignPages) newRule(w http.ResponseWriter, r *http.Request) {
	f := &ruleForm{Fields: ruleFields{Frequency: "once"}}
	if err := d.fillRuleForm(r, f); err != nil {
		d.fail(w, r, err)
		return
	}
	d.render(w, r, ruleEditPage(d.page(w, r, "New award rule", "rules"), f))
}

func (d campaignPages) fillRuleForm(r *http.Request, f *ruleForm) error {
	u := userFrom(r.Context())
	f.Operator = u.Operator()
	if !f.Operator {
		f.Issuer = u.IssuerSlug
		return nil
	}
	issuers, err := d.campaigns.Issuers(r.Context())
	f.Issuers = issuers
	return err
}

func (d campaignPages) createRule(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		http.Error(w, "The form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	f := &ruleForm{Issuer: strings.TrimSpace(r.PostForm.Get("issuer")), Fields: readRuleFields(r.PostForm)}
	if err := d.fillRuleForm(r, f); err != nil {
		d.fail(w, r, err)
		return
	}
	issuerID := userFrom(ctx).IssuerID
	if f.Operator {
		issuerID = 0
		for _, iss := range f.Issuers {
			if iss.Slug == f.Issuer {
				issuerID = iss.ID
			}
		}
		if issuerID == 0 {
			f.setErr("issuer", "choose the issuer whose rule this is")
		}
	}
	rule, ok := f.Fields.awardRule(f.setErr)
	if ok && issuerID != 0 {
		rule.IssuerID = issuerID
		if err := d.campaigns.CreateRule(ctx, &rule); err != nil {
			d.fail(w, r, err)
			return
		}
		d.redirect(w, r, "/rules", fmt.Sprintf("Rule %d made: pick it in a campaign's award rules.", rule.ID))
		return
	}
	p := d.page(w, r, "New award rule", "rules")
	w.WriteHeader(http.StatusUnprocessableEntity)
	d.render(w, r, ruleEditPage(p, f))
}

func (d campaignPages) editRule(w http.ResponseWriter, r *http.Request) {
	rule := d.ruleFor(w, r)
	if rule == nil {
		return
	}
	f := &ruleForm{ID: rule.ID, Retired: rule.Retired, Fields: ruleFieldsOf(rule)}
	d.render(w, r, ruleEditPage(d.page(w, r, fmt.Sprintf("Award rule %d", rule.ID), "rules"), f))
}

func (d campaignPages) updateRule(w http.ResponseWriter, r *http.Request) {
	old := d.ruleFor(w, r)
	if old == nil {
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "The form could not be read: "+err.Error(), http.StatusBadRequest)
		return
	}
	f := &ruleForm{ID: old.ID, Retired: old.Retired, Fields: readRuleFields(r.PostForm)}
	rule, ok := f.Fields.awardRule(f.setErr)
	if ok {
		rule.ID, rule.IssuerID = old.ID, old.IssuerID
		if err := d.campaigns.UpdateRule(r.Context(), &rule); err != nil {
			d.fail(w, r, err)
			return
		}
		d.redirect(w, r, "/rules", fmt.Sprintf("Rule %d saved: the change applies to acknowledgements from now on.", rule.ID))
		return
	}
	p := d.page(w, r, fmt.Sprintf("Award rule %d", old.ID), "rules")
	w.WriteHeader(http.StatusUnprocessableEntity)
	d.render(w, r, ruleEditPage(p, f))
}

func (d campaignPages) retireRule(w http.ResponseWriter, r *http.Request) {
	rule := d.ruleFor(w, r)
	if rule == nil {
		return
	}
	if err := d.campaigns.RetireRule(r.Context(), rule.IssuerID, rule.ID); err != nil {
		d.fail(w, r, err)
		return
	}
	d.redirect(w, r, "/rules", fmt.Sprintf("Rule %d retired: it awards nothing more, and its history stays.", rule.ID))
}

// rulePeriodText writes a rule's period the way people say it.
func rulePeriodText(p time.Duration) string {
	switch {
	case p <= 0:
		return "–"
	case p%(7*24*time.Hour) == 0:
		return ruleUnits(int64(p/(7*24*time.Hour)), "week")
	case p%(24*time.Hour) == 0:
		return ruleUnits(int64(p/(24*time.Hour)), "day")
	case p%time.Hour == 0:
		return ruleUnits(int64(p/time.Hour), "hour")
	}
	return p.String()
}

func ruleUnits(n int64, unit string) string {
	if n == 1 {
		return unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// ruleDatesText writes when a rule awards.
func ruleDatesText(r rewards.AwardRule) string {
	switch {
	case r.Start.IsZero() && r.Stop.IsZero():
		return "always"
	case r.Stop.IsZero():
		return "from " + editorTime(r.Start)
	case r.Start.IsZero():
		return "until " + editorTime(r.Stop)
	}
	return editorTime(r.Start) + " – " + editorTime(r.Stop)
}
