// Package rbac holds the activator's RBAC markers, from which `make generate`
// writes config/rbac/activator/role.yaml (ClusterRole activator-role). The
// activator only reads: the EndpointSlices of functions' Services, for ready
// pod addresses, and Functions, for their timeout, concurrency and event
// format. It has no code; the chart and config/activator bind the role to the
// activator's ServiceAccount.
package rbac

// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=lambdapod.io,resources=functions,verbs=get;list;watch
