package postoffice

// SoonestIdle returns the ID of the mail server that is idle, or will be idle soonest, by
// IdleIn: the one the post office assigns the next job to (claim 8); the lowest ID wins a tie.
// Returns 0 when statuses is empty.
func SoonestIdle(statuses []MailServerStatus) int {
	best := -1
	for i, st := range statuses {
		if best < 0 || st.IdleIn() < statuses[best].IdleIn() ||
			(st.IdleIn() == statuses[best].IdleIn() && st.ID < statuses[best].ID) {
			best = i
		}
	}
	if best < 0 {
		return 0
	}
	return statuses[best].ID
}
