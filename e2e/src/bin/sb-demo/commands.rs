//! The walkthrough as commands for a real cluster (`sb-demo --print-commands`).

pub const SCRIPT: &str = r#"# Secrets Bridge on a real cluster: the walkthrough of `make demo`, as commands.
# Prerequisites: KUBECONFIG points at the cluster; the operator chart is installed
# (`helm install secrets-bridge charts/secrets-bridge -n secrets-bridge --create-namespace`:
# CRDs, roles, admission policies, the operator); sb-operator runs; an agent is
# registered (examples/agentregistration.yaml: agent `edge`, providers `vault` and `aws`) and
# Ready; the plugin is on PATH (`make install`: kubectl-sb and kubectl-approve).
# Replace team-a, edge/vault:team-a/db and edge/aws:prod/team-a-api with your own.

# 0. The agent's identity is born in its own boundary (the edge cluster), never in the control plane
sb-agent identity new --agent-id edge --out identity.json        # prints the authKeys entry to register
kubectl --context edge create secret generic sb-agent-identity --from-file=identity.json -n sb-agent
kubectl apply -f examples/agentregistration.yaml                 # with the printed publicKey under spec.authKeys
kubectl get agentregistrations                       # edge: Ready, with a sealing key
kubectl get agentregistration edge -o jsonpath='{.status.agentApi}'   # --operator-url, --ca-file, --spki-pin for the agent
kubectl sb trust edge SHA256:...                     # pin the fingerprint the agent's admin gives you (else trust on first use)

# 1. Read with someone else's approval (requester: role secrets-bridge-requester)
kubectl sb read edge/vault:team-a/db --key password --reason "INC-4211: rotate the reporting job" --name db-password -n team-a
kubectl sb status -n team-a                                                # approver: what is pending
kubectl approve srr/db-password --reason "matches INC-4211" -n team-a       # approver (not the requester)
kubectl get secretreadrequests -n team-a                                   # db-password: Delivered
kubectl sb reveal db-password -n team-a                                    # requester: prints password='...' once
kubectl sb reveal db-password -n team-a                                    # refused: already revealed

# 2. Change a secret; keys you do not name stay as they are
openssl rand -base64 24 > new-password.txt
kubectl sb patch edge/vault:team-a/db password=@new-password.txt --reason "quarterly rotation" --name rotate-db -n team-a
kubectl approve sp/rotate-db --reason "rotation ticket OPS-7" -n team-a
kubectl get secretpatches -n team-a                                        # rotate-db: Executed, with the provider version

# 3. The same as a manifest in git (ciphertext only; bound to its name and namespace)
kubectl sb patch edge/aws:prod/team-a-api api_key=@api-key.txt --reason "rotate the API key" \
  --name rotate-api -n team-a --dry-run -o yaml > rotate-api.yaml
git add rotate-api.yaml && git commit -m "Rotate the payments API key"    # or: kubectl apply -f rotate-api.yaml
kubectl sb approve sp/rotate-api --reason ok -n team-a                     # ArgoCD applied it (examples/argocd-application.yaml)
kubectl sb status sp/rotate-api -n team-a

# 4. Discover what exists (names and labels only, never values)
kubectl sb discover edge/vault --prefix team-a/ --name catalog-vault -n team-a   # or examples/discoveryjob.yaml
kubectl get discoveredsecrets -n team-a -l catalog.secrets-bridge.io/owner=payments
kubectl sb catalog -l owner=payments -n team-a

# 5. Observe the rollout through ArgoCD (operator chart with --set gitops.enabled=true)
kubectl sb patch edge/vault:team-a/db password=@newer-password.txt --observe argocd/payments-web \
  --reason "rotation" --name rotate-db-2 -n team-a
kubectl approve sp/rotate-db-2 --reason OPS-8 -n team-a
kubectl sb status -w sp/rotate-db-2 -n team-a                              # Executed, then Applied once payments-web rolled out
kubectl annotate application payments-web -n argocd \
  secrets-bridge.io/consumes=edge/vault:team-a/db                          # or: observe it for every patch of that target
"#;
