package mailer

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"
)

func TestDelayProxy(t *testing.T) {
	sink := &Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	const delay = 40 * time.Millisecond
	p := &DelayProxy{Target: sink.Addr(), Delay: delay}
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// Each way holds the bytes: the greeting comes a delay late, an answer two. The clock
	// starts before the dial: the proxy may read the greeting before this goroutine runs again.
	start := time.Now()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line[:3] != "220" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("greeting after %v, before the proxy's delay of %v", took, delay)
	}
	start = time.Now()
	if _, err := c.Write([]byte("NOOP\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line[:3] != "250" {
		t.Fatalf("NOOP answered %q, %v", line, err)
	}
	if took := time.Since(start); took < 2*delay {
		t.Errorf("a round trip took %v, less than twice the delay of %v", took, delay)
	}

	// Messages go through whole, and a closed connection closes its far end.
	s := newSender(t, "smtp://"+p.Addr(), 5*time.Second)
	env := envelope("far@example.com", 1)
	if err := s.Send(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if m := sink.Messages(); len(m) != 1 || string(m[0].Data) != string(env.Data) {
		t.Errorf("through the proxy the sink got %q, want the message", m)
	}
	c.Close()
	s.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", p.Addr()); err == nil {
		t.Error("the proxy still listens after Close")
	}
}

func TestSinkEnforcesItsRate(t *testing.T) {
	sink := &Sink{Rate: 3}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	s := newSender(t, sink.URL(), 5*time.Second)
	seconds := map[int64]bool{}
	for i := range 10 {
		seconds[time.Now().Unix()] = true
		err := s.Send(context.Background(), envelope("a@example.com", i))
		seconds[time.Now().Unix()] = true
		if err != nil && !Throttling(err) {
			t.Errorf("send %d: %v, want accepted or throttled", i, err)
		}
	}
	if sink.Count()+sink.Throttled() != 10 {
		t.Errorf("sink took %d and throttled %d of 10", sink.Count(), sink.Throttled())
	}
	if max := int64(3 * len(seconds)); sink.Count() > max {
		t.Errorf("sink took %d within %d seconds at 3 a second", sink.Count(), len(seconds))
	}
}
