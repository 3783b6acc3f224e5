package rewards

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"time"
)

const (
	// InviteTTL is how long an invitation or a new sign-in link works; SetupTTL the first
	// operator's setup link.
	InviteTTL = 7 * 24 * time.Hour
	SetupTTL  = 24 * time.Hour
)

// NewSecret returns 32 random bytes, base64url without padding: a session, device, link or
// API key secret.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashSecret is how every secret is kept in the store: only its hash, so a copy of the
// database signs no one in.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// UserLinkStore keeps one-time links with which users set a password.
type UserLinkStore interface {
	CreateUserLink(ctx context.Context, tokenHash []byte, userID int64, now, expires time.Time) error
}

// UserStore adds users and their first links.
type UserStore interface {
	UserLinkStore
	CreateUser(ctx context.Context, u *User, now time.Time) error
}

// SetupStore keeps the first operator's setup link.
type SetupStore interface {
	CountOperators(ctx context.Context) (int, error)
	SetSetupToken(ctx context.Context, tokenHash []byte, expires time.Time) error
}

// APIKeyStore keeps API keys by the hash of their secret.
type APIKeyStore interface {
	CreateAPIKey(ctx context.Context, k *APIKey, keyHash []byte, now time.Time) error
}

// NewUserLink makes a one-time link with which user userID sets a password, valid for ttl
// from now, and returns it as an absolute URL under baseURL.
func NewUserLink(ctx context.Context, s UserLinkStore, userID int64, baseURL string, now time.Time, ttl time.Duration) (string, error) {
	token := NewSecret()
	if err := s.CreateUserLink(ctx, HashSecret(token), userID, now, now.Add(ttl)); err != nil {
		return "", err
	}
	return strings.TrimRight(baseURL, "/") + "/welcome/" + token, nil
}

// AddUser adds u (an operator, or a user of issuer u.IssuerID) without a password and
// returns the invitation link, valid for InviteTTL, with which u sets one. Returns an error
// for an invalid e-mail address, and ErrExists if the address has an account.
func AddUser(ctx context.Context, s UserStore, u *User, baseURL string, now time.Time) (link string, err error) {
	if u.Email, err = ValidEmail(u.Email); err != nil {
		return "", err
	}
	if err := s.CreateUser(ctx, u, now); err != nil {
		return "", err
	}
	return NewUserLink(ctx, s, u.ID, baseURL, now, InviteTTL)
}

// SetupLink returns a link, valid for SetupTTL, with which the first person to open it
// becomes the first operator, choosing e-mail address and password; it replaces any earlier
// setup link. It returns "" when an operator exists: they invite the others.
func SetupLink(ctx context.Context, s SetupStore, baseURL string, now time.Time) (link string, err error) {
	n, err := s.CountOperators(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	token := NewSecret()
	if err := s.SetSetupToken(ctx, HashSecret(token), now.Add(SetupTTL)); err != nil {
		return "", err
	}
	return strings.TrimRight(baseURL, "/") + "/setup/" + token, nil
}

// NewAPIKey stores the API key k (an operator's when k.IssuerID is 0), setting its Prefix,
// and returns its secret: the only time anyone sees it, since the store keeps its hash.
// Returns ErrNotFound if k names no issuer.
func NewAPIKey(ctx context.Context, s APIKeyStore, k *APIKey, now time.Time) (secret string, err error) {
	secret = "pp_" + NewSecret()
	k.Prefix = secret[:11]
	if err := s.CreateAPIKey(ctx, k, HashSecret(secret), now); err != nil {
		return "", err
	}
	return secret, nil
}
