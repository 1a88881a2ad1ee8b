// Package jwtclaims reads the claims of a JWT (such as an Entra ID access
// token) without verifying it: the token came over TLS from the authority,
// and the resource server checks its signature. Its errors never quote the
// token.
package jwtclaims

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// The errors of Decode, phrased to follow a subject ("the access token
// is not a JWT").
var (
	ErrNotJWT    = errors.New("is not a JWT")
	ErrNotBase64 = errors.New("has a payload that is not base64url")
	ErrNotClaims = errors.New("has a payload that is not a JSON object of claims")
)

// Decode decodes the payload of token, the middle of its three
// dot-separated parts, into v as encoding/json does.
func Decode(token string, v any) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ErrNotJWT
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ErrNotBase64
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return ErrNotClaims
	}
	return nil
}
