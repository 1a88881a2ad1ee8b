package broker

import (
	"strings"
)

// DefaultCloud is the cloud of an app that sets none.
const DefaultCloud = "public"

// cloud is a national cloud an app's tenants live in: the Entra ID host
// they sign in at, and the Defender for Endpoint API scope their tokens
// are for when the app sets no scopes.
type cloud struct {
	name          string
	authorityHost string
	scope         string
}

// clouds are the values of [apps.NAME] cloud. The US Government hosts
// are those of Microsoft's page "Microsoft Defender for Endpoint for US
// Government customers" (section API): GCC signs in at
// login.microsoftonline.com and calls api-gcc.securitycenter.microsoft.us;
// GCC High and DoD sign in at login.microsoftonline.us and call
// api-gov.securitycenter.microsoft.us. That page names no token audience:
// the scope is the API host's /.default, as in the public cloud, where
// the API's application ID URI is https://api.securitycenter.microsoft.com.
// A GCC tenant still on the commercial Defender for Endpoint is "public".
var clouds = []cloud{
	{"public", "https://login.microsoftonline.com", DefaultScope},
	{"usgov", "https://login.microsoftonline.com", "https://api-gcc.securitycenter.microsoft.us/.default"},
	{"usgovhigh", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us/.default"},
	{"dod", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us/.default"},
}

// cloudNamed is the cloud called name.
func cloudNamed(name string) (cloud, bool) {
	for _, c := range clouds {
		if c.name == name {
			return c, true
		}
	}
	return cloud{}, false
}

// cloudNames lists the values of cloud, for errors.
func cloudNames() string {
	names := make([]string, len(clouds))
	for i, c := range clouds {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// otherCloud reports whether authorityHost is an Entra ID login host of
// Microsoft's in a cloud other than c (login.microsoftonline.com and its
// aliases are the public cloud's and GCC's). Any other host, a proxy or a
// test server, is for the operator to choose.
func otherCloud(c cloud, authorityHost string) bool {
	var signIn string
	switch strings.TrimPrefix(authorityHost, "https://") {
	case "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net":
		signIn = "https://login.microsoftonline.com"
	case "login.microsoftonline.us":
		signIn = "https://login.microsoftonline.us"
	}
	return isMicrosoftLogin(authorityHost) && signIn != c.authorityHost
}
