package client_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker/client"
)

// A program that calls the Defender for Endpoint API asks brokerd for the
// tenant's token instead of holding the app's client secret.
func Example() {
	path, err := client.SocketPath("") // $BROKERD_SOCKET or the default
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.Dial(path)
	if err != nil {
		log.Fatal(err) // e.g. "no brokerd socket at ... (is brokerd running? ...)"
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := c.GetToken(ctx, "contoso", nil, 0)
	switch status.Code(err) {
	case codes.OK:
	case codes.FailedPrecondition:
		log.Fatalf("a person must act: %v", status.Convert(err).Message())
	default:
		log.Fatal(err)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://api.securitycenter.microsoft.com/api/alerts", nil)
	req.Header.Set("Authorization", "Bearer "+tok.GetAccessToken())
	fmt.Println(req.Header.Get("Authorization") != "")
}
