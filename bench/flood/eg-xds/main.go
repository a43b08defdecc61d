// eg-xds prints the listeners and route configurations Envoy Gateway's translators generate for a file of
// rendered manifests, as on Kubernetes (Gateway API resources to its intermediate representation to xDS), in
// Envoy's field names as a bootstrap has them. The flood benchmark takes the local rate limit (the
// listener's filter and the route's bucket) from here, exactly as Envoy Gateway configures it for the
// project's BackendTrafficPolicy. tests/eg-translate prints only listeners' HTTP filters, with a stand-in
// for the Wasm cache; this helper prints route configurations too and expects no EnvoyExtensionPolicy.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"github.com/envoyproxy/gateway/internal/gatewayapi"
	"github.com/envoyproxy/gateway/internal/gatewayapi/resource"
	"github.com/envoyproxy/gateway/internal/logging"
	"github.com/envoyproxy/gateway/internal/xds/translator"
)

// By name: each listener and each route configuration.
type output struct {
	Listeners map[string]json.RawMessage `json:"listeners"`
	Routes    map[string]json.RawMessage `json:"routes"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: eg-xds FILE")
		os.Exit(2)
	}
	in, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	resources, err := resource.LoadResourcesFromYAMLBytes(in, false, nil)
	if err != nil {
		fail(err)
	}
	if resources.GatewayClass == nil {
		fail(fmt.Errorf("the file has no GatewayClass"))
	}
	logger := logging.DefaultLogger(io.Discard, egv1a1.LogLevelInfo)
	gatewayAPI := &gatewayapi.Translator{
		GatewayControllerName:   string(resources.GatewayClass.Spec.ControllerName),
		GatewayClassName:        gwapiv1.ObjectName(resources.GatewayClass.Name),
		ControllerNamespace:     "envoy-gateway-system",
		EndpointRoutingDisabled: true,
		BackendEnabled:          true,
		Logger:                  logger,
	}
	result, err := gatewayAPI.Translate(context.Background(), resources)
	if err != nil {
		fail(err)
	}
	out := output{Listeners: map[string]json.RawMessage{}, Routes: map[string]json.RawMessage{}}
	marshal := protojson.MarshalOptions{UseProtoNames: true}
	for key, xdsIR := range result.XdsIR {
		xds := &translator.Translator{Logger: logger, FilterOrder: xdsIR.FilterOrder}
		table, err := xds.Translate(context.Background(), xdsIR)
		if err != nil {
			fail(fmt.Errorf("%s: %w", key, err))
		}
		for _, r := range table.XdsResources[resourcev3.ListenerType] {
			listener := r.(*listenerv3.Listener)
			out.Listeners[listener.Name] = must(marshal.Marshal(listener))
		}
		for _, r := range table.XdsResources[resourcev3.RouteType] {
			config := r.(*routev3.RouteConfiguration)
			out.Routes[config.Name] = must(marshal.Marshal(config))
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func must(text []byte, err error) json.RawMessage {
	if err != nil {
		fail(err)
	}
	return text
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "eg-xds:", err)
	os.Exit(1)
}
