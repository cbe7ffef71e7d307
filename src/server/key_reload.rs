//! The `.rai` keys while the relay runs: loading them with the rules that decide whether a set of keys may
//! be served at all (the published development key only with `--dev`, on loopback, with no proxy in
//! front), and reloading them on SIGHUP or when the file or directory changes, without dropping a
//! connection. A good reload swaps the ring in `App` (`token/live_keyring.rs`) and logs one line naming
//! the files and key ids; a bad one logs the file and field and leaves the keys in force untouched.
//! Parsing is `token/rai_parse.rs`'s, loading files `token/rai_file.rs`'s.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::app::App;
use crate::config::Config;
use crate::log::Logger;
use crate::text::file_error::FileError;
use crate::token::keyring::Keyring;
use crate::token::rai::{is_published_dev_key, load_keyring, RaiFile};

/// How often the `.rai` file or directory is looked at for a change (a `stat` per file, no read unless
/// something changed): a retired key stops verifying within this long without a signal.
pub const KEY_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Where the keys come from and what the relay around them looks like, for the checks every load applies.
#[derive(Debug, Clone)]
pub struct KeySource {
    pub path: PathBuf,
    /// `--dev`: the published development key is allowed (on loopback, with no trusted proxy).
    pub dev: bool,
    listen_ip: IpAddr,
    trusted_proxies: bool,
    base_path: String,
    scheme: &'static str,
}

/// Keys loaded and checked, ready to be put in force.
pub struct Loaded {
    pub ring: Keyring,
    pub files: Vec<(PathBuf, RaiFile)>,
    pub published_dev_key: bool,
}

impl KeySource {
    pub fn new(path: &Path, cfg: &Config, dev: bool) -> KeySource {
        KeySource {
            path: path.to_path_buf(),
            dev,
            listen_ip: cfg.server.addr.ip(),
            trusted_proxies: !cfg.trusted_proxies.is_empty(),
            base_path: cfg.server.base_path.clone(),
            scheme: if cfg.tls.is_some() { "https" } else { "http" },
        }
    }

    /// Reads every `.rai` and applies the serving rules. Errors name the file and the field.
    pub fn load(&self) -> Result<Loaded, FileError> {
        let (ring, files) = load_keyring(&self.path)?;
        let published_dev_key = self.check_published_key(&files)?;
        Ok(Loaded {
            ring,
            files,
            published_dev_key,
        })
    }

    /// The repository's default.rai key is public: anyone can mint tokens with it, including `kref`
    /// tokens that spend the operator's server-held keys. It is served only when the operator said
    /// `--dev` and nobody else can reach the relay: a loopback listener with no trusted proxy (a
    /// loopback listener behind a reverse proxy is reachable by everyone the proxy serves).
    fn check_published_key(&self, files: &[(PathBuf, RaiFile)]) -> Result<bool, FileError> {
        let Some((file, field)) = files.iter().find_map(|(file, r)| {
            // Ecc files hold no symmetric key, so never the published one.
            let RaiFile::Symmetric(r) = r else {
                return None;
            };
            let current = is_published_dev_key(&r.crypto.key).then(|| "crypto.key".to_owned());
            let previous = || {
                r.crypto
                    .previous_keys
                    .iter()
                    .position(|p| is_published_dev_key(&p.key))
                    .map(|i| format!("crypto.previous_keys[{i}].key"))
            };
            current.or_else(previous).map(|field| (file, field))
        }) else {
            return Ok(false);
        };
        let fresh = "make your own key with `relayapi gen-rai --host <host the clients use> --out relay.rai` \
                     and start with `--rai relay.rai` (give the same file to your backend)";
        let problem = if !self.dev {
            format!(
                "holds the published development key (the repository's default.rai), which anyone can \
                 use to mint tokens for this relay; {fresh}, or, to try the relay on this machine only, \
                 start it with `--dev`"
            )
        } else if !self.listen_ip.is_loopback() {
            format!(
                "holds the published development key, which is never served on {} (only on a loopback \
                 address, with --dev); {fresh}",
                self.listen_ip
            )
        } else if self.trusted_proxies {
            format!(
                "holds the published development key, which is never served behind a proxy \
                 (config.json sets `trusted_proxies`, so others reach this relay through it); {fresh}"
            )
        } else {
            return Ok(true);
        };
        Err(FileError::new(file, &field, problem))
    }

    /// Warnings about loaded files that will not match this relay (logged at start and on each reload).
    pub fn warn_mismatches(&self, log: &Logger, files: &[(PathBuf, RaiFile)]) {
        for (file, r) in files {
            let file = file.display().to_string();
            let server = r.server();
            if server.base_path != self.base_path {
                log.warn(
                    "base_path differs between config.json and a .rai file; SDK URLs will not match this relay",
                    json!({"config": self.base_path, "rai": server.base_path, "file": file}),
                );
            }
            if server.scheme != self.scheme {
                log.warn(
                    "server.scheme of a .rai file differs from what this relay serves; SDK URLs will not reach it",
                    json!({"relay": self.scheme, "rai": server.scheme, "tenant": r.tenant_id(),
                           "file": file}),
                );
            }
        }
    }

    /// What the files look like on disk now: size, modification time and inode of the file, or of the
    /// directory and each `*.rai` in it. A change of any of them (an edit, a rename over, a new or
    /// removed file, a symlink switched to another target) means the keys should be read again.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut seen = vec![(self.path.clone(), Stamp::of(&self.path))];
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "rai"))
                .collect();
            files.sort();
            seen.extend(files.into_iter().map(|p| {
                let s = Stamp::of(&p);
                (p, s)
            }));
        }
        Fingerprint(seen)
    }
}

/// A file's identity and version as `stat` reports it (symlinks followed); `None` when it is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(u64, Option<SystemTime>, u64, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        Stamp(std::fs::metadata(path).ok().map(|m| {
            #[cfg(unix)]
            let (ino, dev) = {
                use std::os::unix::fs::MetadataExt as _;
                (m.ino(), m.dev())
            };
            #[cfg(not(unix))]
            let (ino, dev) = (0, 0);
            (m.len(), m.modified().ok(), ino, dev)
        }))
    }
}

/// See [`KeySource::fingerprint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, Stamp)>);

/// What set off a reload, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// SIGHUP: the operator asked, so the files are read even if they look unchanged.
    Signal,
    /// The periodic look found the files changed.
    Poll,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::Poll => "file_change",
        }
    }
}

/// Reloads the keys on each message from `hup` (SIGHUP) and whenever the files' fingerprint differs from
/// `seen` (taken before the keys in force were read), looked at every [`KEY_POLL_INTERVAL`]. A changed
/// file that fails is reported once, not at every look. Runs until `hup` is closed.
pub async fn watch(
    app: Arc<App>,
    source: KeySource,
    mut seen: Fingerprint,
    mut hup: mpsc::Receiver<()>,
) {
    let source = Arc::new(source);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + KEY_POLL_INTERVAL,
        KEY_POLL_INTERVAL,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let trigger = tokio::select! {
            m = hup.recv() => match m {
                Some(()) => Trigger::Signal,
                None => return,
            },
            _ = tick.tick() => Trigger::Poll,
        };
        let (s, before) = (source.clone(), seen.clone());
        let look = tokio::task::spawn_blocking(move || {
            let now_seen = s.fingerprint();
            let changed = trigger == Trigger::Signal || now_seen != before;
            // The fingerprint is taken before reading, so a change during the read is seen next time.
            let loaded = changed.then(|| s.load());
            (now_seen, loaded)
        });
        let Ok((now_seen, loaded)) = look.await else {
            continue;
        };
        seen = now_seen;
        if let Some(result) = loaded {
            apply(&app, &source, trigger, result);
        }
    }
}

/// Puts good keys in force, or reports bad ones and keeps the keys in force.
fn apply(app: &App, source: &KeySource, trigger: Trigger, result: Result<Loaded, FileError>) {
    let log = &app.obs.log;
    match result {
        Ok(loaded) => {
            source.warn_mismatches(log, &loaded.files);
            let ring = app.keys.keyring.replace(loaded.ring);
            log.info(
                "keys reloaded",
                reload_fields(
                    trigger,
                    &ring,
                    &loaded.files,
                    loaded.published_dev_key,
                    app.clock.unix_now(),
                ),
            );
        }
        Err(e) => log.event(
            "error",
            "keys reload failed; the keys in force stay in force",
            json!({"trigger": trigger.as_str(), "file": e.file.display().to_string(),
                   "field": e.field, "error": e.to_string()}),
        ),
    }
}

/// The fields of the "keys reloaded" line: files and key ids (never a key), and which keys are outside
/// their validity window now.
fn reload_fields(
    trigger: Trigger,
    ring: &Keyring,
    files: &[(PathBuf, RaiFile)],
    published_dev_key: bool,
    now: u64,
) -> Value {
    let files: Vec<String> = files.iter().map(|(f, _)| f.display().to_string()).collect();
    let key_ids: Vec<&str> = ring.key_ids().map(|(kid, _)| kid).collect();
    let not_in_force: Vec<&str> = ring
        .key_ids()
        .filter(|(_, w)| !w.contains(now))
        .map(|(kid, _)| kid)
        .collect();
    json!({"trigger": trigger.as_str(), "files": files, "key_ids": key_ids,
           "not_in_force": not_in_force, "published_dev_key": published_dev_key})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;
    use crate::token::rai::{generate_rai, to_json_pretty};

    fn source(dir: &Path, config: &str, dev: bool) -> KeySource {
        let cfg = parse_config(config, Path::new("config.json")).unwrap();
        KeySource::new(dir, &cfg, dev)
    }

    fn published() -> String {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("default.rai")).unwrap()
    }

    #[test]
    fn the_published_key_needs_dev_loopback_and_no_proxy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("default.rai");
        std::fs::write(&file, published()).unwrap();
        let loopback = r#"{"server": {"host": "127.0.0.1", "port": 8080}}"#;
        let e = source(&file, loopback, false).load().err().unwrap();
        assert_eq!(
            (e.file.as_path(), e.field.as_str()),
            (file.as_path(), "crypto.key")
        );
        assert!(
            e.problem.contains("relayapi gen-rai") && e.problem.contains("--dev"),
            "{e}"
        );
        assert!(
            source(&file, loopback, true)
                .load()
                .unwrap()
                .published_dev_key
        );
        let public = r#"{"server": {"host": "0.0.0.0", "port": 8080}}"#;
        let e = source(&file, public, true).load().err().unwrap();
        assert!(
            e.problem.contains("0.0.0.0") && e.problem.contains("gen-rai"),
            "{e}"
        );
        let proxied = r#"{"server": {"host": "::1", "port": 8080}, "trusted_proxies": ["::1"]}"#;
        let e = source(&file, proxied, true).load().err().unwrap();
        assert!(e.problem.contains("trusted_proxies"), "{e}");

        // As a previous key too, and in a directory.
        let mut r = generate_rai("http", "127.0.0.1", 8080, "t", "fresh", &mut |b| b.fill(3));
        let dev = crate::token::rai::parse_rai(&published(), &file).unwrap();
        r.crypto.previous_keys.push(crate::token::rai::RaiKey {
            key_id: "old".into(),
            key: dev.crypto.key,
            window: Default::default(),
        });
        std::fs::remove_file(&file).unwrap();
        std::fs::write(dir.path().join("t.rai"), to_json_pretty(&r)).unwrap();
        let e = source(dir.path(), loopback, false).load().err().unwrap();
        assert_eq!(e.field, "crypto.previous_keys[0].key");
        assert!(e.file.ends_with("t.rai"));
    }

    #[test]
    fn the_fingerprint_changes_with_content_names_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path(), "{}", false);
        let a = dir.path().join("a.rai");
        std::fs::write(&a, "one").unwrap();
        let first = src.fingerprint();
        assert_eq!(src.fingerprint(), first);
        std::fs::write(&a, "two!").unwrap();
        let second = src.fingerprint();
        assert_ne!(second, first);
        // Same size, replaced by a rename (a new inode).
        let tmp = dir.path().join("a.tmp");
        std::fs::write(&tmp, "two?").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        let third = src.fingerprint();
        assert_ne!(third, second);
        // Files that are not .rai do not count, new .rai files do.
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let with_notes = src.fingerprint();
        std::fs::write(dir.path().join("b.rai"), "x").unwrap();
        assert_ne!(src.fingerprint(), with_notes);
    }
}
