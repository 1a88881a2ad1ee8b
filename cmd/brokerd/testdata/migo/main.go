// Command migo is the child program of the `brokerctl exec` tests: an
// unmodified Azure SDK client, the Go azidentity ManagedIdentityCredential
// and DefaultAzureCredential, plus raw HTTP requests to the endpoint named
// by IDENTITY_ENDPOINT. It prints one JSON object per line and never a
// token: only its claims and its SHA-256.
//
//	migo token RESOURCE     ManagedIdentityCredential, one token
//	migo dac RESOURCE       DefaultAzureCredential, one token
//	migo refresh RESOURCE   tokens until a different one arrives
//	migo raw RESOURCE       raw requests: wrong headers, Host, method, ...
//	migo env                the identity variables it was given
//	migo exit N             exits N
//	migo trap N             prints "ready", exits N on SIGTERM
//
// It is a module of its own so that the Azure SDK is no dependency of
// tokenbroker's.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: migo token|dac|refresh|raw|env|exit|trap ...")
	}
	arg := ""
	if len(os.Args) > 2 {
		arg = os.Args[2]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch os.Args[1] {
	case "token":
		cred, err := azidentity.NewManagedIdentityCredential(nil)
		check(err)
		printToken(get(ctx, cred, arg))
	case "dac":
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		check(err)
		printToken(get(ctx, cred, arg))
	case "refresh":
		cred, err := azidentity.NewManagedIdentityCredential(nil)
		check(err)
		first := get(ctx, cred, arg)
		printToken(first)
		for {
			tok := get(ctx, cred, arg)
			if tok.Token != first.Token {
				printToken(tok)
				return
			}
			select {
			case <-ctx.Done():
				fail("no new token within 30 s")
			case <-time.After(100 * time.Millisecond):
			}
		}
	case "raw":
		raw(arg)
	case "env":
		out := map[string]any{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "AZURE_") || strings.HasPrefix(k, "IDENTITY_") || strings.HasPrefix(k, "MSI_") || k == "IMDS_ENDPOINT" {
				if k == "IDENTITY_HEADER" {
					v = fmt.Sprintf("%d hex digits", len(v))
				}
				out[k] = v
			}
		}
		emit(out)
	case "exit":
		n, err := strconv.Atoi(arg)
		check(err)
		os.Exit(n)
	case "trap":
		n, err := strconv.Atoi(arg)
		check(err)
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Println("ready")
		<-sigs
		fmt.Println("got SIGTERM")
		os.Exit(n)
	default:
		fail("unknown mode " + os.Args[1])
	}
}

func get(ctx context.Context, cred azcore.TokenCredential, resource string) azcore.AccessToken {
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{resource + "/.default"}})
	if err != nil {
		emit(map[string]any{"error": err.Error()})
		os.Exit(3)
	}
	return tok
}

// printToken prints a token's claims, its expiry as the SDK saw it and
// its SHA-256.
func printToken(tok azcore.AccessToken) {
	claims := map[string]any{}
	parts := strings.Split(tok.Token, ".")
	if len(parts) == 3 {
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			_ = json.Unmarshal(b, &claims)
		}
	}
	sum := sha256.Sum256([]byte(tok.Token))
	emit(map[string]any{"tid": claims["tid"], "aud": claims["aud"], "appid": claims["appid"], "exp": claims["exp"],
		"expires_on": tok.ExpiresOn.Unix(), "sha256": hex.EncodeToString(sum[:])})
}

// raw sends requests the SDKs never send and prints each answer's status
// and body; a 200's body is reduced to its keys.
func raw(resource string) {
	endpoint := os.Getenv("IDENTITY_ENDPOINT")
	secret := os.Getenv("IDENTITY_HEADER")
	u, err := url.Parse(endpoint)
	check(err)
	good := url.Values{"api-version": {"2019-08-01"}, "resource": {resource}}.Encode()
	wrong := strings.Repeat("0", len(secret))
	cases := []struct {
		name, method, path, query, host string
		header                          []string
	}{
		{"ok", "GET", u.Path, good, "", []string{secret}},
		{"no header", "GET", u.Path, good, "", nil},
		{"empty header", "GET", u.Path, good, "", []string{""}},
		{"wrong header", "GET", u.Path, good, "", []string{wrong}},
		{"two headers", "GET", u.Path, good, "", []string{secret, secret}},
		{"evil host", "GET", u.Path, good, "evil.example", []string{secret}},
		{"localhost host", "GET", u.Path, good, "localhost:" + u.Port(), []string{secret}},
		{"post", "POST", u.Path, good, "", []string{secret}},
		{"old api-version", "GET", u.Path, url.Values{"api-version": {"2017-09-01"}, "resource": {resource}}.Encode(), "", []string{secret}},
		{"no resource", "GET", u.Path, url.Values{"api-version": {"2019-08-01"}}.Encode(), "", []string{secret}},
		{"user-assigned", "GET", u.Path, good + "&client_id=11111111-2222-3333-4444-555555555555", "", []string{secret}},
		{"bad query", "GET", u.Path, good + "&%zz", "", []string{secret}},
		{"other path", "GET", "/metadata/identity/oauth2/token", good, "", []string{secret}},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, c := range cases {
		req, err := http.NewRequest(c.method, "http://"+u.Host+c.path+"?"+c.query, nil)
		check(err)
		if c.host != "" {
			req.Host = c.host
		}
		for _, h := range c.header {
			req.Header.Add("X-IDENTITY-HEADER", h)
		}
		resp, err := client.Do(req)
		check(err)
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		check(err)
		var obj map[string]any
		_ = json.Unmarshal(body, &obj)
		if resp.StatusCode == http.StatusOK {
			keys := map[string]any{}
			for k, v := range obj {
				keys[k] = k != "access_token"
				if k == "token_type" || k == "resource" || k == "client_id" {
					keys[k] = v
				}
				if k == "expires_on" {
					_, err := strconv.ParseInt(fmt.Sprint(v), 10, 64)
					keys[k] = fmt.Sprintf("%T, integer: %v", v, err == nil)
				}
			}
			obj = keys
		}
		emit(map[string]any{"case": c.name, "status": resp.StatusCode, "content_type": resp.Header.Get("Content-Type"), "body": obj})
	}
}

func emit(v any) {
	b, err := json.Marshal(v)
	check(err)
	fmt.Println(string(b))
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "migo:", msg)
	os.Exit(2)
}
