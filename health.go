package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"pointpost/postoffice"
)

// healthCheck is one part of the readiness answer. Detail never holds a secret: routes are
// named, never given by URL.
type healthCheck struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// healthReport is what /healthz and /readyz answer.
type healthReport struct {
	Status string                 `json:"status"` // "ok" or "unavailable"
	Checks map[string]healthCheck `json:"checks,omitempty"`
}

// pingTimeout bounds the database's answer to a readiness probe: a load balancer waits a
// few seconds at most.
const pingTimeout = 2 * time.Second

// healthHandler serves /healthz (the process answers) and /readyz (it can do its work). They
// sit outside the pages' rate limits: load balancers and monitors ask often.
func (a *app) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, healthReport{Status: "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, a.readiness(r.Context()))
	})
	return mux
}

func writeHealth(w http.ResponseWriter, rep healthReport) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if rep.Status != "ok" {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(rep)
}

// readiness checks the database, the mail servers, the way out and the receiver.
func (a *app) readiness(ctx context.Context) healthReport {
	checks := map[string]healthCheck{}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		checks["database"] = healthCheck{Detail: "does not answer"}
		a.log.Warn("readiness: the database does not answer", "err", err)
	} else {
		checks["database"] = healthCheck{OK: true}
	}
	// Each process answers for the parts of its role (serve --role).
	if a.cfg.runs(roleMail) {
		checks["mail_servers"] = a.mailServersCheck()
	}
	if a.cfg.runs(roleMail) || a.cfg.runs(roleWeb) {
		checks["relay"] = a.relayCheck()
	}
	if a.cfg.runs(roleReceiver) {
		checks["receiver"] = healthCheck{Detail: "not listening"}
		if a.receiverAddr() != "" {
			checks["receiver"] = healthCheck{OK: true, Detail: "listening"}
		}
	}
	rep := healthReport{Status: "ok", Checks: checks}
	for _, c := range checks {
		if !c.OK {
			rep.Status = "unavailable"
		}
	}
	return rep
}

func (a *app) mailServersCheck() healthCheck {
	if a.pool == nil || !a.mailRunning.Load() {
		return healthCheck{Detail: "not running"}
	}
	stopped := 0
	servers := a.pool.Servers()
	for _, s := range servers {
		if s.Status().State == postoffice.StateStopped {
			stopped++
		}
	}
	if stopped > 0 {
		return healthCheck{Detail: fmt.Sprintf("%d of %d stopped", stopped, len(servers))}
	}
	return healthCheck{OK: true, Detail: fmt.Sprintf("%d running", len(servers))}
}

// relayCheck is ready while some route's relay is not known to be down: mail still leaves by
// it. A route is down from a failed connection until its retry.
func (a *app) relayCheck() healthCheck {
	if a.router == nil {
		return healthCheck{OK: true, Detail: "embedded outbox"}
	}
	var up, down []string
	for _, s := range a.router.Status() {
		if s.Down {
			down = append(down, s.Name)
		} else {
			up = append(up, s.Name)
		}
	}
	switch {
	case len(up) == 0:
		return healthCheck{Detail: "unreachable: " + strings.Join(down, ", ")}
	case len(down) > 0:
		return healthCheck{OK: true, Detail: "up: " + strings.Join(up, ", ") + "; unreachable: " + strings.Join(down, ", ")}
	}
	return healthCheck{OK: true, Detail: "up: " + strings.Join(up, ", ")}
}

func (a *app) receiverAddr() string {
	if a.receiver == nil {
		return ""
	}
	return a.receiver.Addr()
}
