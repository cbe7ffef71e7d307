//! `tls`: the certificate and key paths (resolved against the directory of `config.json`, since the
//! relay's working directory is whatever the service manager chose), the oldest version offered, the
//! handshake and reload timers, and the optional plain-HTTP redirect listener with the name it puts in
//! `Location`. Loading the files is `server/tls.rs`'s job.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::schema;
use crate::config::types::{HttpRedirect, TlsConfig, TlsVersion};
use crate::text::host::public_name;

/// Longest handshake timeout: a client that needs more is not finishing.
const MAX_HANDSHAKE_SECS: u64 = 300;
/// Longest interval between certificate file checks: one day.
const MAX_RELOAD_SECS: u64 = 86_400;

/// Checks `tls` and builds the typed settings; `listen` is the HTTPS listener's address (`server`).
/// Errors are `(field, problem)`.
pub(super) fn tls(
    raw: &schema::TlsConfig,
    listen: SocketAddr,
    config_file: &Path,
) -> Result<TlsConfig, (&'static str, &'static str)> {
    if raw.cert_file.as_os_str().is_empty() {
        return Err((
            "tls.cert_file",
            "expected the path of a PEM certificate chain",
        ));
    }
    if raw.key_file.as_os_str().is_empty() {
        return Err(("tls.key_file", "expected the path of a PEM private key"));
    }
    let min_version = match raw.min_version.as_str() {
        "1.2" => TlsVersion::Tls12,
        "1.3" => TlsVersion::Tls13,
        _ => return Err(("tls.min_version", "expected \"1.2\" or \"1.3\"")),
    };
    if raw.handshake_timeout == 0 || raw.handshake_timeout > MAX_HANDSHAKE_SECS {
        return Err((
            "tls.handshake_timeout",
            "expected a number of seconds from 1 to 300",
        ));
    }
    if raw.reload_interval > MAX_RELOAD_SECS {
        return Err((
            "tls.reload_interval",
            "expected a number of seconds from 0 (off) to 86400",
        ));
    }
    let redirect = match raw.redirect_http_port {
        None => None,
        Some(port) => {
            let host =
                public_name(raw.redirect_host.as_deref(), listen.ip()).map_err(|problem| {
                    let field = if raw.redirect_host.is_some() {
                        "tls.redirect_host"
                    } else {
                        "tls.redirect_host (needed because server.host is a wildcard)"
                    };
                    (field, problem)
                })?;
            // Port 0 asks the OS for a free port (tests), so two zeros do not clash.
            if port != 0 && port == listen.port() {
                return Err((
                    "tls.redirect_http_port",
                    "must differ from server.port, which serves HTTPS; e.g. 80 with server.port 443",
                ));
            }
            Some(HttpRedirect { port, host })
        }
    };
    let dir = config_file.parent().unwrap_or(Path::new(""));
    Ok(TlsConfig {
        cert_file: dir.join(&raw.cert_file),
        key_file: dir.join(&raw.key_file),
        min_version,
        handshake_timeout: Duration::from_secs(raw.handshake_timeout),
        redirect,
        reload_interval: (raw.reload_interval > 0)
            .then(|| Duration::from_secs(raw.reload_interval)),
    })
}
