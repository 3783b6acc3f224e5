package mailer

import (
	"context"
	"errors"
	"sync"
	"testing"

	"pointpost/postoffice"
)

// keptSender keeps what it is given, as the embedded outbox does.
type keptSender struct {
	mu     sync.Mutex
	kept   []string
	closed bool
}

func (k *keptSender) Send(_ context.Context, env *Envelope) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kept = append(k.kept, env.To)
	return nil
}

func (k *keptSender) Close() error { k.closed = true; return nil }

// TestRouteIntoTheOutbox: a route whose URL is postoffice.OutboxURL keeps its messages in
// the outbox, pinned jobs included, and the Router leaves the outbox open for its owner.
func TestRouteIntoTheOutbox(t *testing.T) {
	ctx := context.Background()
	demo := postoffice.Route{Name: "demo", URL: postoffice.OutboxURL, Rate: 1000}
	if _, err := NewRouter(ctx, RouterConfig{Routes: []postoffice.Route{demo}}); !errors.As(err, new(*postoffice.RouteError)) {
		t.Fatalf("an outbox route without an outbox: %v, want a RouteError", err)
	}
	out := &keptSender{}
	r, err := NewRouter(ctx, RouterConfig{Routes: []postoffice.Route{demo}, Outbox: out})
	if err != nil {
		t.Fatal(err)
	}
	for _, pin := range []string{"", "demo"} {
		env := &Envelope{To: "zoe@example.com", Pin: pin, Data: []byte("Subject: hi\r\n\r\nhi\r\n")}
		if err := r.Send(ctx, env); err != nil || env.Route != "demo" {
			t.Fatalf("send pinned to %q: %v by route %q", pin, err, env.Route)
		}
	}
	if err := r.Reload(ctx, []postoffice.Route{{Name: "demo", URL: postoffice.OutboxURL, Rate: 5}}); err != nil {
		t.Fatal(err)
	}
	if st := r.Status(); len(st) != 1 || st[0].Rate != 5 {
		t.Errorf("after reload: %+v, want the demo route at 5/s", st)
	}
	r.Close()
	if len(out.kept) != 2 || out.closed {
		t.Errorf("the outbox kept %v and was closed %v; want both messages, open", out.kept, out.closed)
	}
}
