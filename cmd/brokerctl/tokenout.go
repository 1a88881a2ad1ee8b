package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// The values of `get --output`.
const (
	outputToken  = "token"
	outputHeader = "header"
	// outputJSON ("json") is shared with `tenants --output`.
)

// tokenJSON is `get --output json`: its fields in this order, one line.
// The order and the types are an interface scripts rely on.
type tokenJSON struct {
	AccessToken string   `json:"access_token"`
	ExpiresOn   int64    `json:"expires_on"` // Unix seconds
	ExpiresAt   string   `json:"expires_at"` // RFC 3339, UTC
	TenantID    string   `json:"tenant_id"`
	Scopes      []string `json:"scopes"` // never null
}

// checkTokenOutput checks a --output value of get.
func checkTokenOutput(output string) error {
	switch output {
	case outputToken, outputJSON, outputHeader:
		return nil
	}
	return flagError("invalid --output %q: want %s, %s or %s", output, outputToken, outputJSON, outputHeader)
}

// formatToken is tok as one line of the --output format, newline included,
// so that it can be written (and flushed) with one write.
func formatToken(output string, tok *brokerv1.GetTokenResponse) ([]byte, error) {
	switch output {
	case outputJSON:
		exp := time.Unix(tok.GetExpiresAt().GetSeconds(), 0).UTC()
		v := tokenJSON{
			AccessToken: tok.GetAccessToken(),
			ExpiresOn:   exp.Unix(),
			ExpiresAt:   exp.Format(time.RFC3339),
			TenantID:    tok.GetTenantId(),
			Scopes:      tok.GetScopes(),
		}
		if v.Scopes == nil {
			v.Scopes = []string{}
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // scopes are URLs: keep & and the like readable
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		return b.Bytes(), nil // Encode ends it with a newline
	case outputHeader:
		return fmt.Appendf(nil, "Authorization: Bearer %s\n", tok.GetAccessToken()), nil
	default:
		return fmt.Appendf(nil, "%s\n", tok.GetAccessToken()), nil
	}
}
