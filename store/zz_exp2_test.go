package store

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"pointpost/rewards"
)

func TestZZExp2(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("ZZ_ROWS"))
	bs, _ := strconv.Atoi(os.Getenv("ZZ_BATCH"))
	if rows == 0 { t.Skip() }
	var all []rewards.Consumer
	rewards.DemoConsumers(rows, 1, func(c rewards.Consumer) error { all = append(all, c); return nil })
	s := openTest(t)
	for _, p := range []string{os.Getenv("ZZ_PRAGMA")} {
		if p != "" { if _, err := s.write.Exec("PRAGMA " + p); err != nil { t.Fatal(err) } }
	}
	ctx := context.Background()
	var execT, commitT time.Duration
	start := time.Now()
	for i := 0; i < len(all); i += bs {
		b := all[i:min(i+bs, len(all))]
		tx, _ := s.write.BeginTx(ctx, nil)
		stmt, err := tx.Prepare(upsertConsumerSQL)
		if err != nil { t.Fatal(err) }
		t0 := time.Now()
		for j := range b {
			c := &b[j]
			if _, err := stmt.Exec(c.Email, c.FirstName, c.LastName, c.City, c.Region, c.Country, c.PostalCode, c.BirthYear, c.Gender, interestsColumn(c.Interests), string(c.Format), `{"plan":"gold","segment":"x"}`, "active", 1); err != nil { t.Fatal(err) }
		}
		t1 := time.Now()
		stmt.Close()
		if err := tx.Commit(); err != nil { t.Fatal(err) }
		execT += t1.Sub(t0); commitT += time.Since(t1)
	}
	t.Logf("batch %d: total %v exec %v commit %v", bs, time.Since(start), execT, commitT)
}
