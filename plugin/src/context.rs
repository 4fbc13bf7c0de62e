//! Connecting like every kubectl plugin: `--kubeconfig` (else `$KUBECONFIG`, else
//! `~/.kube/config`), `--context`, `-n/--namespace` (else the context's namespace), and
//! finding out who the current user is.

use crate::error::PluginError;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use std::path::PathBuf;

/// The flags every command accepts, read the way kubectl reads them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConnectArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace).
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// A client, the namespace commands act in, and which cluster this is.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    pub namespace: String,
    /// The API server URL of the chosen context, without a trailing `/`: agents are pinned
    /// per cluster under this name (see [`crate::known_agents`]).
    pub server: String,
}

impl Ctx {
    /// Reads the kubeconfig and builds the client.
    pub async fn connect(args: &ConnectArgs) -> Result<Self, PluginError> {
        let kubeconfig = match &args.kubeconfig {
            Some(path) => Kubeconfig::read_from(path)
                .map_err(|err| PluginError::Kubeconfig(format!("{}: {err}", path.display())))?,
            None => Kubeconfig::read().map_err(|err| PluginError::Kubeconfig(err.to_string()))?,
        };
        let options = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
        let config = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|err| PluginError::Kubeconfig(err.to_string()))?;
        let namespace = args.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string().trim_end_matches('/').to_owned();
        let client = Client::try_from(config).map_err(|err| PluginError::Kubeconfig(err.to_string()))?;
        Ok(Self { client, namespace, server })
    }

    /// The read requests or the patches of the current namespace, untyped (for JSON patches
    /// of their status).
    pub fn request_api(&self, kind: crate::target::RequestKind) -> Api<kube::api::DynamicObject> {
        use sb_core::crd::{SecretPatch, SecretReadRequest};
        let resource = match kind {
            crate::target::RequestKind::Read => kube::api::ApiResource::erase::<SecretReadRequest>(&()),
            crate::target::RequestKind::Patch => kube::api::ApiResource::erase::<SecretPatch>(&()),
        };
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    /// A namespaced API for `K` in the current namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The authenticated user's name, as the API server sees it (SelfSubjectReview, what
    /// `kubectl auth whoami` asks). Requests and approvals must carry exactly this name.
    pub async fn whoami(&self) -> Result<String, PluginError> {
        Ok(self.whoami_with_groups().await?.0)
    }

    /// The current user's name and groups, as the API server authenticates them.
    pub async fn whoami_with_groups(&self) -> Result<(String, Vec<String>), PluginError> {
        let api: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let review = api
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map_err(|err| PluginError::from_kube(err, "selfsubjectreview", &self.namespace))?;
        let user = review.status.and_then(|status| status.user_info).unwrap_or_default();
        let name = user.username.filter(|name| !name.is_empty()).ok_or_else(|| {
            PluginError::Api("the API server did not say who you are (SelfSubjectReview has no user name)".into())
        })?;
        Ok((name, user.groups.unwrap_or_default()))
    }
}
