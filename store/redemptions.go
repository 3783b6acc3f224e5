package store

import (
	"context"

	"pointpost/rewards"
)

// Redemptions lists a consumer's newest limit redemptions (0 or less: all), newest first,
// each with its item's name and voucher code, for her account page.
func (s *Store) Redemptions(ctx context.Context, consumerID int64, limit int) ([]rewards.Redemption, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	rows, err := s.read.QueryContext(ctx, `SELECT r.id, r.consumer_id, r.item_id, c.name, r.cost, r.created_at, r.voucher
		FROM redemptions r JOIN catalog c ON c.id = r.item_id WHERE r.consumer_id = ? ORDER BY r.id DESC LIMIT ?`,
		consumerID, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []rewards.Redemption
	for rows.Next() {
		var r rewards.Redemption
		var at int64
		if err := rows.Scan(&r.ID, &r.ConsumerID, &r.ItemID, &r.ItemName, &r.Cost, &at, &r.Voucher); err != nil {
			return nil, err
		}
		r.At = fromMS(at)
		out = append(out, r)
	}
	return out, rows.Err()
}
