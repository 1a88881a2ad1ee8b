package entratest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/tokenbroker/tokenbroker/internal/jwtclaims"
)

// accessClaims are the claims of an app-only v1.0 access token, as Entra ID issues them for the
// client-credentials grant.
type accessClaims struct {
	Aud      string   `json:"aud"`
	Iss      string   `json:"iss"`
	Iat      int64    `json:"iat"`
	Nbf      int64    `json:"nbf"`
	Exp      int64    `json:"exp"`
	Appid    string   `json:"appid"`
	Appidacr string   `json:"appidacr"`
	Idp      string   `json:"idp"`
	Idtyp    string   `json:"idtyp"`
	Oid      string   `json:"oid"`
	Roles    []string `json:"roles,omitempty"`
	Sub      string   `json:"sub"`
	Tid      string   `json:"tid"`
	Jti      string   `json:"jti"`
	Ver      string   `json:"ver"`
	Pad      string   `json:"pad,omitempty"` // only to make a token as large as Fault.TokenSize asks
}

// sign returns c as a compact RS256 JWS signed with the server's key.
func (s *Server) sign(c accessClaims) string {
	header, err := json.Marshal(struct {
		Typ string `json:"typ"`
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}{"JWT", "RS256", s.kid})
	if err != nil {
		panic(fmt.Sprintf("entratest: encoding JWT header: %v", err))
	}
	payload, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("entratest: encoding JWT claims: %v", err))
	}
	signingInput := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, digest[:])
	if err != nil {
		panic(fmt.Sprintf("entratest: signing JWT: %v", err)) // cannot happen with a valid 2048-bit key
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Claims decodes the payload of a JWT without verifying it. JSON numbers (iat, exp, ...) come
// back as float64, arrays (roles) as []any.
func Claims(token string) (map[string]any, error) {
	var claims map[string]any
	if err := jwtclaims.Decode(token, &claims); err != nil {
		return nil, fmt.Errorf("entratest: the token %w", err)
	}
	return claims, nil
}

// servicePrincipalID is the object ID of an app's service principal in a tenant: stable for the
// pair, different across tenants, as in Entra.
func servicePrincipalID(tenantID, appID string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(tenantID) + "\x00" + strings.ToLower(appID)))
	return formatUUID(sum[:16])
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return formatUUID(b[:])
}

// formatUUID formats 16 bytes as a version 4, RFC 4122 variant UUID.
func formatUUID(b []byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isUUID(s string) bool { return uuidRE.MatchString(s) }
