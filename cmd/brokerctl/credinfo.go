package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// The values of `credential show --output`.
const (
	outputText = "text"
	// outputJSON ("json") is shared with `tenants --output`.
)

// timeLayout is how credential show and set print a time, always in UTC.
const timeLayout = "2006-01-02 15:04:05 UTC"

// expiryWarning is how long before its expiry a credential is warned about.
const expiryWarning = 30 * 24 * time.Hour

func (c *cli) credentialShowCommand() *cobra.Command {
	var app, output string
	cmd := &cobra.Command{
		Use:   "show --app APP [--output text|json]",
		Short: "Describe the credential an app uses, without its value",
		Long: `Show describes the credential brokerd holds for an app: its kind (secret,
certificate or assertion_file), the keystore it is kept in, when it was set,
when it expires and the days left ("unknown" for a secret stored without
--expires), and for a certificate its SHA-1 and SHA-256 thumbprints, its
subject and whether the x5c header is sent. It never shows the secret or
the private key.

--output json prints one JSON object with these keys, always all of them, in
this order: app, kind, keystore, set_at, expires_at (RFC 3339, UTC; null
when unknown), days_left (whole days; negative once expired; null when
unknown), thumbprint_sha1, thumbprint_sha256, subject, assertion_file,
send_x5c.`,
		Example: `  brokerctl credential show --app partner

  # Days until the credential of app partner expires, for a monitoring check
  brokerctl credential show --app partner --output json | jq .days_left`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.showCredential(app, output) }),
	}
	cmd.Flags().StringVar(&app, "app", "", "configured name of the app (required)")
	cmd.Flags().StringVarP(&output, "output", "o", outputText, "output format: text or json")
	_ = cmd.MarkFlagRequired("app")
	c.completeApp(cmd)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]cobra.Completion{outputText, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (c *cli) showCredential(app, output string) error {
	switch {
	case strings.TrimSpace(app) == "":
		return flagError("--app must not be empty: give the app's configured name")
	case output != outputText && output != outputJSON:
		return flagError("invalid --output %q: want %s or %s", output, outputText, outputJSON)
	}
	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()
	var info *brokerv1.CredentialInfo
	err = c.call(func(ctx context.Context) error {
		info, err = bc.GetCredential(ctx, app)
		return err
	})
	if err != nil {
		return err
	}
	var out []byte
	if output == outputJSON {
		out, err = credentialJSONOf(info, c.now())
	} else {
		out = formatCredential(info, c.now())
	}
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(out)
	return err
}

// credentialJSON is `credential show --output json`: every key always
// present, in this order. The keys and types are an interface scripts rely
// on.
type credentialJSON struct {
	App              string  `json:"app"`
	Kind             string  `json:"kind"`
	Keystore         string  `json:"keystore"`
	SetAt            *string `json:"set_at"`     // RFC 3339, UTC; null when unknown
	ExpiresAt        *string `json:"expires_at"` // RFC 3339, UTC; null when unknown
	DaysLeft         *int    `json:"days_left"`  // whole days; negative once expired
	ThumbprintSHA1   string  `json:"thumbprint_sha1"`
	ThumbprintSHA256 string  `json:"thumbprint_sha256"`
	Subject          string  `json:"subject"`
	AssertionFile    string  `json:"assertion_file"`
	SendX5C          bool    `json:"send_x5c"`
}

// credentialJSONOf is info as one line of JSON, newline included.
func credentialJSONOf(info *brokerv1.CredentialInfo, now time.Time) ([]byte, error) {
	v := credentialJSON{
		App:              info.GetApp(),
		Kind:             kindName(info.GetKind()),
		Keystore:         info.GetKeystore(),
		SetAt:            rfc3339(info.GetSetAt()),
		ExpiresAt:        rfc3339(info.GetExpiresAt()),
		ThumbprintSHA1:   info.GetThumbprintSha1(),
		ThumbprintSHA256: info.GetThumbprintSha256(),
		Subject:          info.GetSubject(),
		AssertionFile:    info.GetAssertionFile(),
		SendX5C:          info.GetSendX5C(),
	}
	if info.GetExpiresAt() != nil {
		d := daysLeft(now, info.GetExpiresAt().AsTime())
		v.DaysLeft = &d
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encoding the credential as JSON: %w", err)
	}
	return b.Bytes(), nil
}

// formatCredential is info as aligned "name: value" lines.
func formatCredential(info *brokerv1.CredentialInfo, now time.Time) []byte {
	var b bytes.Buffer
	line := func(name, value string) { fmt.Fprintf(&b, "%-20s%s\n", name+":", value) }
	line("app", oneLine(info.GetApp()))
	line("kind", kindName(info.GetKind()))
	switch info.GetKind() {
	case brokerv1.CredentialKind_CREDENTIAL_KIND_ASSERTION_FILE:
		line("assertion file", oneLine(info.GetAssertionFile()))
		return b.Bytes()
	}
	line("keystore", cell(info.GetKeystore()))
	if at := info.GetSetAt(); at != nil {
		line("set at", at.AsTime().UTC().Format(timeLayout))
	} else {
		line("set at", "unknown (not stored by brokerctl credential set)")
	}
	switch exp := info.GetExpiresAt(); {
	case exp != nil:
		line("expires", expiryText(now, exp.AsTime()))
	case info.GetKind() == brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET:
		line("expires", fmt.Sprintf("unknown (give it with `brokerctl credential set --app %s --expires DATE`)", oneLine(info.GetApp())))
	default:
		line("expires", "unknown")
	}
	if info.GetKind() == brokerv1.CredentialKind_CREDENTIAL_KIND_CERTIFICATE {
		line("thumbprint sha-1", cell(info.GetThumbprintSha1()))
		line("thumbprint sha-256", cell(info.GetThumbprintSha256()))
		line("subject", cell(info.GetSubject()))
		line("send x5c", yesNo(info.GetSendX5C()))
	}
	return b.Bytes()
}

func (c *cli) credentialDeleteCommand() *cobra.Command {
	var app string
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete --app APP [--yes]",
		Short: "Remove an app's credential from brokerd's keystore",
		Long: `Delete removes the credential brokerd holds for an app from its keystore and
stops brokerd using it. Tokens already issued stay valid, and are served,
until they expire; after that the app's tenants fail until a credential is
set again with "brokerctl credential set". The app registration in Entra ID
is not changed: remove the secret or certificate there too when it is
retired.

On a terminal, delete shows the credential and asks before deleting it;
--yes skips the question. Without a terminal, --yes is required.`,
		Example: `  brokerctl credential delete --app partner

  # In a script
  brokerctl credential delete --app partner --yes`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.deleteCredential(app, yes) }),
	}
	cmd.Flags().StringVar(&app, "app", "", "configured name of the app (required)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "delete without asking")
	_ = cmd.MarkFlagRequired("app")
	c.completeApp(cmd)
	return cmd
}

func (c *cli) deleteCredential(app string, yes bool) error {
	if strings.TrimSpace(app) == "" {
		return flagError("--app must not be empty: give the app's configured name")
	}
	tty, isTerminal := c.stdin.(*os.File)
	isTerminal = isTerminal && term.IsTerminal(int(tty.Fd()))
	if !yes && !isTerminal {
		return flagError("stdin is not a terminal to ask on: add --yes to delete the credential of app %s without asking", app)
	}

	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()

	if !yes {
		var info *brokerv1.CredentialInfo
		err = c.call(func(ctx context.Context) error {
			info, err = bc.GetCredential(ctx, app)
			return err
		})
		what := ""
		switch status.Code(err) {
		case codes.OK:
			what = describeCredential(info, c.now())
		case codes.FailedPrecondition, codes.Unavailable:
			// Stored but unreadable (a broken value, a locked keyring):
			// still the administrator's to delete.
			what = "credential (brokerd cannot read it: " + oneLine(status.Convert(err).Message()) + ")"
		default:
			return err
		}
		fmt.Fprintf(c.stderr, "Delete the %s of app %s? Tokens already issued stay valid until they expire; no new ones are acquired until a credential is set again. [y/N] ",
			what, app)
		answer, _ := bufio.NewReader(io.LimitReader(c.stdin, 1024)).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return fmt.Errorf("not deleted: the credential of app %s is unchanged", app)
		}
	}

	var info *brokerv1.CredentialInfo
	err = c.call(func(ctx context.Context) error {
		info, err = bc.DeleteCredential(ctx, app)
		return err
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "deleted the %s of app %s\ntokens already issued stay valid until they expire; app %s's tenants get no new token until `brokerctl credential set --app %s`\n",
		describeCredential(info, c.now()), app, app, app)
	return err
}

// describeCredential names a credential in a sentence: "certificate
// CN=partner (thumbprint 3F2A..., expires 2027-03-01)".
func describeCredential(info *brokerv1.CredentialInfo, now time.Time) string {
	var details []string
	what := kindName(info.GetKind())
	switch info.GetKind() {
	case brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET:
		what = "client secret"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_CERTIFICATE:
		if s := info.GetSubject(); s != "" {
			what += " " + oneLine(s)
		}
		if tp := info.GetThumbprintSha1(); tp != "" {
			details = append(details, "thumbprint "+tp)
		}
	}
	if k := info.GetKeystore(); k != "" {
		details = append(details, "in the "+k+" keystore")
	}
	if exp := info.GetExpiresAt(); exp != nil {
		details = append(details, "expires "+expiryText(now, exp.AsTime()))
	}
	if len(details) == 0 {
		return what
	}
	return what + " (" + strings.Join(details, ", ") + ")"
}

// kindName is the word for a credential kind, in text and JSON.
func kindName(k brokerv1.CredentialKind) string {
	switch k {
	case brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET:
		return "secret"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_CERTIFICATE:
		return "certificate"
	case brokerv1.CredentialKind_CREDENTIAL_KIND_ASSERTION_FILE:
		return "assertion_file"
	}
	return "credential" // brokerd deleted one it had not read
}

// expiryText is "2027-03-01 12:00:00 UTC (365 days left)", or "... (EXPIRED
// 3 days ago)".
func expiryText(now, exp time.Time) string {
	at := exp.UTC().Format(timeLayout)
	switch d := exp.Sub(now); {
	case d <= -24*time.Hour:
		n := int(-d / (24 * time.Hour))
		return fmt.Sprintf("%s (EXPIRED %d %s ago)", at, n, plural(n, "day"))
	case d <= 0:
		return at + " (EXPIRED)"
	case d < 24*time.Hour:
		return at + " (less than a day left)"
	default:
		n := int(d / (24 * time.Hour))
		return fmt.Sprintf("%s (%d %s left)", at, n, plural(n, "day"))
	}
}

// daysLeft is the whole days from now to exp, negative once past.
func daysLeft(now, exp time.Time) int {
	d := exp.Sub(now)
	if d < 0 {
		return -int((-d + 24*time.Hour - 1) / (24 * time.Hour))
	}
	return int(d / (24 * time.Hour))
}

// rfc3339 is ts in RFC 3339, UTC, or nil when unset.
func rfc3339(ts *timestamppb.Timestamp) *string {
	if ts == nil {
		return nil
	}
	s := ts.AsTime().UTC().Format(time.RFC3339)
	return &s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
