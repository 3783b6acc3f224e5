package toolbox

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"pointpost/postoffice"
)

// ReportStore is what the dashboard and job reports read.
type ReportStore interface{}

// JobRow is a job with its delivery counts.
type JobRow struct {
	Job    *postoffice.Job
	Counts postoffice.JobCounts
}

func (d Deps) dashboardRoutes(r chi.Router) {
	r.Get("/", d.home)
}

func (d Deps) reportRoutes(r chi.Router) {}

// Percent is the share of the job's deliveries that have been dealt with.
func (r JobRow) Percent() int {
	if r.Counts.Total == 0 {
		return 0
	}
	done := r.Counts.Total - r.Counts.Pending
	return done * 100 / r.Counts.Total
}

func (d Deps) home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	jobs, err := d.Store.Jobs(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	rows := make([]JobRow, 0, len(jobs))
	for _, j := range jobs {
		if !userFrom(ctx).MaySee(j.IssuerID) {
			continue
		}
		c, err := d.Store.JobCounts(ctx, j.Key)
		if err != nil {
			d.fail(w, r, err)
			return
		}
		rows = append(rows, JobRow{Job: j, Counts: c})
	}
	servers, err := d.Store.MailServers(ctx)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	if d.PostOffice != nil {
		if live := d.PostOffice.Statuses(); len(live) > 0 {
			servers = live
		}
	}
	outbox, total, err := d.Store.Outbox(ctx, 50)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	d.render(w, r, homePage(d.page(w, r, "Dashboard", "dashboard"), rows, servers, outbox, total))
}
