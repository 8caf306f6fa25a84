//! The integrations service's deployment settings: the key that seals integration
//! secrets at rest, the networks its outbound calls may reach although private, and
//! the directory `file:` secret references are read from.

use super::{IpNet, Secret};
use std::path::PathBuf;

/// The resolved settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntegrationsConfig {
    /// Seals secrets given as values (base64 of 32 bytes); `None`: only references
    /// (`env:` / `file:`) are accepted.
    pub key: Option<Secret>,
    /// Private, loopback or link-local networks outbound calls may reach.
    pub allow_nets: Vec<IpNet>,
    /// Where `file:<name>` secret references are read from.
    pub secrets_dir: Option<PathBuf>,
}

/// The unresolved settings (see `Settings`).
#[derive(Default)]
pub(super) struct IntegrationsSettings {
    pub key: Option<Secret>,
    pub key_file: Option<PathBuf>,
    pub allow_nets: Option<String>,
    pub secrets_dir: Option<PathBuf>,
}

impl IntegrationsSettings {
    pub(super) fn resolve(self, errors: &mut Vec<String>) -> IntegrationsConfig {
        let key = super::gateway::one_of("integrations_key", self.key, self.key_file, errors);
        let mut allow_nets = Vec::new();
        for entry in self
            .allow_nets
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match IpNet::parse(entry) {
                Some(net) => allow_nets.push(net),
                None => errors.push(format!(
                    "integrations_allow_nets: {entry:?} is not an address or a block like 10.0.0.0/8"
                )),
            }
        }
        if let Some(dir) = &self.secrets_dir
            && !dir.is_dir()
        {
            errors.push(format!(
                "integrations_secrets_dir: {} is not a directory",
                dir.display()
            ));
        }
        IntegrationsConfig {
            key,
            allow_nets,
            secrets_dir: self.secrets_dir,
        }
    }
}
