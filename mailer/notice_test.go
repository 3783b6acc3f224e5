package mailer

import (
	"bytes"
	"context"
	"io"
	"net/mail"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"
)

func TestNoticesSendConfirmation(t *testing.T) {
	sink := &Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sender, err := NewSMTPSender(RelayConfig{URL: sink.URL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	n := &Notices{Sender: sender, From: mail.Address{Name: "Points", Address: "hi@pp.example"}, Domain: "pp.example"}
	link := "https://pp.example/join/confirm/1abc"
	if err := n.SendConfirmation(context.Background(), "zoe@example.com", "Zoë", link); err != nil {
		t.Fatal(err)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || msgs[0].To != "zoe@example.com" {
		t.Fatalf("sink got %+v", msgs)
	}
	r, err := gomail.CreateReader(bytes.NewReader(msgs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	to, _ := r.Header.AddressList("To")
	if len(to) != 1 || to[0].Name != "Zoë" {
		t.Errorf("To = %v", to)
	}
	if r.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Error("a confirmation must say it is automatic (RFC 3834)")
	}
	part, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(part.Body)
	if !strings.Contains(string(body), link) || !strings.Contains(string(body), "Hello Zoë,") {
		t.Errorf("body lacks the link or greeting:\n%s", body)
	}
}

func TestNoticesSendRedemptionCode(t *testing.T) {
	sink := &Sink{Keep: true}
	if err := sink.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sender, err := NewSMTPSender(RelayConfig{URL: sink.URL(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	n := &Notices{Sender: sender, From: mail.Address{Name: "Points", Address: "hi@pp.example"}, Domain: "pp.example"}
	if err := n.SendRedemptionCode(context.Background(), "zoe@example.com", "Zoë", "Mug", "1234 5678", 15*time.Minute); err != nil {
		t.Fatal(err)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || msgs[0].To != "zoe@example.com" {
		t.Fatalf("sink got %+v", msgs)
	}
	r, err := gomail.CreateReader(bytes.NewReader(msgs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Error("a code must say it is automatic (RFC 3834)")
	}
	part, err := r.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(part.Body)
	for _, want := range []string{"1234 5678", "Mug", "15 minutes", "Hello Zoë,"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}
