package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// state is what a restart on the same data directory needs beyond pki/ and etcd/: the ports
// that every kubeconfig and etcd's own membership name, and the token users.
type state struct {
	EtcdPort int
	PeerPort int
	APIPort  int
	Users    []user
	// Audit says whether the API server writes an audit log (--audit-log at the first start).
	Audit bool
}

type diskUser struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	Token  string   `json:"token"`
}

type diskState struct {
	EtcdPort int        `json:"etcdPort"`
	PeerPort int        `json:"peerPort"`
	APIPort  int        `json:"apiPort"`
	Users    []diskUser `json:"users"`
	Audit    bool       `json:"audit,omitempty"`
}

// loadState reads the state of an earlier run; false (and no error) when there is none.
// A state without the CA it was issued with is refused rather than silently replaced.
func loadState(path, pkiDir string) (state, bool, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return state{}, false, nil
	}
	if err != nil {
		return state{}, false, err
	}
	var disk diskState
	if err := json.Unmarshal(raw, &disk); err != nil {
		return state{}, false, fmt.Errorf("reading %s: %w", path, err)
	}
	if _, err := os.Stat(filepath.Join(pkiDir, "ca.crt")); err != nil {
		return state{}, false, fmt.Errorf("%s names an earlier run but its CA is gone: %w", path, err)
	}
	st := state{EtcdPort: disk.EtcdPort, PeerPort: disk.PeerPort, APIPort: disk.APIPort, Audit: disk.Audit}
	for _, u := range disk.Users {
		st.Users = append(st.Users, user{name: u.Name, groups: u.Groups, token: u.Token})
	}
	if len(st.Users) == 0 || st.Users[0].name != adminUser {
		return state{}, false, fmt.Errorf("%s does not start with the %s user", path, adminUser)
	}
	return st, true, nil
}

// saveState writes the state a restart reads (0600: it holds the tokens, like tokens.csv).
func saveState(path string, st state) error {
	disk := diskState{EtcdPort: st.EtcdPort, PeerPort: st.PeerPort, APIPort: st.APIPort, Audit: st.Audit}
	for _, u := range st.Users {
		disk.Users = append(disk.Users, diskUser{Name: u.name, Groups: u.groups, Token: u.token})
	}
	raw, err := json.MarshalIndent(disk, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o600)
}
