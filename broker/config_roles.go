package broker

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxRoleBytes bounds one entry of required_roles.
const maxRoleBytes = 256

// resolveRoles checks required_roles: each a role value (printable, without
// spaces, at most maxRoleBytes); it returns them sorted, without
// duplicates.
func resolveRoles(key string, roles []string) ([]string, error) {
	for _, r := range roles {
		if r == "" || len(r) > maxRoleBytes || strings.IndexFunc(r, func(c rune) bool { return !unicode.IsPrint(c) || unicode.IsSpace(c) }) >= 0 || !utf8.ValidString(r) {
			return nil, badKey(key, "%q is not a role: give the value of an application permission, such as \"Alert.Read.All\" (1-%d printable characters, no spaces)", r, maxRoleBytes)
		}
	}
	if len(roles) == 0 {
		return nil, nil
	}
	out := slices.Clone(roles)
	slices.Sort(out)
	return slices.Compact(out), nil
}
