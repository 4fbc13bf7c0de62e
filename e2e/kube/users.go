package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A token user: kube-apiserver's --token-auth-file authenticates it as name with groups.
type user struct {
	name   string
	groups []string
	token  string
}

// userFlags collects --user NAME[=GROUP,GROUP...].
type userFlags []user

func (u *userFlags) String() string { return fmt.Sprint(len(*u)) }

func (u *userFlags) Set(v string) error {
	name, groups, _ := strings.Cut(v, "=")
	if name == "" {
		return fmt.Errorf("--user wants NAME[=GROUP,GROUP], got %q", v)
	}
	var gs []string
	if groups != "" {
		gs = strings.Split(groups, ",")
	}
	*u = append(*u, user{name: name, groups: gs})
	return nil
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// kubeconfigFileName is the file a user's kubeconfig is written to: the user name with
// characters that cannot be in a file name (':' and '/' of service-account names) replaced.
func kubeconfigFileName(name string) string {
	return strings.NewReplacer(":", "_", "/", "_").Replace(name) + ".kubeconfig"
}

// writeTokenFile writes the CSV kube-apiserver reads: token,user,uid,"group1,group2".
func writeTokenFile(path string, users []user) error {
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "%s,%s,%s,\"%s\"\n", u.token, u.name, u.name, strings.Join(u.groups, ","))
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// writeKubeconfigs writes one kubeconfig per user into dir.
func writeKubeconfigs(dir, server string, caPEM []byte, users []user) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca := base64Std(caPEM)
	for _, u := range users {
		config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: sb-kube
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %q
  user:
    token: %s
contexts:
- name: sb-kube
  context:
    cluster: sb-kube
    user: %q
    namespace: default
current-context: sb-kube
`, server, ca, u.name, u.token, u.name)
		if err := os.WriteFile(filepath.Join(dir, kubeconfigFileName(u.name)), []byte(config), 0o600); err != nil {
			return err
		}
	}
	return nil
}
