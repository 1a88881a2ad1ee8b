package miendpoint

import (
	"regexp"
	"strings"

	"github.com/tokenbroker/tokenbroker/internal/jwtclaims"
)

// maxTokenLength bounds the JWT ClientID decodes; brokerd refuses larger
// tokens anyway.
const maxTokenLength = 64 << 10

// guidRE matches a client id: a GUID.
var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ClientID is the client id of the app an Entra ID access token was issued
// to, from its appid claim (v1.0 tokens) or azp claim (v2.0), or "" when the
// token carries neither as a GUID. The token is brokerd's and is not
// verified here: the value is only echoed as the answer's client_id, which
// the SDKs treat as information.
func ClientID(token string) string {
	if len(token) > maxTokenLength {
		return ""
	}
	var claims struct {
		AppID string `json:"appid"`
		AZP   string `json:"azp"`
	}
	if jwtclaims.Decode(token, &claims) != nil {
		return ""
	}
	for _, id := range []string{claims.AppID, claims.AZP} {
		if guidRE.MatchString(id) {
			return strings.ToLower(id)
		}
	}
	return ""
}
