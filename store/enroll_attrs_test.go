package store

import (
	"context"
	"maps"
	"testing"
	"time"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// An issuer's enrollment of an address that is a consumer already changes nothing of her
// profile; its attributes land in its own namespace.
func TestEnrollConsumersKeepsTheProfileAndNamespacesAttributes(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "zoe@example.com", FirstName: "Zoë", City: "Lyon",
		Format: rewards.FormatHTML, Attributes: map[string]string{"plan": "gold"}}}); err != nil {
		t.Fatal(err)
	}
	ins, upd, err := s.EnrollConsumers(ctx, "acme", []rewards.Consumer{
		{Email: "zoe@example.com", FirstName: "Mallory", City: "Nowhere", Format: rewards.FormatText,
			Attributes: map[string]string{"plan": "acme-plan", "marker": "1"}},
		{Email: "new@example.com", FirstName: "Neo", Attributes: map[string]string{"marker": "2"}},
	})
	if err != nil || ins != 1 || upd != 1 {
		t.Fatalf("EnrollConsumers = %d, %d, %v; want 1 inserted, 1 updated", ins, upd, err)
	}
	zoe := consumer(t, s, "zoe@example.com")
	if zoe.FirstName != "Zoë" || zoe.City != "Lyon" || zoe.Format != rewards.FormatHTML {
		t.Fatalf("her profile changed: %+v", zoe)
	}
	want := map[string]string{"plan": "gold", "acme:plan": "acme-plan", "acme:marker": "1"}
	if !maps.Equal(zoe.Attributes, want) {
		t.Fatalf("attributes %v, want %v", zoe.Attributes, want)
	}
	if got := zoe.AttributesFor("acme"); !maps.Equal(got, map[string]string{"plan": "acme-plan", "marker": "1"}) {
		t.Fatalf("acme sees %v", got)
	}
	if got := zoe.AttributesFor("bolt"); !maps.Equal(got, map[string]string{"plan": "gold"}) {
		t.Fatalf("bolt sees %v, want the program's plan alone", got)
	}
	if neo := consumer(t, s, "new@example.com"); neo.FirstName != "Neo" || neo.Attributes["acme:marker"] != "2" {
		t.Fatalf("new consumer %+v", neo)
	}
	if _, _, err := s.EnrollConsumers(ctx, "", []rewards.Consumer{{Email: "x@example.com"}}); err == nil {
		t.Fatal("an enrollment without an issuer was accepted")
	}
}

// A mail server renders a job's getAttr tags with the job's issuer's attributes, and a
// report counts by them: never another issuer's.
func TestRecipientsAndCountsSeeTheJobIssuersAttributes(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme := seedAckIssuer(t, s, "acme")
	seedAckIssuer(t, s, "bolt")
	if _, _, err := s.UpsertConsumers(ctx, []rewards.Consumer{{Email: "zoe@example.com",
		Attributes: map[string]string{"plan": "gold"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.EnrollConsumers(ctx, "bolt", []rewards.Consumer{{Email: "zoe@example.com",
		Attributes: map[string]string{"secret": "bolt-only", "plan": "bolt-plan"}}}); err != nil {
		t.Fatal(err)
	}
	job := &postoffice.Job{IssuerID: acme, Name: "spring", State: postoffice.JobRunning,
		Start: ackT0, Stop: ackT0.Add(time.Hour), ClientCount: 10}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SelectBatch(ctx, job, false, 10); err != nil {
		t.Fatal(err)
	}
	rs, err := s.DueRecipients(ctx, job.Key, 0, ackT0, 10)
	if err != nil || len(rs) != 1 {
		t.Fatalf("claimed %+v, %v", rs, err)
	}
	if got := rs[0].Consumer.Attributes; !maps.Equal(got, map[string]string{"plan": "gold"}) {
		t.Fatalf("acme's job renders with attributes %v, want the program's plan alone", got)
	}
	counts, err := s.JobCountsBy(ctx, job.Key, "attr.secret", 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, leaked := counts["bolt-only"]; leaked {
		t.Fatalf("acme's report counts by bolt's attribute: %v", counts)
	}
	if _, err := s.JobCountsBy(ctx, job.Key, "attr.bolt:secret", 10); err == nil {
		t.Fatal("a report named another issuer's attribute by its stored name")
	}
}
