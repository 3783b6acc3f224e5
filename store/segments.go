package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"pointpost/postoffice"
	"pointpost/rewards"
)

// CreateSegment saves seg under its issuer and sets its ID and creation time. Returns
// rewards.ErrExists (wrapped) when the issuer has a segment of that name already.
func (s *Store) CreateSegment(ctx context.Context, seg *postoffice.Segment) error {
	seg.CreatedAt = s.Now().UTC()
	err := s.write.QueryRowContext(ctx, `INSERT INTO segments (issuer_id, name, selection, created_at) VALUES (?, ?, ?, ?) RETURNING id`,
		seg.IssuerID, seg.Name, seg.Selection, ms(seg.CreatedAt)).Scan(&seg.ID)
	if isUniqueViolation(err) {
		return fmt.Errorf("segment %q: %w", seg.Name, rewards.ErrExists)
	}
	return unavailable(err)
}

// Segments lists an issuer's segments by name.
func (s *Store) Segments(ctx context.Context, issuerID int64) ([]postoffice.Segment, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT id, issuer_id, name, selection, created_at FROM segments WHERE issuer_id = ? ORDER BY name, id`, issuerID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []postoffice.Segment
	for rows.Next() {
		seg, err := scanSegment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *seg)
	}
	return out, rows.Err()
}

// Segment returns the segment id. Returns rewards.ErrNotFound if there is none.
func (s *Store) Segment(ctx context.Context, id int64) (*postoffice.Segment, error) {
	seg, err := scanSegment(s.read.QueryRowContext(ctx, `SELECT id, issuer_id, name, selection, created_at FROM segments WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("segment %d: %w", id, rewards.ErrNotFound)
	}
	return seg, err
}

// DeleteSegment removes the issuer's segment id; jobs made from it keep their selection.
// Returns rewards.ErrNotFound if the issuer has no such segment.
func (s *Store) DeleteSegment(ctx context.Context, issuerID, id int64) error {
	res, err := s.exec(ctx, `DELETE FROM segments WHERE id = ? AND issuer_id = ?`, id, issuerID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("segment %d: %w", id, rewards.ErrNotFound)
	}
	return nil
}

func scanSegment(row interface{ Scan(...any) error }) (*postoffice.Segment, error) {
	var seg postoffice.Segment
	var created int64
	if err := row.Scan(&seg.ID, &seg.IssuerID, &seg.Name, &seg.Selection, &created); err != nil {
		return nil, err
	}
	seg.CreatedAt = fromMS(created)
	return &seg, nil
}
