// Package rbac holds the activator's RBAC markers for what it reads, from
// which (with those of package auth, next to the code that needs them)
// `make generate` writes config/rbac/activator/role.yaml: the ClusterRole
// activator-role and a Role of the same name in the activator's namespace.
// The activator reads the EndpointSlices of functions' Services, for ready
// pod addresses, and Functions, for their timeout, concurrency, event
// format and authType; package auth creates TokenReviews and
// SubjectAccessReviews and reads the access key Secrets of its own
// namespace; the activator creates the invoke-token key Secret there if
// the manager has not (internal/invokekey). It has no code; the chart and
// config/activator bind the roles to the activator's ServiceAccount.
package rbac

// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch
// +kubebuilder:rbac:groups=lambdapod.io,resources=functions,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create,namespace=system
