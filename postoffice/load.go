package postoffice

import (
	"fmt"
	"time"
)

// Assignment is the mail server a job was given to and why (claim 8); the reason is kept
// with the job.
type Assignment struct {
	MailServerID int
	Reason       string
	// Replaces is the mail server the job had when the choice was made (0: none): the
	// store records the assignment only while the job still has it, so that of the post
	// offices of several processes choosing at once, one moves the job.
	Replaces int
}

// Candidate is a mail server as the post office weighs it for the next job: its last
// report, the deliveries of jobs given to it that the report does not show yet, and when it
// was last given a job (a sequence number; 0 for never).
type Candidate struct {
	MailServerStatus
	Unreported int
	LastGiven  uint64
}

// idleIn is how long the candidate needs to empty its queue, counting what it was given
// since its report.
func (c Candidate) idleIn() time.Duration {
	st := c.MailServerStatus
	st.Queue += c.Unreported
	return st.IdleIn()
}

// ChooseMailServer picks the mail server for the next job: the one idle soonest (claim 8),
// counting the jobs given to each since it last reported; among servers as soon idle (most
// often: several idle), the one given a job least recently, then the lowest ID, so idle
// servers take turns. Returns MailServerID 0 when there is no candidate.
func ChooseMailServer(cands []Candidate) Assignment {
	best := -1
	for i, c := range cands {
		if best < 0 {
			best = i
			continue
		}
		b := cands[best]
		switch d, bd := c.idleIn(), b.idleIn(); {
		case d < bd,
			d == bd && c.LastGiven < b.LastGiven,
			d == bd && c.LastGiven == b.LastGiven && c.ID < b.ID:
			best = i
		}
	}
	if best < 0 {
		return Assignment{}
	}
	chosen := cands[best]
	a := Assignment{MailServerID: chosen.ID}
	if len(cands) == 1 {
		a.Reason = "the only mail server"
		return a
	}
	tied, next := 0, -1 // servers as soon idle as the chosen one; the soonest of the others
	for i, c := range cands {
		switch {
		case c.idleIn() == chosen.idleIn():
			tied++
		case next < 0 || c.idleIn() < cands[next].idleIn():
			next = i
		}
	}
	switch idle := chosen.idleIn(); {
	case tied > 1 && idle == 0:
		a.Reason = fmt.Sprintf("idle; of %d idle servers, the one given a job least recently", tied)
	case tied > 1:
		a.Reason = fmt.Sprintf("idle soonest, in %s, with %d others; the one given a job least recently", roundWait(idle), tied-1)
	case idle == 0:
		a.Reason = fmt.Sprintf("the only idle server (next: %s, idle in %s)", serverName(cands[next].MailServerStatus), roundWait(cands[next].idleIn()))
	default:
		a.Reason = fmt.Sprintf("idle soonest, in %s (next: %s, in %s)", roundWait(idle), serverName(cands[next].MailServerStatus), roundWait(cands[next].idleIn()))
	}
	return a
}

// SoonestIdle returns the ID of the mail server the post office gives the next job to, by
// statuses alone (ChooseMailServer without what it gave since). Returns 0 when statuses is
// empty.
func SoonestIdle(statuses []MailServerStatus) int {
	cands := make([]Candidate, len(statuses))
	for i, st := range statuses {
		cands[i] = Candidate{MailServerStatus: st}
	}
	return ChooseMailServer(cands).MailServerID
}

// roundWait rounds a wait for reading: to the millisecond below a second, to a tenth of a
// second below a minute, to the second above.
func roundWait(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return max(d.Round(time.Millisecond), time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}

func serverName(st MailServerStatus) string {
	if st.Name != "" {
		return st.Name
	}
	return fmt.Sprintf("mail-%d", st.ID)
}
