// sb-kube runs a real Kubernetes control plane for tests on loopback: kube-apiserver and
// the garbage-collector, namespace and service-account controllers of
// kube-controller-manager, all built from the Kubernetes Go modules, over an etcd embedded
// in the same process. It is how envtest and tinkerbell's embedded control plane test
// against real Kubernetes without a container engine.
//
// Usage:
//
//	sb-kube --data-dir DIR [--user NAME[=GROUP,GROUP]]... [--audit-log]
//
// Started again on the same DIR, sb-kube restarts that control plane: same ports, keys,
// tokens and kubeconfigs, over the etcd data the last run left (sb-kube.state in DIR).
//
// DIR gets pki/ (the CA, serving and service-account keys), etcd/ (etcd's data: the real
// storage, searched by the tests), kubeconfigs/<user>.kubeconfig (one per token user, plus
// admin in system:masters) and logs on stderr. With --audit-log the API server also writes
// its audit log to DIR/audit.log, one JSON event per request at level Metadata (who, verb,
// resource, response code, times; never a request or response body), so tests can count the
// requests a client makes. When /readyz answers, sb-kube prints one
// line, "ready https://127.0.0.1:PORT", on stdout. SIGTERM or SIGINT stops it cleanly.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

const adminUser = "admin"

// The controller-manager's own user: in system:masters so its controllers may list and
// delete every kind, as they do with the bootstrap roles in a cluster.
const controllerManagerUser = "system:kube-controller-manager"

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "sb-kube: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("sb-kube", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "directory for pki/, etcd/ and kubeconfigs/ (required; created if missing)")
	var users userFlags
	fs.Var(&users, "user", "a token user NAME[=GROUP,GROUP]; repeatable ("+adminUser+" in system:masters always exists)")
	audit := fs.Bool("audit-log", false, "write the API server's audit log (level Metadata) to DIR/audit.log")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *dataDir == "" {
		return fmt.Errorf("--data-dir is required")
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	pkiDir := filepath.Join(dir, "pki")
	for _, d := range []string{pkiDir, filepath.Join(dir, "etcd"), filepath.Join(dir, "apiserver")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}

	// A data directory that already holds a control plane's state is a restart: the same
	// ports, CA, serving and service-account keys, tokens and kubeconfigs, over the etcd data
	// the last run left, so every client (and every issued ServiceAccount token) of the first
	// run works again, as after a kube-apiserver restart in a cluster.
	statePath := filepath.Join(dir, "sb-kube.state")
	st, restarting, err := loadState(statePath, pkiDir)
	if err != nil {
		return err
	}
	if restarting {
		fmt.Fprintf(os.Stderr, "sb-kube: restarting on the state in %s (ports %d/%d/%d; --user flags are those of the first start)\n", dir, st.EtcdPort, st.PeerPort, st.APIPort)
	} else {
		ports, err := freePorts(3)
		if err != nil {
			return err
		}
		st.EtcdPort, st.PeerPort, st.APIPort = ports[0], ports[1], ports[2]
		st.Audit = *audit
	}
	etcdPort, peerPort, apiPort := st.EtcdPort, st.PeerPort, st.APIPort
	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	tokens := filepath.Join(pkiDir, "tokens.csv")
	kubeconfigs := filepath.Join(dir, "kubeconfigs")

	all := append([]user{
		{name: adminUser, groups: []string{"system:masters"}},
		{name: controllerManagerUser, groups: []string{"system:masters"}},
	}, users...)
	if restarting {
		all = st.Users
	} else {
		ca, err := newPKI()
		if err != nil {
			return err
		}
		if err := ca.write(pkiDir); err != nil {
			return err
		}
		for i := range all {
			all[i].token = randomToken()
		}
		if err := writeTokenFile(tokens, all); err != nil {
			return err
		}
		if err := writeKubeconfigs(kubeconfigs, server, ca.caCertPEM, all); err != nil {
			return err
		}
		st.Users = all
		if err := saveState(statePath, st); err != nil {
			return err
		}
	}
	caCertPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		return err
	}

	etcd, err := startEtcd(filepath.Join(dir, "etcd"), etcdPort, peerPort)
	if err != nil {
		return err
	}
	defer etcd.Close()

	// Both components share the process-wide feature gates, and the controller-manager
	// adjusts a default (WatchListClient) while building its flags, which is refused once
	// the API server's flags hold the gates: so build its command first, run it later.
	kcm, err := newControllerManager(filepath.Join(kubeconfigs, kubeconfigFileName(controllerManagerUser)))
	if err != nil {
		return err
	}

	// The API server installs its own SIGTERM/SIGINT handler: a signal cancels its context,
	// it shuts down gracefully and Execute returns.
	cmd := apiserver.NewAPIServerCommand()
	args := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + filepath.Join(dir, "apiserver"),
		"--tls-cert-file=" + filepath.Join(pkiDir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(pkiDir, "serving.key"),
		"--client-ca-file=" + filepath.Join(pkiDir, "ca.crt"),
		"--token-auth-file=" + tokens,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pkiDir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pkiDir, "sa.key"),
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// No kubelet or endpoints to reconcile on loopback.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=0",
	}
	if st.Audit {
		auditArgs, err := auditLog(dir)
		if err != nil {
			return err
		}
		args = append(args, auditArgs...)
	}
	cmd.SetArgs(args)
	apiDone := make(chan error, 1)
	go func() { apiDone <- cmd.Execute() }()

	if err := waitReady(server, caCertPEM, all[0].token, apiDone); err != nil {
		return err
	}

	// On SIGTERM/SIGINT the controller-manager stops first, so its watches end and the API
	// server's graceful shutdown is not held open by them; clients that keep watching hold
	// it open at most shutdownGrace, then sb-kube closes etcd and exits anyway.
	stopping := make(chan os.Signal, 1)
	signal.Notify(stopping, syscall.SIGTERM, syscall.SIGINT)
	kcmCtx, stopKCM := context.WithCancel(context.Background())
	go func() {
		if err := kcm.run(kcmCtx); err != nil && kcmCtx.Err() == nil {
			fmt.Fprintf(os.Stderr, "sb-kube: kube-controller-manager: %v\n", err)
			os.Exit(1)
		}
	}()

	fmt.Printf("ready %s\n", server)
	select {
	case err := <-apiDone:
		stopKCM()
		if err != nil {
			return fmt.Errorf("kube-apiserver: %w", err)
		}
	case sig := <-stopping:
		fmt.Fprintf(os.Stderr, "sb-kube: %v: stopping kube-controller-manager and kube-apiserver\n", sig)
		stopKCM()
		select {
		case <-apiDone:
		case <-time.After(shutdownGrace):
			fmt.Fprintf(os.Stderr, "sb-kube: kube-apiserver still draining connections after %v; stopping anyway\n", shutdownGrace)
		}
	}
	fmt.Fprintln(os.Stderr, "sb-kube: stopping etcd")
	return nil
}

// auditPolicy logs every request once, when its response is complete (a watch when it
// ends), at level Metadata: no request or response body, so no value can reach the log.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
`

// auditLog writes the audit policy into dir and returns the API server flags that write the
// audit log to dir/audit.log synchronously (each event is in the file when the response is).
func auditLog(dir string) ([]string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + filepath.Join(dir, "audit.log"),
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		"--audit-log-maxsize=0",
	}, nil
}

// shutdownGrace bounds how long a SIGTERM waits for the API server to drain.
const shutdownGrace = 5 * time.Second

// controllerManager is kube-controller-manager with the controllers a cluster relies on for
// object lifecycles: ownerReference garbage collection, namespace deletion and the default
// ServiceAccount of each namespace. Its options are built and parsed up front; run skips the
// command's own logging set-up, which the API server in this process has already applied.
type controllerManager struct {
	opts *kcmoptions.KubeControllerManagerOptions
}

func newControllerManager(kubeconfig string) (*controllerManager, error) {
	opts, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	named := opts.Flags(controllermanager.KnownControllers(), controllermanager.ControllersDisabledByDefault(), controllermanager.ControllerAliases())
	opts.ParsedFlags = &named
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	for _, f := range named.FlagSets {
		fs.AddFlagSet(f)
	}
	err = fs.Parse([]string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=garbage-collector-controller,namespace-controller,serviceaccount-controller",
		"--leader-elect=false",
		"--secure-port=0",
	})
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager flags: %w", err)
	}
	return &controllerManager{opts: opts}, nil
}

func (c *controllerManager) run(ctx context.Context) error {
	config, err := c.opts.Config(ctx, controllermanager.KnownControllers(), controllermanager.ControllersDisabledByDefault(), controllermanager.ControllerAliases())
	if err != nil {
		return err
	}
	return controllermanager.Run(ctx, config.Complete())
}

// waitReady polls /readyz as admin until the API server reports ready (every post-start
// hook done, RBAC bootstrap included), failing if it exits first or takes over 3 minutes.
func waitReady(server string, caPEM []byte, token string, done <-chan error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case err := <-done:
			return fmt.Errorf("kube-apiserver exited before it was ready: %v", err)
		default:
		}
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, server+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver was not ready within 3 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts asks the kernel for n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
