package main

import (
	"context"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// seedDemo fills an empty database with 10,000 consumers, one issuer and a campaign that
// starts at once by the demo's route (seedDemoRoute). A database that already has
// consumers is left alone.
func (a *app) seedDemo(ctx context.Context) error {
	n, err := a.store.CountConsumers(ctx)
	if err != nil || n > 0 {
		return err
	}
	if err := a.seedConsumers(ctx, 10_000, 1); err != nil {
		return err
	}
	now := a.po.Now()
	job, matching, err := a.po.CreateJob(ctx, demoCampaign(now, 10_000))
	if err != nil {
		return err
	}
	if err := a.store.PinJobRoute(ctx, job.Key, demoRoute.Name); err != nil {
		return err
	}
	for _, item := range []rewards.CatalogItem{
		{Name: "Coffee voucher", Description: "A cup at any partner café", Cost: 10, Stock: 500},
		{Name: "Cinema ticket", Description: "One ticket, any film", Cost: 50, Stock: 100},
		{Name: "Weekend getaway", Description: "Two nights for two", Cost: 5000, Stock: 2},
	} {
		if err := a.store.AddCatalogItem(ctx, &item); err != nil {
			return err
		}
	}
	a.log.Info("demo data seeded", "consumers", 10_000, "job", job.Key, "recipients", matching)
	return nil
}

// demoRoute is the demo job's own route, into the embedded outbox at a pace a newcomer can
// watch: its 10,000 messages take some three minutes, so the progress bar, the chart and
// the live counts move while she signs in and looks around.
var demoRoute = postoffice.Route{Name: "demo", URL: postoffice.OutboxURL, Rate: 50}

// seedDemoRoute saves the demo's route into an empty database, before the mail servers
// are wired to the saved routes. A database with consumers is left alone.
func (a *app) seedDemoRoute(ctx context.Context) error {
	n, err := a.store.CountConsumers(ctx)
	if err != nil || n > 0 {
		return err
	}
	if _, err := a.store.Route(ctx, demoRoute.Name); err == nil {
		return nil
	}
	return a.store.SaveRoute(ctx, demoRoute)
}

func (a *app) seedConsumers(ctx context.Context, n int, seed int64) error {
	batch := make([]rewards.Consumer, 0, 5000)
	flush := func() error {
		_, _, err := a.store.UpsertConsumers(ctx, batch)
		batch = batch[:0]
		return err
	}
	err := rewards.DemoConsumers(n, seed, func(c rewards.Consumer) error {
		batch = append(batch, c)
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

func demoCampaign(now time.Time, count int) *postoffice.Campaign {
	return &postoffice.Campaign{
		Issuer: "acme", IssuerName: "Acme Outdoor", Name: "Welcome to Acme points",
		Start: now.UTC().Format(time.RFC3339), Stop: now.Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339),
		ClientCount: count,
		Rules: []postoffice.RuleSpec{
			{Description: "Reply to the invitation", Type: "reply", Points: 10, Frequency: "once"},
			{Description: "Open the invitation and press Submit", Type: "click", Points: 10, Frequency: "once",
				IssuerURL: "https://acme.example/"},
		},
		Text: &postoffice.MessageSpec{
			Subject: "<_&getUserName_>, 10 points are waiting for you",
			Body: "POINTENTIALS -- Acme Outdoor\n\nDear <_&getUserName_>,\n\n" +
				"Acme invites you to earn 10 points: reply to this e-mail, or open\n<_&getAckURL_>\n\n" +
				"Your balance: <_&getPointsBalance_> points.\nWe think you like <_&getInterests_> in <_&getCity_>.\n\n" +
				"Your points and rewards: <_&getAccountURL_>\n" +
				"To stop these e-mails: <_&getUnsubscribeURL_>\n",
		},
		HTML: &postoffice.MessageSpec{
			Subject: "<_&getUserName_>, 10 points are waiting for you",
			Body: `<html><body style="font-family:sans-serif"><h1>POINTENTIALS</h1>` +
				`<p>Dear <_&getUserName_>,</p><p><font size="+1" color="#FF0000">Acme invites you to earn 10 points.</font></p>` +
				`<p><a href="<_&getAckURL_>">Earn my points</a> or simply reply to this e-mail.</p>` +
				`<p>Your balance: <b><_&getPointsBalance_></b> points. We think you like <_&getInterests_> in <_&getCity_>.</p>` +
				`<p style="font-size:small"><a href="<_&getAccountURL_>">My points and rewards</a> · ` +
				`<a href="<_&getUnsubscribeURL_>">Unsubscribe</a></p></body></html>`,
		},
	}
}
