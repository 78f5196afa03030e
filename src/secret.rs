//! Credentials that must never be printed: a [`Secret`] token and the
//! [`Auth`] that sends it to an https git remote.
//!
//! Shared by [`config`](crate::config) (which reads tokens), [`discover`](crate::discover)
//! (which sends them to the provider APIs), [`sync`](crate::sync) (which
//! sends them to git remotes) and [`restore::push`](crate::restore::push) (which
//! pushes a snapshot to a git remote), so none of these depends on another for them.

/// A secret that never prints: its `Debug` is `Secret(***)` and it has no
/// `Display`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The secret itself (only to put it on the wire).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How to authenticate to an https remote.
#[derive(Debug, Clone)]
pub struct Auth {
    /// User name for HTTP basic auth (ignored by most hosts for tokens).
    pub user: String,
    /// The token.
    pub token: Secret,
    /// Send `Authorization: Bearer <token>` instead of basic auth (Entra ID tokens).
    pub bearer: bool,
}

impl Auth {
    /// The value of the `Authorization` header that carries the token: HTTP
    /// basic auth (`user:token`), or `Bearer <token>`. Only for the wire.
    pub fn header_value(&self) -> String {
        use base64::Engine;
        if self.bearer {
            format!("Bearer {}", self.token.expose())
        } else {
            let cred = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                self.user,
                self.token.expose()
            ));
            format!("Basic {cred}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let a = Auth {
            user: "git".into(),
            token: Secret::new("hunter2-very-secret".into()),
            bearer: false,
        };
        let shown = format!("{a:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Secret(***)"), "{shown}");
    }
}
