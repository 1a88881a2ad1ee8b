package miendpoint

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
)

// maxClaimsLength bounds the JWT payload ClientID decodes; brokerd refuses
// larger tokens anyway.
const maxClaimsLength = 64 << 10

// guidRE matches a client id: a GUID.
var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ClientID is the client id of the app an Entra ID access token was issued
// to, from its appid claim (v1.0 tokens) or azp claim (v2.0), or "" when the
// token carries neither as a GUID. The token is brokerd's and is not
// verified here: the value is only echoed as the answer's client_id, which
// the SDKs treat as information.
func ClientID(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > maxClaimsLength {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		AppID string `json:"appid"`
		AZP   string `json:"azp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	for _, id := range []string{claims.AppID, claims.AZP} {
		if guidRE.MatchString(id) {
			return strings.ToLower(id)
		}
	}
	return ""
}
