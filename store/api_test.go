package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pointpost/postoffice"
)

func TestAPIConsumerVisibleOnceTheIssuerMailedHer(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	ids := seedAckConsumers(t, s, 2)
	acme, bolt := seedAckIssuer(t, s, "acme"), seedAckIssuer(t, s, "bolt")
	job := &postoffice.Job{IssuerID: acme, Name: "spring", State: postoffice.JobRunning,
		Start: ackT0, Stop: ackT0.Add(time.Hour), ClientCount: 10}
	if err := s.CreateJob(ctx, job, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.SelectBatch(ctx, job, false, 10); err != nil {
		t.Fatal(err)
	}
	visible := func(consumer, issuer int64) bool {
		t.Helper()
		ok, err := s.APIConsumerVisible(ctx, consumer, issuer)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	// Selected is not enough: nothing has reached her yet.
	if visible(ids[0], acme) {
		t.Fatal("a consumer only selected is visible to the issuer")
	}
	rs, err := s.DueRecipients(ctx, job.Key, 0, ackT0, 1)
	if err != nil || len(rs) != 1 || rs[0].Consumer.ID != ids[0] {
		t.Fatalf("claimed %+v, %v", rs, err)
	}
	if err := s.RecordOutcomes(ctx, []postoffice.Outcome{{DeliveryID: rs[0].DeliveryID, Kind: postoffice.OutcomeSent, At: ackT0}}); err != nil {
		t.Fatal(err)
	}
	if !visible(ids[0], acme) || visible(ids[1], acme) || visible(ids[0], bolt) {
		t.Fatal("visible to acme: want the consumer its job was sent to, and to her alone, and not to bolt")
	}
}

func TestAPIJobsPages(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	acme, bolt := seedAckIssuer(t, s, "acme"), seedAckIssuer(t, s, "bolt")
	var keys []int64
	for i, iss := range []int64{acme, bolt, acme, acme} {
		j := &postoffice.Job{IssuerID: iss, Name: fmt.Sprint("job ", i), Start: ackT0, Stop: ackT0.Add(time.Hour), ClientCount: 1}
		if err := s.CreateJob(ctx, j, &postoffice.Message{Type: "text", Subject: "s", Body: "b"}, nil, postoffice.JobRules{}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, j.Key)
	}
	for _, c := range []struct {
		issuer, before int64
		limit          int
		want           []int64
	}{
		{0, 0, 10, []int64{keys[3], keys[2], keys[1], keys[0]}},
		{acme, 0, 10, []int64{keys[3], keys[2], keys[0]}},
		{acme, 0, 2, []int64{keys[3], keys[2]}},
		{acme, keys[2], 2, []int64{keys[0]}},
		{bolt, keys[1], 2, nil},
	} {
		jobs, err := s.APIJobs(ctx, c.issuer, c.before, c.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, j := range jobs {
			got = append(got, j.Key)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("APIJobs(issuer %d, before %d, limit %d) = %v, want %v", c.issuer, c.before, c.limit, got, c.want)
		}
	}
}

func TestAPIConsumerIDs(t *testing.T) {
	s := openTest(t)
	ids := seedAckConsumers(t, s, 3)
	got, err := s.APIConsumerIDs(context.Background(), []string{" C000002@example.com", "c000000@example.com", "nobody@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["c000002@example.com"] != ids[2] || got["c000000@example.com"] != ids[0] {
		t.Fatalf("ids %v, want c000002 and c000000 of %v", got, ids)
	}
}
