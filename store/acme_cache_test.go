package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"pointpost/rewards"
)

// TestACMECacheSharedByTwoStores: what one process's ACME client keeps, another on the same
// database reads; a Put replaces, a Delete removes (twice is no error), a miss is
// rewards.ErrNotFound, and binary data comes back byte for byte.
func TestACMECacheSharedByTwoStores(t *testing.T) {
	ctx := context.Background()
	first := openTest(t)
	stores := [2]*Store{first, openAgain(t, first)}
	a, b := stores[0], stores[1]
	const key = "mail.example.org"
	if _, err := b.ACMEGet(ctx, key); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("Get before any Put: %v, want a miss (rewards.ErrNotFound)", err)
	}
	cert := []byte("-----BEGIN EC PRIVATE KEY-----\n\x00\xff\xfe binary\n")
	if err := a.ACMEPut(ctx, key, cert); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ACMEGet(ctx, key); err != nil || !bytes.Equal(got, cert) {
		t.Fatalf("the other store's Get: %q, %v; want %q", got, err, cert)
	}
	renewed := []byte("renewed")
	if err := b.ACMEPut(ctx, key, renewed); err != nil {
		t.Fatal(err)
	}
	if got, err := a.ACMEGet(ctx, key); err != nil || !bytes.Equal(got, renewed) {
		t.Fatalf("after a Put over it: %q, %v; want %q", got, err, renewed)
	}
	// An empty entry is an entry, not a miss.
	if err := a.ACMEPut(ctx, "empty", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ACMEGet(ctx, "empty"); err != nil || len(got) != 0 {
		t.Fatalf("an empty entry: %q, %v", got, err)
	}
	for range 2 {
		if err := a.ACMEDelete(ctx, key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, err := b.ACMEGet(ctx, key); !errors.Is(err, rewards.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want a miss", err)
	}
}

// TestACMECacheRefusesBadInput: keys and data autocert never makes are refused, naming the
// bound, and nothing is stored.
func TestACMECacheRefusesBadInput(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	long := strings.Repeat("k", acmeKeyMax+1)
	for _, c := range []struct {
		key  string
		data []byte
		want string
	}{
		{"", []byte("x"), "an empty key"},
		{long, []byte("x"), "513 bytes, at most 512"},
		{"bad\x00key", []byte("x"), "not UTF-8 text"},
		{"bad\xffkey", []byte("x"), "not UTF-8 text"},
		{"big", make([]byte, acmeDataMax+1), "1048577 bytes, at most 1048576"},
	} {
		err := s.ACMEPut(ctx, c.key, c.data)
		if rewards.ErrorCode(err) != rewards.EINVALID || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Put %.20q (%d bytes): %v, want invalid with %q", c.key, len(c.data), err, c.want)
		}
		if _, err := s.ACMEGet(ctx, c.key); c.key != "big" && rewards.ErrorCode(err) != rewards.EINVALID {
			t.Errorf("Get %.20q: %v, want invalid", c.key, err)
		}
		if err := s.ACMEDelete(ctx, c.key); c.key != "big" && rewards.ErrorCode(err) != rewards.EINVALID {
			t.Errorf("Delete %.20q: %v, want invalid", c.key, err)
		}
	}
	if _, err := s.ACMEGet(ctx, "big"); !errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("the refused entry: %v, want none stored", err)
	}
	// The largest allowed are kept.
	max := strings.Repeat("é", acmeKeyMax/2)
	if err := s.ACMEPut(ctx, max, make([]byte, acmeDataMax)); err != nil {
		t.Fatalf("a key of %d bytes, %d of data: %v", len(max), acmeDataMax, err)
	}
	if got, err := s.ACMEGet(ctx, max); err != nil || len(got) != acmeDataMax {
		t.Fatalf("the largest entry back: %d bytes, %v", len(got), err)
	}
}

// TestACMECacheOutOfReachIsNoMiss: a database the store cannot read gives an error that is
// not a miss, which would make autocert order a new certificate (and a new account) from the
// CA at every handshake.
func TestACMECacheOutOfReachIsNoMiss(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.ACMEPut(ctx, "acme_account+key", []byte("key")); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.ACMEGet(cancelled, "acme_account+key"); err == nil || errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("Get with its context cancelled: %v, want an error that is not a miss", err)
	}
	if _, err := s.ACMEGet(cancelled, "never+put"); err == nil || errors.Is(err, rewards.ErrNotFound) {
		t.Errorf("Get of a missing key with its context cancelled: %v, want an error that is not a miss", err)
	}
	s.Close()
	for _, key := range []string{"acme_account+key", "never+put"} {
		if _, err := s.ACMEGet(ctx, key); err == nil || errors.Is(err, rewards.ErrNotFound) {
			t.Errorf("Get %s on a closed store: %v, want an error that is not a miss", key, err)
		}
	}
	if err := s.ACMEPut(ctx, "x", []byte("x")); err == nil {
		t.Error("Put on a closed store: no error")
	}
}
