package toolbox_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"testing"
	"time"

	"pointpost/rewards"
	"pointpost/store/pgtest"
)

// TestDatabaseLockedAnswersUnavailable: a change the database is too busy to take answers
// 503 with Retry-After, not "internal error", and changes nothing.
func TestDatabaseLockedAnswersUnavailable(t *testing.T) {
	if pgtest.OnPostgres() {
		t.Skip("SQLite's write lock")
	}
	e := newEnv(t)
	c, u := e.signIn("ann@acme.example", "acme")
	ctx := context.Background()
	k := &rewards.APIKey{Name: "ci", Prefix: "pp_test", IssuerID: u.IssuerID}
	if err := e.st.CreateAPIKey(ctx, k, []byte("hash of the key"), time.Now()); err != nil {
		t.Fatal(err)
	}

	if err := e.st.SetBusyTimeout(ctx, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+e.st.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	resp, body := c.post(fmt.Sprintf("/profile/api-keys/%d/revoke", k.ID), nil)
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("revoking while the database is locked: %d (Retry-After %q) %q, want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	keys, err := e.st.APIKeys(ctx, u.IssuerID)
	if err != nil || len(keys) != 1 || !keys[0].RevokedAt.IsZero() {
		t.Fatalf("after the refused revoke: %+v, %v; want the key unrevoked", keys, err)
	}
}
