package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"pointpost/postoffice"
)

// InboundPage lists inbound mail newest first: the messages the receiver recorded and the
// replies that reached the acknowledgement path (kind postoffice.KindAcknowledged, with the
// points they earned or why none), at most limit of them, of kind only (any when ""), only
// the unverified ones when unverifiedOnly (never an acknowledgement), and only those after
// before in the list's order (from the newest when zero), so that the last entry's Cursor
// starts the next page. Returns an error if limit is not positive.
func (s *Store) InboundPage(ctx context.Context, kind string, unverifiedOnly bool, before postoffice.InboundCursor, limit int) ([]postoffice.InboundEntry, error) {
	if limit < 1 {
		return nil, errors.New("inbound page: limit must be positive")
	}
	var branches []string
	var args []any
	// Each branch takes the cursor itself, so the sort sees only rows past it.
	cursor := func(at, src, id string) string {
		if before.IsZero() {
			return ""
		}
		src0 := 0
		if before.Ack {
			src0 = 1
		}
		args = append(args, before.AtMS, src0, before.ID)
		return " AND (" + at + ", " + src + ", " + id + ") < (?, ?, ?)"
	}
	if kind != postoffice.KindAcknowledged {
		cond := "TRUE"
		if kind != "" {
			cond, args = cond+" AND m.kind = ?", append(args, kind)
		}
		if unverifiedOnly {
			cond += " AND substr(m.detail, 1, ?) = ?"
			args = append(args, utf8.RuneCountInString(UnverifiedPrefix), UnverifiedPrefix)
		}
		cond += cursor("m.created_at", "0", "m.id")
		branches = append(branches, `SELECT m.created_at AS at, 0 AS src, m.id AS id, m.kind, coalesce(m.job_key, 0), coalesce(j.name, ''),
				coalesce(m.consumer_id, 0), coalesce(c.email, ''), m.mail_from, m.rcpt_to, m.subject, m.detail, 0, 0, ''
			FROM inbound_messages m
			LEFT JOIN jobs j ON j.key = m.job_key
			LEFT JOIN consumers c ON c.id = m.consumer_id
			WHERE `+cond)
	}
	if (kind == "" || kind == postoffice.KindAcknowledged) && !unverifiedOnly {
		cond := "a.channel = 'reply'" + cursor("a.created_at", "1", "a.id")
		branches = append(branches, `SELECT a.created_at AS at, 1 AS src, a.id AS id, '`+postoffice.KindAcknowledged+`', a.job_key, coalesce(j.name, ''),
				a.consumer_id, coalesce(c.email, ''), coalesce(c.email, ''), '', '', a.reason, a.awarded, a.points, a.source
			FROM acknowledgements a
			LEFT JOIN jobs j ON j.key = a.job_key
			LEFT JOIN consumers c ON c.id = a.consumer_id
			WHERE `+cond)
	}
	if len(branches) == 0 {
		return nil, nil
	}
	rows, err := s.read.QueryContext(ctx, strings.Join(branches, " UNION ALL ")+
		` ORDER BY at DESC, src DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []postoffice.InboundEntry
	for rows.Next() {
		var m postoffice.InboundEntry
		var created, src, awarded, points int64
		var source string
		if err := rows.Scan(&created, &src, &m.ID, &m.Kind, &m.JobKey, &m.JobName, &m.ConsumerID, &m.ConsumerEmail,
			&m.From, &m.To, &m.Subject, &m.Detail, &awarded, &points, &source); err != nil {
			return nil, err
		}
		m.CreatedAt = fromMS(created)
		if src == 1 {
			m.Detail = ackDetail(awarded != 0, points, m.Detail, source)
		} else {
			m.Unverified = strings.HasPrefix(m.Detail, UnverifiedPrefix)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// ackDetail says what a reply that acknowledged earned, or why it earned nothing, and how
// it came.
func ackDetail(awarded bool, points int64, reason, source string) string {
	d := "earned nothing"
	switch {
	case awarded:
		d = "earned " + strconv.FormatInt(points, 10) + " points"
	case reason != "":
		d = "earned nothing: " + reason
	}
	if source != "" {
		d += " · " + source
	}
	return d
}
