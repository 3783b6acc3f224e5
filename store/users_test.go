package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"pointpost/rewards"
)

func userHash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// usersFixture is a store with issuer acme and one of its users.
func usersFixture(t *testing.T) (*Store, rewards.Issuer, *rewards.User) {
	t.Helper()
	s := openTest(t)
	iss, err := s.EnsureIssuer(context.Background(), "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	u := &rewards.User{Email: "Ann@Acme.example", Role: rewards.RoleIssuer, IssuerID: iss.ID}
	if err := s.CreateUser(context.Background(), u, time.Now()); err != nil {
		t.Fatal(err)
	}
	return s, iss, u
}

func TestCreateUserRefusesATakenAddressInAnyCase(t *testing.T) {
	s, iss, _ := usersFixture(t)
	ctx := context.Background()
	for _, u := range []*rewards.User{
		{Email: "ann@acme.example", Role: rewards.RoleOperator},
		{Email: "ANN@ACME.EXAMPLE", Role: rewards.RoleIssuer, IssuerID: iss.ID},
	} {
		if err := s.CreateUser(ctx, u, time.Now()); !errors.Is(err, rewards.ErrExists) {
			t.Fatalf("CreateUser(%s): %v, want rewards.ErrExists", u.Email, err)
		}
	}
	if err := s.CreateUser(ctx, &rewards.User{Email: "x@acme.example", Role: rewards.RoleIssuer}, time.Now()); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("issuer user without issuer: %v, want rewards.ErrNotFound", err)
	}
	if err := s.CreateUser(ctx, &rewards.User{Email: "y@acme.example", Role: rewards.RoleIssuer, IssuerID: 99}, time.Now()); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("issuer user of a missing issuer: %v, want rewards.ErrNotFound", err)
	}
	if u, _, err := s.UserByEmail(ctx, "aNN@acme.EXAMPLE"); err != nil || u.IssuerSlug != "acme" {
		t.Fatalf("UserByEmail in other case: %+v, %v", u, err)
	}
}

func TestUserLinkSetsAPasswordOnce(t *testing.T) {
	s, _, u := usersFixture(t)
	ctx := context.Background()
	now := time.Now()
	if err := s.CreateUserLink(ctx, userHash("tok"), u.ID, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UserLink(ctx, userHash("tok"), now); err != nil || got.ID != u.ID {
		t.Fatalf("UserLink: %+v, %v", got, err)
	}
	got, err := s.UseUserLink(ctx, userHash("tok"), "hash1", now)
	if err != nil || got.ID != u.ID || !got.HasPassword {
		t.Fatalf("UseUserLink: %+v, %v", got, err)
	}
	if _, err := s.UseUserLink(ctx, userHash("tok"), "hash2", now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("second use: %v, want rewards.ErrNotFound", err)
	}
	if _, err := s.UserLink(ctx, userHash("tok"), now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("UserLink after use: %v, want rewards.ErrNotFound", err)
	}
	if _, hash, _ := s.UserByEmail(ctx, u.Email); hash != "hash1" {
		t.Fatalf("password hash %q, want the first use's", hash)
	}

	// Expired, unknown, and a disabled user's link.
	if err := s.CreateUserLink(ctx, userHash("old"), u.ID, now.Add(-2*time.Hour), now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUserLink(ctx, userHash("off"), u.ID, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"old", "nope", "off"} {
		if _, err := s.UserLink(ctx, userHash(tok), now); !errors.Is(err, rewards.ErrNotFound) {
			t.Fatalf("UserLink(%s): %v, want rewards.ErrNotFound", tok, err)
		}
		if _, err := s.UseUserLink(ctx, userHash(tok), "hash3", now); !errors.Is(err, rewards.ErrNotFound) {
			t.Fatalf("UseUserLink(%s): %v, want rewards.ErrNotFound", tok, err)
		}
	}
	if _, hash, _ := s.UserByEmail(ctx, u.Email); hash != "hash1" {
		t.Fatalf("a dead link changed the password to %q", hash)
	}
}

func TestPasswordChangeAndDisableEndSessions(t *testing.T) {
	s, _, u := usersFixture(t)
	ctx := context.Background()
	now := time.Now()
	alive := func(id string) bool {
		t.Helper()
		_, _, _, err := s.SessionUser(ctx, userHash(id))
		if err != nil && !errors.Is(err, rewards.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	other := &rewards.User{Email: "op@example.com", Role: rewards.RoleOperator}
	if err := s.CreateUser(ctx, other, now); err != nil {
		t.Fatal(err)
	}
	for _, sess := range []struct {
		id   string
		user int64
	}{{"a1", u.ID}, {"a2", u.ID}, {"op", other.ID}} {
		if err := s.CreateSession(ctx, userHash(sess.id), sess.user, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPassword(ctx, u.ID, "newhash"); err != nil {
		t.Fatal(err)
	}
	if alive("a1") || alive("a2") || !alive("op") {
		t.Fatal("SetPassword must end the user's sessions and only theirs")
	}
	if err := s.CreateSession(ctx, userHash("a3"), u.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserDisabled(ctx, u.ID, true); err != nil {
		t.Fatal(err)
	}
	if alive("a3") || !alive("op") {
		t.Fatal("disabling must end the user's sessions and only theirs")
	}
	if err := s.SetPassword(ctx, 999, "x"); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("SetPassword of no one: %v", err)
	}
	if err := s.SetUserDisabled(ctx, 999, true); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("SetUserDisabled of no one: %v", err)
	}
	if n, err := s.CountOperators(ctx); err != nil || n != 1 {
		t.Fatalf("CountOperators = %d, %v", n, err)
	}
}

func TestFirstOperatorSetup(t *testing.T) {
	s, _, _ := usersFixture(t)
	ctx := context.Background()
	now := time.Now()
	tok := userHash("setup")
	if err := s.CheckSetupToken(ctx, tok, now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("before any setup link: %v", err)
	}
	if err := s.SetSetupToken(ctx, tok, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSetupToken(ctx, tok, now); err != nil {
		t.Fatalf("fresh setup link: %v", err)
	}
	for name, tc := range map[string]struct {
		tok []byte
		at  time.Time
	}{"wrong token": {userHash("other"), now}, "expired": {tok, now.Add(time.Hour)}} {
		if err := s.CheckSetupToken(ctx, tc.tok, tc.at); !errors.Is(err, rewards.ErrNotFound) {
			t.Fatalf("%s: %v, want rewards.ErrNotFound", name, err)
		}
		if err := s.CreateFirstOperator(ctx, tc.tok, &rewards.User{Email: "x@example.com"}, "h", tc.at); !errors.Is(err, rewards.ErrNotFound) {
			t.Fatalf("%s: CreateFirstOperator %v, want rewards.ErrNotFound", name, err)
		}
	}
	// Ann is acme's: her address cannot become the operator's, and the link survives that.
	if err := s.CreateFirstOperator(ctx, tok, &rewards.User{Email: "ann@acme.example"}, "h", now); !errors.Is(err, rewards.ErrExists) {
		t.Fatalf("taken address: %v, want rewards.ErrExists", err)
	}
	op := &rewards.User{Email: "op@example.com"}
	if err := s.CreateFirstOperator(ctx, tok, op, "bcrypt", now); err != nil {
		t.Fatal(err)
	}
	got, hash, err := s.UserByEmail(ctx, "op@example.com")
	if err != nil || got.ID != op.ID || !got.Operator() || hash != "bcrypt" {
		t.Fatalf("first operator %+v %q, %v", got, hash, err)
	}
	if err := s.CreateFirstOperator(ctx, tok, &rewards.User{Email: "two@example.com"}, "h", now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("second use: %v, want rewards.ErrNotFound", err)
	}
	// A new link while an operator exists does not work either.
	if err := s.SetSetupToken(ctx, userHash("again"), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSetupToken(ctx, userHash("again"), now); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("setup with an operator: %v, want rewards.ErrNotFound", err)
	}
}

func TestIssuersAndSettings(t *testing.T) {
	s, acme, _ := usersFixture(t)
	ctx := context.Background()
	iss := &rewards.Issuer{Slug: "globex", Name: "Globex"}
	if err := s.CreateIssuer(ctx, iss, time.Now()); err != nil || iss.ID == 0 {
		t.Fatalf("CreateIssuer: %v, id %d", err, iss.ID)
	}
	if err := s.CreateIssuer(ctx, &rewards.Issuer{Slug: "acme", Name: "Acme 2"}, time.Now()); !errors.Is(err, rewards.ErrExists) {
		t.Fatalf("taken slug: %v, want rewards.ErrExists", err)
	}
	if err := s.SetIssuerBudget(ctx, acme.ID, 700); err != nil {
		t.Fatal(err)
	}
	if b, sp, err := s.IssuerPoints(ctx, acme.ID); b != 700 || sp != 0 || err != nil {
		t.Fatalf("IssuerPoints = %d, %d, %v", b, sp, err)
	}
	if _, _, err := s.IssuerPoints(ctx, 999); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("IssuerPoints of no issuer: %v", err)
	}
	if err := s.SetSettings(ctx, map[string]string{"from_address": "a@b.example", "postal_address": "1 Main St"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSettings(ctx, map[string]string{"from_address": "c@d.example"}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"from_address": "c@d.example", "postal_address": "1 Main St", "reply_domain": ""} {
		if got, err := s.Setting(ctx, name); got != want || err != nil {
			t.Fatalf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestDeviceCookieBudgetAndBinding(t *testing.T) {
	s, _, u := usersFixture(t)
	ctx := context.Background()
	now := time.Now()
	dev := userHash("device")
	if err := s.CreateDevice(ctx, dev, u.ID, now, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	claim := func(hash []byte, email string, notBefore time.Time) bool {
		t.Helper()
		ok, err := s.ClaimDeviceAttempt(ctx, hash, email, 3, notBefore)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if claim(dev, "bob@acme.example", now.Add(-time.Hour)) || claim(userHash("other"), "ann@acme.example", now.Add(-time.Hour)) {
		t.Fatal("a device cookie was claimed for another account, or an unknown one")
	}
	if claim(dev, "ann@acme.example", now.Add(time.Second)) {
		t.Fatal("an expired device cookie was claimed")
	}
	// The address matches in any case; three claims spend the budget.
	for i := range 3 {
		if !claim(dev, "ANN@acme.example", now.Add(-time.Hour)) {
			t.Fatalf("claim %d refused", i)
		}
	}
	if claim(dev, "ann@acme.example", now.Add(-time.Hour)) {
		t.Fatal("a fourth claim passed a budget of 3")
	}
	// A released claim is given back; a sign-in clears them all.
	if err := s.ReleaseDeviceAttempt(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if !claim(dev, "ann@acme.example", now.Add(-time.Hour)) {
		t.Fatal("a released claim was not given back")
	}
	if err := s.DropSpentDevice(ctx, dev, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.DeviceSignedIn(ctx, dev); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if !claim(dev, "ann@acme.example", now.Add(-time.Hour)) {
			t.Fatalf("after a sign-in, claim %d refused", i)
		}
	}
	// A spent cookie is deleted: a sign-in no longer revives it.
	if err := s.DropSpentDevice(ctx, dev, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.DeviceSignedIn(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if claim(dev, "ann@acme.example", now.Add(-time.Hour)) {
		t.Fatal("a dropped device cookie was claimed")
	}
}

func TestCreateDeviceKeepsAFewPerUser(t *testing.T) {
	s, _, u := usersFixture(t)
	ctx := context.Background()
	t0 := time.Now()
	for i := range devicesPerUser + 5 {
		at := t0.Add(time.Duration(i) * time.Second)
		if err := s.CreateDevice(ctx, userHash("d"+string(rune('a'+i))), u.ID, at, t0.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM device_cookies WHERE user_id = ?`, u.ID).Scan(&n); err != nil || n != devicesPerUser {
		t.Fatalf("%d device cookies kept (%v), want %d", n, err, devicesPerUser)
	}
	if ok, _ := s.ClaimDeviceAttempt(ctx, userHash("da"), u.Email, 3, t0.Add(-time.Hour)); ok {
		t.Fatal("the oldest device cookie was kept past the cap")
	}
	// Those made before expiredBefore go at the next sign-in.
	later := t0.Add(time.Hour)
	if err := s.CreateDevice(ctx, userHash("new"), u.ID, later, later.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.read.QueryRowContext(ctx, `SELECT count(*) FROM device_cookies WHERE user_id = ?`, u.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d device cookies after the others expired (%v), want 1", n, err)
	}
}
