package main

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
)

// Exit statuses, one per class of failure (exitTable says which).
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitNotFound    = 3
	exitDenied      = 4
	exitMustAct     = 5
	exitUnavailable = 6
)

// exitTable is brokerctl's exit status table, the one place it is written:
// exitStatus maps codes with it, and the root command's help prints it.
// A gRPC code in no row exits with exitError.
var exitTable = []struct {
	status int
	codes  []codes.Code
	what   string
}{
	{exitOK, []codes.Code{codes.OK}, "success"},
	{exitError, nil, "internal, unknown or other error"},
	{exitUsage, []codes.Code{codes.InvalidArgument}, "usage error (bad flags or input), or INVALID_ARGUMENT"},
	{exitNotFound, []codes.Code{codes.NotFound}, "NOT_FOUND: the tenant or app is not configured (callers other than root and brokerd's user get 4 for an unknown tenant), or the tenant does not exist"},
	{exitDenied, []codes.Code{codes.PermissionDenied, codes.Unauthenticated}, "PERMISSION_DENIED or UNAUTHENTICATED: this user may not do that, or brokerctl does not trust the daemon or the socket's path"},
	{exitMustAct, []codes.Code{codes.FailedPrecondition}, "FAILED_PRECONDITION: a person must act (store or rotate the credential, grant admin consent)"},
	{exitUnavailable, []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted},
		"UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED, or brokerd is not running: retry later"},
}

// exitStatus maps a gRPC status code to brokerctl's exit status.
func exitStatus(code codes.Code) int {
	for _, row := range exitTable {
		for _, c := range row.codes {
			if c == code {
				return row.status
			}
		}
	}
	return exitError
}

// exitStatusHelp is the root command's text on errors and exit statuses.
func exitStatusHelp() string {
	var b strings.Builder
	b.WriteString(`Errors are one line on stderr: "brokerctl: ", the gRPC status code and
brokerd's message, which says what to do. The exit status tells scripts what
kind of failure it was:
`)
	for _, row := range exitTable {
		b.WriteString("\n" + wrap(fmt.Sprintf("  %d  ", row.status), row.what, 78))
	}
	return b.String()
}

// wrap puts prefix before text and breaks the text at spaces into lines
// of at most width bytes, indenting the lines after the first as deep as
// the prefix.
func wrap(prefix, text string, width int) string {
	var b strings.Builder
	b.WriteString(prefix)
	line := len(prefix)
	for i, word := range strings.Fields(text) {
		switch {
		case i == 0:
		case line+1+len(word) > width:
			b.WriteString("\n" + strings.Repeat(" ", len(prefix)))
			line = len(prefix)
		default:
			b.WriteString(" ")
			line++
		}
		b.WriteString(word)
		line += len(word)
	}
	return b.String()
}
