package rewards

import "time"

// Role says what a toolbox user may reach.
type Role string

const (
	// RoleOperator is the team that runs pointpost: every issuer and the operator pages.
	RoleOperator Role = "operator"
	// RoleIssuer is a user of one issuer's toolbox only.
	RoleIssuer Role = "issuer"
)

// User is a person who signs in to the toolbox.
type User struct {
	ID    int64
	Email string
	Name  string
	Role  Role
	// IssuerID and IssuerSlug name the issuer of an issuer user; both are zero for operators.
	IssuerID    int64
	IssuerSlug  string
	Disabled    bool
	HasPassword bool
	CreatedAt   time.Time
	LastLoginAt time.Time
}

// Operator reports whether u is one of the team.
func (u *User) Operator() bool { return u != nil && u.Role == RoleOperator }

// MaySee reports whether u may see and change the objects of the issuer issuerID.
func (u *User) MaySee(issuerID int64) bool {
	return u != nil && !u.Disabled && (u.Role == RoleOperator || u.IssuerID == issuerID)
}

// APIKey is a credential for the JSON API. IssuerID 0 marks an operator's key, which reaches
// every issuer.
type APIKey struct {
	ID         int64
	Name       string
	Prefix     string // the key's first characters, shown so people can tell keys apart
	IssuerID   int64
	IssuerSlug string
	CreatedAt  time.Time
	LastUsedAt time.Time
	RevokedAt  time.Time
}

// Operator reports whether k reaches every issuer.
func (k *APIKey) Operator() bool { return k.IssuerID == 0 }

// TestAddress is an address an operator approved as a recipient of test sends, beside the
// toolbox users' own.
type TestAddress struct {
	Email      string
	Note       string
	ApprovedBy string
	CreatedAt  time.Time
}
