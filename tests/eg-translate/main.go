// eg-translate runs Envoy Gateway's own translators over a file of rendered manifests, as on Kubernetes:
// Gateway API resources to its intermediate representation to xDS (what `egctl x translate` does), with
// EnvoyPatchPolicies enabled and the Wasm filter included. It prints JSON: each EnvoyPatchPolicy's status,
// each listener and each route configuration (where per-route settings such as the rate limit's buckets
// live), in protobuf JSON.
//
// With `-config FILE`, an EnvoyGateway configuration as `envoy-gateway server --config-path` reads it, its
// runtimeFlags reach the xDS translator as in Envoy Gateway's xDS runner: `XDSNameSchemeV2` renames the
// listeners that EnvoyPatchPolicies select by name.
//
// `egctl x translate` cannot show this: it has no Wasm cache, so an EnvoyExtensionPolicy with Wasm code turns
// the route into a direct 500 and no Wasm filter is generated. Here a fixed serving URL stands in for the
// cache's download (it takes part in neither the filter's name nor the patches). The module path lies under
// github.com/envoyproxy/gateway so that Go lets it import the translators' internal packages.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"github.com/envoyproxy/gateway/internal/envoygateway/config"
	"github.com/envoyproxy/gateway/internal/gatewayapi"
	"github.com/envoyproxy/gateway/internal/gatewayapi/resource"
	"github.com/envoyproxy/gateway/internal/logging"
	"github.com/envoyproxy/gateway/internal/wasm"
	"github.com/envoyproxy/gateway/internal/xds/translator"
)

// servedModule answers for Envoy Gateway's Wasm cache without downloading anything.
type servedModule struct{}

func (servedModule) Get(string, *wasm.GetOptions) (string, string, error) {
	return "https://envoy-gateway.envoy-gateway-system.svc.cluster.local:18002/hookgate.wasm",
		"0000000000000000000000000000000000000000000000000000000000000000", nil
}

func (servedModule) Start(context.Context) {}

type patchStatus struct {
	Namespace string                `json:"namespace"`
	Name      string                `json:"name"`
	Status    *gwapiv1.PolicyStatus `json:"status"`
}

type output struct {
	Patches   []patchStatus                `json:"patches"`
	Listeners map[string][]json.RawMessage `json:"listeners"`
	Routes    map[string][]json.RawMessage `json:"routes"`
	Errors    []string                     `json:"errors"`
}

// labelNamespaces gives each namespace the label the API server sets on every namespace, which the file
// loader leaves out: listeners that admit routes by namespace selector match on it.
func labelNamespaces(resources *resource.Resources) {
	for _, namespace := range resources.Namespaces {
		if namespace.Labels == nil {
			namespace.Labels = map[string]string{}
		}
		namespace.Labels["kubernetes.io/metadata.name"] = namespace.Name
	}
}

func main() {
	configPath := flag.String("config", "", "an EnvoyGateway configuration whose runtimeFlags apply")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: eg-translate [-config FILE] FILE")
		os.Exit(2)
	}
	runtimeFlags, err := readRuntimeFlags(*configPath)
	if err != nil {
		fail(err)
	}
	in, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	resources, err := resource.LoadResourcesFromYAMLBytes(in, false, nil)
	if err != nil {
		fail(err)
	}
	labelNamespaces(resources)
	if resources.GatewayClass == nil {
		fail(fmt.Errorf("the file has no GatewayClass"))
	}
	logger := logging.DefaultLogger(io.Discard, egv1a1.LogLevelInfo)
	gatewayAPI := &gatewayapi.Translator{
		GatewayControllerName:   string(resources.GatewayClass.Spec.ControllerName),
		GatewayClassName:        gwapiv1.ObjectName(resources.GatewayClass.Name),
		ControllerNamespace:     "envoy-gateway-system",
		EndpointRoutingDisabled: true,
		EnvoyPatchPolicyEnabled: true,
		BackendEnabled:          true,
		WasmCache:               servedModule{},
		Logger:                  logger,
	}
	result, err := gatewayAPI.Translate(context.Background(), resources)
	out := output{Listeners: map[string][]json.RawMessage{}, Routes: map[string][]json.RawMessage{}}
	if err != nil {
		out.Errors = append(out.Errors, err.Error())
	}
	if result == nil {
		fail(fmt.Errorf("no translation: %v", err))
	}
	for key, xdsIR := range result.XdsIR {
		// The Gateway's EnvoyProxy decides the filter order, as in Envoy Gateway's xDS runner.
		xds := &translator.Translator{Logger: logger, FilterOrder: xdsIR.FilterOrder, RuntimeFlags: runtimeFlags}
		table, err := xds.Translate(context.Background(), xdsIR)
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("%s: %v", key, err))
		}
		if table == nil {
			continue
		}
		for _, status := range table.EnvoyPatchPolicyStatuses {
			out.Patches = append(out.Patches, patchStatus{status.Namespace, status.Name, status.Status})
		}
		for _, r := range table.XdsResources[resourcev3.ListenerType] {
			listener := r.(*listenerv3.Listener)
			text, err := protojson.Marshal(listener)
			if err != nil {
				fail(err)
			}
			out.Listeners[listener.Name] = append(out.Listeners[listener.Name], text)
		}
		for _, r := range table.XdsResources[resourcev3.RouteType] {
			config := r.(*routev3.RouteConfiguration)
			text, err := protojson.Marshal(config)
			if err != nil {
				fail(err)
			}
			out.Routes[config.Name] = append(out.Routes[config.Name], text)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

// readRuntimeFlags reads the runtime flags of the EnvoyGateway configuration at path with Envoy Gateway's own
// decoder; none (its defaults) without a path.
func readRuntimeFlags(path string) (*egv1a1.RuntimeFlags, error) {
	if path == "" {
		return nil, nil
	}
	envoyGateway, err := config.Decode(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return envoyGateway.RuntimeFlags, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "eg-translate:", err)
	os.Exit(1)
}
