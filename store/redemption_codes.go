package store

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"pointpost/rewards"
)

// CreateRedemptionCode stores the hash of a code that lets consumerID redeem itemID until
// expires, replacing any code she had before, and returns its id. Returns rewards.ErrNotFound if
// the consumer or the item does not exist.
func (s *Store) CreateRedemptionCode(ctx context.Context, consumerID, itemID int64, codeHash []byte, now, expires time.Time) (int64, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM redemption_codes WHERE consumer_id = ?`, consumerID); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO redemption_codes (consumer_id, item_id, code_hash, created_at, expires_at)
			SELECT c.id, i.id, ?, ?, ? FROM consumers c, catalog i WHERE c.id = ? AND i.id = ? RETURNING id`,
			codeHash, ms(now), ms(expires), consumerID, itemID).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("consumer %d, item %d: %w", consumerID, itemID, rewards.ErrNotFound)
		}
		return err
	})
	return id, err
}

// UseRedemptionCode checks codeHash against consumerID's redemption code id and, if it
// matches, spends the code and returns the item it redeems with ok true. A wrong code
// counts an attempt and returns the item with ok false. Returns rewards.ErrNotFound if the code is
// not hers, or is used, expired at now, or has had maxAttempts wrong tries.
func (s *Store) UseRedemptionCode(ctx context.Context, id, consumerID int64, codeHash []byte, now time.Time, maxAttempts int) (itemID int64, ok bool, err error) {
	err = s.tx(ctx, func(tx *sql.Tx) error {
		var stored []byte
		err := tx.QueryRowContext(ctx, `SELECT item_id, code_hash FROM redemption_codes
			WHERE id = ? AND consumer_id = ? AND used_at IS NULL AND expires_at > ? AND attempts < ?`,
			id, consumerID, ms(now), maxAttempts).Scan(&itemID, &stored)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("redemption code %d: %w", id, rewards.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if ok = subtle.ConstantTimeCompare(stored, codeHash) == 1; ok {
			_, err = tx.ExecContext(ctx, `UPDATE redemption_codes SET used_at = ? WHERE id = ?`, ms(now), id)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE redemption_codes SET attempts = attempts + 1 WHERE id = ?`, id)
		}
		return err
	})
	if err != nil {
		return 0, false, err
	}
	return itemID, ok, nil
}
