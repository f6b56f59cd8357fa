package packaging

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// natsOverride returns the values of the override named name.
func natsOverride(t *testing.T, name string) string {
	t.Helper()
	for _, o := range overrides {
		if o.name == name {
			return o.values
		}
	}
	t.Fatalf("no override %q", name)
	return ""
}

// natsConfig is the chart's nats.conf as the real nats-server reads it
// (server.ProcessConfigFile, what nats-server --config does), with the
// pod's POD_NAME.
func natsConfig(t *testing.T, r rendered, fullname string) (string, *server.Options) {
	t.Helper()
	cm := r.mustFind(t, "ConfigMap", fullname+"-nats-config")
	conf, _, _ := unstructured.NestedString(cm.Object, "data", "nats.conf")
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", fullname+"-nats-0")
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the chart's nats.conf: %v\n%s", err, conf)
	}
	return conf, opts
}

// eventQueueArgs are the activator's and the manager's event queue flags.
func eventQueueArgs(t *testing.T, r rendered, fullname string) (activator, manager []string) {
	t.Helper()
	for _, a := range strs(container(t, r.mustFind(t, "Deployment", fullname+"-activator"))["args"]) {
		if strings.HasPrefix(a, "-event-") {
			activator = append(activator, a)
		}
	}
	for _, a := range strs(container(t, r.mustFind(t, "Deployment", fullname+"-manager"))["args"]) {
		if strings.HasPrefix(a, "--event-") {
			manager = append(manager, a)
		}
	}
	return activator, manager
}

// The event queue (eventQueue, nats): by default one NATS server with
// JetStream on a PersistentVolumeClaim, which the activators and the
// manager are pointed at; three clustered with nats.replicas=3; none when
// eventQueue.url names a NATS of the user's, or eventQueue.enabled is false.
func TestChartEventQueue(t *testing.T) {
	t.Run("one server", func(t *testing.T) {
		r := renderChart(t, releaseName, "")
		act, mgr := eventQueueArgs(t, r, "lambdapod")
		if want := []string{"-event-queue=nats://lambdapod-nats.lambdapod-system.svc:4222", "-event-queue-replicas=1"}; !slices.Equal(act, want) {
			t.Errorf("activator event flags %q, want %q", act, want)
		}
		if want := []string{"--event-queue=nats://lambdapod-nats.lambdapod-system.svc:4222"}; !slices.Equal(mgr, want) {
			t.Errorf("manager event flags %q, want %q", mgr, want)
		}
		conf, opts := natsConfig(t, r, "lambdapod")
		if !opts.JetStream || opts.StoreDir != "/data" {
			t.Errorf("JetStream %v in %q, want on, on the volume (/data)\n%s", opts.JetStream, opts.StoreDir, conf)
		}
		if opts.MaxPayload < 2<<20 {
			t.Errorf("max_payload %d, want at least 2 MiB (a 1 MiB event and its headers)", opts.MaxPayload)
		}
		if opts.ServerName != "lambdapod-nats-0" || opts.Port != 4222 || opts.HTTPPort != 8222 {
			t.Errorf("server_name %q, port %d, monitoring port %d", opts.ServerName, opts.Port, opts.HTTPPort)
		}
		if len(opts.Routes) != 0 || opts.Cluster.Port != 0 {
			t.Errorf("one server has routes %v, cluster port %d", opts.Routes, opts.Cluster.Port)
		}

		sts := r.mustFind(t, "StatefulSet", "lambdapod-nats")
		if n, _, _ := unstructured.NestedInt64(sts.Object, "spec", "replicas"); n != 1 {
			t.Errorf("StatefulSet replicas %d", n)
		}
		if s, _, _ := unstructured.NestedString(sts.Object, "spec", "serviceName"); s != "lambdapod-nats-headless" {
			t.Errorf("serviceName %q", s)
		}
		vcts, _, _ := unstructured.NestedSlice(sts.Object, "spec", "volumeClaimTemplates")
		if len(vcts) != 1 {
			t.Fatalf("volumeClaimTemplates %v", vcts)
		}
		vct := vcts[0].(map[string]any)
		if size, _, _ := unstructured.NestedString(vct, "spec", "resources", "requests", "storage"); size != "2Gi" {
			t.Errorf("claim size %q", size)
		}
		if _, ok, _ := unstructured.NestedString(vct, "spec", "storageClassName"); ok {
			t.Error("the claim names a storage class by default; it should take the cluster's default")
		}
		c := container(t, sts)
		if c["image"] != "lambdapod/nats:latest" || !slices.Equal(strs(c["args"]), []string{"--config=/etc/nats/nats.conf"}) {
			t.Errorf("nats container image %v args %q", c["image"], strs(c["args"]))
		}
		mounts := map[string]string{}
		for _, m := range nested(c, "volumeMounts") {
			m := m.(map[string]any)
			mounts[m["name"].(string)] = m["mountPath"].(string)
		}
		if mounts["data"] != "/data" || mounts["config"] != "/etc/nats" {
			t.Errorf("volume mounts %v: want the claim at /data, the config at /etc/nats", mounts)
		}
		for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
			if path, _, _ := unstructured.NestedString(c, probe, "httpGet", "path"); path != "/healthz?js-enabled-only=true" {
				t.Errorf("%s path %q", probe, path)
			}
			if port, _, _ := unstructured.NestedString(c, probe, "httpGet", "port"); port != "monitor" {
				t.Errorf("%s port %q", probe, port)
			}
		}
		if _, ok, _ := unstructured.NestedMap(c, "resources", "limits"); !ok {
			t.Error("nats container without resource limits")
		}
		if fsGroup, _, _ := unstructured.NestedInt64(sts.Object, "spec", "template", "spec", "securityContext", "fsGroup"); fsGroup != 65532 {
			t.Errorf("fsGroup %d: the volume would not be the server's to write", fsGroup)
		}
		podLabels, _, _ := unstructured.NestedStringMap(sts.Object, "spec", "template", "metadata", "labels")

		// The activators' URL reaches the pods' client port.
		svc := r.mustFind(t, "Service", "lambdapod-nats")
		if sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector"); !selects(sel, podLabels) {
			t.Errorf("Service lambdapod-nats selects %v, not the NATS pods %v", sel, podLabels)
		}
		if p := portOf(t, svc, "client"); p["port"] != int64(4222) || p["targetPort"] != "client" {
			t.Errorf("client port %v", p)
		}
		if ip, _, _ := unstructured.NestedString(r.mustFind(t, "Service", "lambdapod-nats-headless").Object, "spec", "clusterIP"); ip != "None" {
			t.Errorf("headless Service clusterIP %q", ip)
		}
		if !strings.Contains(r.notes, "kubectl -n lambdapod-system rollout status statefulset/lambdapod-nats") {
			t.Errorf("NOTES do not say how to wait for NATS:\n%s", r.notes)
		}
		if r.find("PodDisruptionBudget", "lambdapod-nats") != nil {
			t.Error("a PodDisruptionBudget for a single NATS server would block every drain")
		}

		// The NetworkPolicy: the client port from the activators and the
		// manager only.
		np := r.mustFind(t, "NetworkPolicy", "lambdapod-nats")
		if sel, _, _ := unstructured.NestedStringMap(np.Object, "spec", "podSelector", "matchLabels"); !selects(sel, podLabels) {
			t.Errorf("NetworkPolicy selects %v, not the NATS pods", sel)
		}
		labelsOf := func(name string) map[string]string {
			l, _, _ := unstructured.NestedStringMap(r.mustFind(t, "Deployment", name).Object, "spec", "template", "metadata", "labels")
			return l
		}
		admitted := func(port int64, labels map[string]string) bool {
			rules, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
			for _, rule := range rules {
				rule := rule.(map[string]any)
				portOK := false
				for _, p := range nested(rule, "ports") {
					portOK = portOK || p.(map[string]any)["port"] == port
				}
				if !portOK {
					continue
				}
				from := nested(rule, "from")
				if len(from) == 0 {
					return true
				}
				for _, f := range from {
					sel, _, _ := unstructured.NestedStringMap(f.(map[string]any), "podSelector", "matchLabels")
					if selects(sel, labels) {
						return true
					}
				}
			}
			return false
		}
		function := map[string]string{"lambdapod.io/function": "hello", "app.kubernetes.io/name": "hello"}
		for _, x := range []struct {
			who    string
			labels map[string]string
			port   int64
			want   bool
		}{
			{"an activator", labelsOf("lambdapod-activator"), 4222, true},
			{"the manager", labelsOf("lambdapod-manager"), 4222, true},
			{"a function pod", function, 4222, false},
			{"a function pod", function, 6222, false},
			{"a NATS server", podLabels, 6222, true},
			{"the kubelet (probes)", nil, 8222, true},
		} {
			if got := admitted(x.port, x.labels); got != x.want {
				t.Errorf("%s admitted to port %d: %v, want %v", x.who, x.port, got, x.want)
			}
		}
	})

	t.Run("three servers", func(t *testing.T) {
		r := renderChart(t, releaseName, natsOverride(t, "nats-cluster"))
		act, mgr := eventQueueArgs(t, r, "lambdapod")
		if want := []string{"-event-queue=nats://lambdapod-nats.lambdapod-system.svc:4222", "-event-queue-replicas=3"}; !slices.Equal(act, want) {
			t.Errorf("activator event flags %q, want %q", act, want)
		}
		if want := []string{"--event-queue=nats://lambdapod-nats.lambdapod-system.svc:4222"}; !slices.Equal(mgr, want) {
			t.Errorf("manager event flags %q, want %q", mgr, want)
		}
		conf, opts := natsConfig(t, r, "lambdapod")
		var routes []string
		for _, u := range opts.Routes {
			routes = append(routes, u.String())
		}
		want := []string{
			"nats://lambdapod-nats-0.lambdapod-nats-headless.lambdapod-system.svc:6222",
			"nats://lambdapod-nats-1.lambdapod-nats-headless.lambdapod-system.svc:6222",
			"nats://lambdapod-nats-2.lambdapod-nats-headless.lambdapod-system.svc:6222",
		}
		if !slices.Equal(routes, want) || opts.Cluster.Port != 6222 || opts.Cluster.Name != "lambdapod-nats" {
			t.Errorf("routes %q, cluster %q port %d\n%s", routes, opts.Cluster.Name, opts.Cluster.Port, conf)
		}
		if opts.JetStreamMaxStore != 16<<30 {
			t.Errorf("max_file_store %d, want nats.jetstream.maxFileStore (16GB)", opts.JetStreamMaxStore)
		}
		sts := r.mustFind(t, "StatefulSet", "lambdapod-nats")
		if n, _, _ := unstructured.NestedInt64(sts.Object, "spec", "replicas"); n != 3 {
			t.Errorf("StatefulSet replicas %d", n)
		}
		if p, _, _ := unstructured.NestedString(sts.Object, "spec", "podManagementPolicy"); p != "Parallel" {
			t.Errorf("podManagementPolicy %q: the servers of a cluster wait for each other", p)
		}
		vcts, _, _ := unstructured.NestedSlice(sts.Object, "spec", "volumeClaimTemplates")
		if cls, _, _ := unstructured.NestedString(vcts[0].(map[string]any), "spec", "storageClassName"); cls != "fast-ssd" {
			t.Errorf("storageClassName %q", cls)
		}
		if size, _, _ := unstructured.NestedString(vcts[0].(map[string]any), "spec", "resources", "requests", "storage"); size != "20Gi" {
			t.Errorf("claim size %q", size)
		}
		if img := container(t, sts)["image"]; img != "registry.example.com/lambdapod/nats@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
			t.Errorf("nats image %v", img)
		}
		headless := r.mustFind(t, "Service", "lambdapod-nats-headless")
		if p, _, _ := unstructured.NestedBool(headless.Object, "spec", "publishNotReadyAddresses"); !p {
			t.Error("the headless Service leaves out servers that are not ready: a cluster could not form")
		}
		portOf(t, headless, "cluster")
		pdb := r.mustFind(t, "PodDisruptionBudget", "lambdapod-nats")
		if m, _, _ := unstructured.NestedInt64(pdb.Object, "spec", "maxUnavailable"); m != 1 {
			t.Errorf("NATS PodDisruptionBudget maxUnavailable %d", m)
		}
	})

	t.Run("a NATS of the user's", func(t *testing.T) {
		r := renderChart(t, releaseName, natsOverride(t, "nats-external"))
		act, mgr := eventQueueArgs(t, r, "lambdapod")
		if want := []string{"-event-queue=nats://nats.messaging.svc:4222", "-event-queue-replicas=3"}; !slices.Equal(act, want) {
			t.Errorf("activator event flags %q, want %q", act, want)
		}
		if want := []string{"--event-queue=nats://nats.messaging.svc:4222"}; !slices.Equal(mgr, want) {
			t.Errorf("manager event flags %q, want %q", mgr, want)
		}
		for _, o := range r.objects {
			if o.GetLabels()["app.kubernetes.io/component"] == "nats" {
				t.Errorf("eventQueue.url set, yet the chart renders %s", key(o))
			}
		}
		if len(r.ofKind("StatefulSet")) > 0 {
			t.Error("eventQueue.url set, yet the chart renders a StatefulSet")
		}
		if !strings.Contains(r.notes, "nats://nats.messaging.svc:4222") {
			t.Errorf("NOTES do not name the NATS in use:\n%s", r.notes)
		}
	})

	t.Run("disabled", func(t *testing.T) {
		r := renderChart(t, releaseName, "eventQueue:\n  enabled: false\n  url: nats://ignored:4222\n")
		if act, mgr := eventQueueArgs(t, r, "lambdapod"); len(act)+len(mgr) > 0 {
			t.Errorf("eventQueue.enabled=false, yet activator flags %q, manager flags %q", act, mgr)
		}
		if len(r.ofKind("StatefulSet")) > 0 || r.find("ConfigMap", "lambdapod-nats-config") != nil {
			t.Error("eventQueue.enabled=false, yet the chart renders NATS")
		}
		if !strings.Contains(r.notes, "Event invocations wait in the memory") {
			t.Errorf("NOTES do not say where Events wait:\n%s", r.notes)
		}
	})

	t.Run("schema", func(t *testing.T) {
		for name, values := range map[string]string{
			"two servers (no quorum)": "nats:\n  replicas: 2\n",
			"url without a scheme":    "eventQueue:\n  url: nats.example.com:4222\n",
			"size not a quantity":     "nats:\n  storage:\n    size: lots\n",
		} {
			if _, err := tryRenderChart(t, releaseName, values); err == nil {
				t.Errorf("%s: values accepted:\n%s", name, values)
			}
		}
	})
}
