package webhook_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/scheme"
	"github.com/lambdapod/lambdapod/internal/webhook"
)

// zeros is an endless body that costs the sender no memory, so that the
// heap measured is the receiver's.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// heapGrowth runs attack while sampling the heap, and says by how much the
// heap in use rose above what it was (after a GC) before the attack, at its
// highest, and how much was allocated in all.
func heapGrowth(attack func()) (peak, allocated uint64) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var top uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		top = max(top, ms.HeapInuse)
		allocated = ms.TotalAlloc - before.TotalAlloc
	}
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	attack()
	close(done)
	<-sampled
	sample()
	if top < before.HeapInuse {
		return 0, allocated
	}
	return top - before.HeapInuse, allocated
}

// TestBodiesOfRefusedDeliveriesAreNotRead sends what took a manager's heap
// up by hundreds of megabytes, over its memory limit: concurrent
// deliveries of the largest body, to be refused. Those refused from their
// headers must leave their bodies unread; those that can only be refused
// once their body is read (a wrong signature to a hook with a webhook
// secret) must not hold more bodies at once than the receiver allows,
// however many are sent.
func TestBodiesOfRefusedDeliveriesAreNotRead(t *testing.T) {
	const size = webhook.MaxBody
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(
		&lambdapodv1alpha1.Function{
			ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "team"},
			Spec: lambdapodv1alpha1.FunctionSpec{Source: lambdapodv1alpha1.Source{Git: &lambdapodv1alpha1.GitSource{
				URL: "https://git.example/org/hello.git", Revision: "main",
				SecretRef: &corev1.LocalObjectReference{Name: "hello-git"},
			}}},
		},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "hello-git", Namespace: "team"}, Data: map[string][]byte{"webhook-secret": []byte(secret)}},
	).Build()
	rec := &recorder{}
	srv := httptest.NewServer(&webhook.Handler{Functions: c, Secrets: c, Trigger: rec})
	defer srv.Close()

	refused := "403 Forbidden " + webhook.Refused
	attacks := []struct {
		name, path string
		headers    map[string]string
		senders    int
		// maxGrowth bounds the rise of the receiver's heap.
		maxGrowth uint64
		// answers are those allowed.
		answers []string
	}{
		{"unsigned, to an unknown hook", "/hooks/nope/nope", map[string]string{"X-GitHub-Event": "push"},
			8, 16 << 20, []string{refused}},
		// Bodies are read one at a time, and the collector may let two
		// more pile up as garbage (GOGC=100) before it frees them: about
		// three bodies, not one per sender. Under load some wait too long
		// for their turn and are told to come back.
		{"wrongly signed, to a Function with a webhook secret", "/hooks/team/hello",
			map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + webhook.Sign([]byte("guess"), nil)},
			16, 4 * size, []string{refused, "503 Service Unavailable " + webhook.Unavailable}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			var mu sync.Mutex
			answers := map[string]int{}
			peak, allocated := heapGrowth(func() {
				var wg sync.WaitGroup
				for range a.senders {
					wg.Go(func() {
						req, err := http.NewRequest(http.MethodPost, srv.URL+a.path, io.LimitReader(zeros{}, size))
						if err != nil {
							t.Error(err)
							return
						}
						req.ContentLength = size
						for k, v := range a.headers {
							req.Header.Set(k, v)
						}
						answer := ""
						if resp, err := srv.Client().Do(req); err != nil {
							answer = "error: " + err.Error()
						} else {
							b, _ := io.ReadAll(resp.Body)
							resp.Body.Close()
							answer = resp.Status + " " + strings.TrimSpace(string(b))
						}
						mu.Lock()
						answers[answer]++
						mu.Unlock()
					})
				}
				wg.Wait()
			})
			t.Logf("%d concurrent %d MB bodies: heap in use rose by %.1f MB at its highest; %.1f MB allocated in all; answers %v",
				a.senders, size>>20, float64(peak)/(1<<20), float64(allocated)/(1<<20), answers)
			if peak > a.maxGrowth {
				t.Errorf("the heap in use rose by %.1f MB, want under %d MB", float64(peak)/(1<<20), a.maxGrowth>>20)
			}
			for answer := range answers {
				if !slices.Contains(a.answers, answer) {
					t.Errorf("answered %q, want one of %q", answer, a.answers)
				}
			}
			if len(rec.keys) != 0 {
				t.Errorf("triggered %v", rec.keys)
			}
		})
	}
}
