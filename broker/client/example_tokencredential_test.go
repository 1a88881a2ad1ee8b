package client_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/tokenbroker/tokenbroker/broker/client"
)

// A Go program built on the Azure SDK gets tenant contoso's tokens from
// brokerd: the credential goes wherever the SDK takes an
// azcore.TokenCredential (armresources.NewClient(subscription, cred, nil),
// msgraphsdk.NewGraphServiceClientWithCredentials(cred, scopes), ...), or
// into an azcore pipeline of its own, as here for the Defender for Endpoint
// API.
func ExampleTokenCredential() {
	path, err := client.SocketPath("") // $BROKERD_SOCKET or the default
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.Dial(path)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	cred, err := client.NewTokenCredential(c, "contoso", nil)
	if err != nil {
		log.Fatal(err)
	}
	pipeline := runtime.NewPipeline("defender-collector", "v1.0.0", runtime.PipelineOptions{
		PerRetry: []policy.Policy{
			runtime.NewBearerTokenPolicy(cred, []string{"https://api.securitycenter.microsoft.com/.default"}, nil),
		},
	}, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := runtime.NewRequest(ctx, http.MethodGet, "https://api.securitycenter.microsoft.com/api/alerts")
	if err != nil {
		log.Fatal(err)
	}
	resp, err := pipeline.Do(req)
	if err != nil {
		// e.g. "brokerd: no token for tenant contoso: FailedPrecondition:
		// ... a Global Administrator of the tenant must grant admin consent: ..."
		log.Fatal(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
}
