//! The controller's keys: the attestation key (the current one and, while it changes, the previous one)
//! and, with receivers as objects, the channel keys (current and previous). They are read from files
//! (mounted Secrets) and, with receivers as objects, read again every [`RELOAD_INTERVAL`]: the kubelet
//! updates a mounted Secret in place. No message here shows key material.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hookgate_protocol::attestation::check_key;
use hookgate_protocol::crypto::sha256_hex;
use hookgate_protocol::enrollment::ControllerKey;
use hookgate_protocol::Secret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the key files are read again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Why a key could not be used. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what} file {path}: cannot read: {error}")]
    Read {
        what: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("{what} file {path}: {reason}")]
    Invalid {
        what: &'static str,
        path: String,
        reason: String,
    },
}

/// Where the current attestation key comes from: a file (read again), or a value read once at start
/// (an environment variable).
pub enum Material {
    File(PathBuf),
    Fixed(Secret),
}

/// Where every key is read from.
pub struct KeySources {
    pub attestation: Material,
    /// Absent file: no previous key (the usual case outside a change of key).
    pub previous_attestation: Option<PathBuf>,
    /// Set exactly with receivers as objects.
    pub channel: Option<PathBuf>,
    pub previous_channel: Option<PathBuf>,
}

/// The keys in force. `Debug` shows how many and the channel key ids, never material.
#[derive(Clone, Default)]
pub struct Keys {
    /// The current key first: the filter signs with it, and the served configuration carries it.
    pub attestation: Vec<Secret>,
    /// The controller's channel keys (the proxies' bootstrap holds their public halves), the current
    /// first; empty without receivers as objects.
    pub channel: Vec<ControllerKey>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("attestation", &self.attestation.len())
            .field("channel", &self.channel)
            .finish()
    }
}

impl Keys {
    /// What tells two sets of keys apart, without the material: digests of the attestation keys and the
    /// channel key ids.
    pub fn fingerprint(&self) -> Vec<String> {
        self.attestation
            .iter()
            .map(|key| sha256_hex(&[key.expose()]))
            .chain(self.channel.iter().map(|key| key.public().id_hex()))
            .collect()
    }

    /// The key the served configuration carries.
    pub fn current_attestation(&self) -> Option<&Secret> {
        self.attestation.first()
    }
}

/// A key read from a file: the attestation key as its bytes (checked), the controller's channel key
/// parsed. Messages say how to fix a key, never show it.
trait KeyFile: Sized {
    fn parse(material: Vec<u8>) -> Result<Self, String>;
}

impl KeyFile for Secret {
    fn parse(material: Vec<u8>) -> Result<Self, String> {
        check_key(&material).map_err(|error| error.to_string())?;
        Ok(Secret::new(material))
    }
}

impl KeyFile for ControllerKey {
    fn parse(material: Vec<u8>) -> Result<Self, String> {
        ControllerKey::from_hex(&material).map_err(|error| {
            format!(
                "the controller's channel key {error}: generate one with `hookgate token` \
                 (written without a newline: `printf %s`)"
            )
        })
    }
}

impl KeySources {
    /// Reads every key. A current key must be there and valid; a previous key's missing file means no
    /// previous key.
    pub fn load(&self) -> Result<Keys, KeyError> {
        let mut attestation = vec![match &self.attestation {
            Material::File(path) => read(path, "attestation key")?,
            Material::Fixed(key) => key.clone(),
        }];
        if let Some(path) = &self.previous_attestation {
            attestation.extend(read_optional(path, "previous attestation key")?);
        }
        let mut channel = Vec::new();
        if let Some(path) = &self.channel {
            channel.push(read(path, "channel key")?);
            if let Some(path) = &self.previous_channel {
                channel.extend(read_optional(path, "previous channel key")?);
            }
        }
        Ok(Keys {
            attestation,
            channel,
        })
    }

    /// Reads the keys again every [`RELOAD_INTERVAL`] and publishes them when they changed. A key file
    /// that cannot be used is logged (by its path) and the keys in force stay.
    pub fn spawn_reloader(self, keys: watch::Sender<Arc<Keys>>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(RELOAD_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                match self.load() {
                    Ok(loaded) => {
                        let changed = loaded.fingerprint() != keys.borrow().fingerprint();
                        if changed {
                            tracing::info!(keys = ?loaded, "keys changed");
                            keys.send_replace(Arc::new(loaded));
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "keys not reloaded, the keys in force stay")
                    }
                }
            }
        })
    }
}

fn read<K: KeyFile>(path: &Path, what: &'static str) -> Result<K, KeyError> {
    let material = std::fs::read(path).map_err(|error| KeyError::Read {
        what,
        path: path.display().to_string(),
        error,
    })?;
    K::parse(material).map_err(|reason| KeyError::Invalid {
        what,
        path: path.display().to_string(),
        reason,
    })
}

fn read_optional<K: KeyFile>(path: &Path, what: &'static str) -> Result<Option<K>, KeyError> {
    match read(path, what) {
        Ok(key) => Ok(Some(key)),
        Err(KeyError::Read { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTESTATION: &str = "attestation-key-0123456789abcdef";
    const PREVIOUS: &str = "previous-attestation-key-0123456789";
    const CHANNEL: &str = "4f1b0e3c2a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    const OLD_CHANNEL: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn id(material: &str) -> String {
        ControllerKey::from_hex(material.as_bytes())
            .unwrap()
            .public()
            .id_hex()
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("hookgate-keys-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, content: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, content).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sources(dir: &Dir) -> KeySources {
        KeySources {
            attestation: Material::File(dir.0.join("attestation")),
            previous_attestation: Some(dir.0.join("previous-attestation")),
            channel: Some(dir.0.join("channel")),
            previous_channel: Some(dir.0.join("previous-channel")),
        }
    }

    #[test]
    fn current_keys_are_required_previous_ones_optional() {
        let dir = Dir::new("optional");
        dir.write("attestation", ATTESTATION);
        dir.write("channel", CHANNEL);
        let keys = sources(&dir).load().unwrap();
        assert_eq!(keys.attestation, [Secret::from(ATTESTATION)]);
        assert_eq!(keys.channel.len(), 1);
        let before = keys.fingerprint();

        dir.write("previous-attestation", PREVIOUS);
        dir.write("previous-channel", OLD_CHANNEL);
        let keys = sources(&dir).load().unwrap();
        assert_eq!(
            keys.attestation,
            [Secret::from(ATTESTATION), Secret::from(PREVIOUS)]
        );
        assert_eq!(keys.channel[1].public().id_hex(), id(OLD_CHANNEL));
        assert_ne!(keys.fingerprint(), before);
        let shown = format!("{keys:?}");
        for material in [ATTESTATION, PREVIOUS, CHANNEL, OLD_CHANNEL] {
            assert!(!shown.contains(material), "{shown}");
            assert!(
                !keys.fingerprint().iter().any(|f| f.contains(material)),
                "{material}"
            );
        }
    }

    #[test]
    fn refusals_name_the_file_never_the_key() {
        let dir = Dir::new("refusals");
        dir.write("attestation", ATTESTATION);
        let cases: &[(&str, &str, &str, &str)] = &[
            ("channel", "", "cannot read", "channel key file"),
            (
                "channel",
                "short-key",
                "is not 64 hex characters",
                "channel key file",
            ),
            (
                "channel",
                "4f1b0e3c2a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7\n",
                "is not 64 hex characters",
                "channel key file",
            ),
            (
                "channel",
                "zz1b0e3c2a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
                "is not hexadecimal",
                "channel key file",
            ),
            (
                "previous-channel",
                "short-key",
                "is not 64 hex characters",
                "previous channel key file",
            ),
            (
                "previous-attestation",
                "previous-attestation-key-0123456789\n",
                "begins or ends with whitespace",
                "previous attestation key file",
            ),
        ];
        for (file, content, reason, what) in cases {
            let _ = std::fs::remove_file(dir.0.join("channel"));
            let _ = std::fs::remove_file(dir.0.join("previous-channel"));
            let _ = std::fs::remove_file(dir.0.join("previous-attestation"));
            if *file != "channel" {
                dir.write("channel", CHANNEL);
            }
            if !content.is_empty() {
                dir.write(file, content);
            }
            let error = sources(&dir).load().unwrap_err().to_string();
            assert!(error.contains(reason), "{file}: {error}");
            assert!(error.starts_with(what), "{file}: {error}");
            assert!(
                content.trim().is_empty() || !error.contains(content.trim()),
                "{file}: shows the key: {error}"
            );
        }
    }

    #[test]
    fn without_a_channel_key_file_there_are_no_channel_keys() {
        let keys = KeySources {
            attestation: Material::Fixed(Secret::from(ATTESTATION)),
            previous_attestation: None,
            channel: None,
            previous_channel: Some(PathBuf::from("/nonexistent/previous")),
        }
        .load()
        .unwrap();
        assert!(keys.channel.is_empty());
        assert_eq!(keys.current_attestation(), Some(&Secret::from(ATTESTATION)));
    }

    /// A key file that changes is published within the reload interval; one that turns invalid keeps
    /// the keys in force.
    #[tokio::test(start_paused = true)]
    async fn the_reloader_publishes_changes_and_keeps_the_keys_in_force_on_errors() {
        let dir = Dir::new("reload");
        dir.write("attestation", ATTESTATION);
        dir.write("channel", CHANNEL);
        let sources = sources(&dir);
        let (sender, mut receiver) = watch::channel(Arc::new(sources.load().unwrap()));
        let task = sources.spawn_reloader(sender);
        dir.write("channel", OLD_CHANNEL);
        tokio::time::sleep(RELOAD_INTERVAL + Duration::from_millis(10)).await;
        receiver.changed().await.unwrap();
        let expected = id(OLD_CHANNEL);
        assert_eq!(
            receiver.borrow_and_update().channel[0].public().id_hex(),
            expected
        );
        dir.write("channel", "short");
        tokio::time::sleep(RELOAD_INTERVAL * 2).await;
        assert!(!receiver.has_changed().unwrap());
        assert_eq!(receiver.borrow().channel[0].public().id_hex(), expected);
        task.abort();
    }
}
