package broker

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/jwtclaims"
)

// Token is an access token the broker holds for one tenant and scope set.
// Its String and GoString never show the token itself, so a Token can be
// logged or formatted with %v safely; only AccessToken holds the value.
type Token struct {
	// AccessToken is the bearer token. Never log it.
	AccessToken string
	// TenantID is the tenant the token was issued in (its tid claim).
	TenantID string
	// Scopes the token was acquired for.
	Scopes []string
	// IssuedAt is when the broker received the token.
	IssuedAt time.Time
	// ExpiresAt is when the token expires.
	ExpiresAt time.Time
	// Roles are the application permissions in the token's roles claim.
	Roles []string

	memo      *memo     // the adapter's encoding of the token; see Memo
	refreshOn time.Time // when Entra ID asked for a refresh (refresh_in); zero if it did not
}

// memo holds what Token.Memo built. It is behind a pointer so that Token
// values stay copyable (and print through String).
type memo struct{ v atomic.Pointer[any] }

// Memo returns build(t), calling build at most about once per token: an
// adapter can encode a token (e.g. into its wire response) once instead of
// on every call. build must be a pure function of the token; the result
// is shared by every caller and must not be modified.
func (t *Token) Memo(build func(*Token) any) any {
	if t.memo == nil {
		return build(t)
	}
	if v := t.memo.v.Load(); v != nil {
		return *v
	}
	v := build(t)
	t.memo.v.CompareAndSwap(nil, &v)
	return *t.memo.v.Load()
}

// String describes the token without its value.
func (t Token) String() string {
	return fmt.Sprintf("token{tenant %s, scopes %v, expires %s}", t.TenantID, t.Scopes, t.ExpiresAt.Format(time.RFC3339))
}

// GoString is the same as String, so %#v does not reveal the value either.
func (t Token) GoString() string { return t.String() }

// LogValue is the same as String, so slog's handlers (JSON too) never see
// the value.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

// claims are the access token claims the broker reads. It does not verify
// the signature: the token came over TLS from the authority, and the
// resource server verifies it.
type claims struct {
	TenantID string   `json:"tid"`
	Roles    []string `json:"roles"`
	// Exp is the expiry (seconds since 1970); nil when the claim is absent.
	Exp *float64 `json:"exp"`
}

// parseClaims decodes the payload of a JWT access token.
func parseClaims(token string) (*claims, error) {
	var c claims
	if err := jwtclaims.Decode(token, &c); err != nil {
		return nil, fmt.Errorf("the access token %w", err)
	}
	return &c, nil
}
