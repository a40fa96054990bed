//! Registry authentication for docker-style clients: Basic credentials, the
//! login name forms, token scopes and the `WWW-Authenticate` challenge.

use super::{Action, Basis};
use base64::Engine;
use serde::{Deserialize, Serialize};

/// `Authorization: Basic base64(user:password)`.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Who a docker login names.
#[derive(Debug, PartialEq, Eq)]
pub enum Login<'a> {
    /// SWR long-term or temporary login: `{region}@{access key}`.
    AccessKey { region: &'a str, ak: &'a str },
    /// `user@tenant` with the user's password.
    User { tenant: &'a str, user: &'a str },
    /// `tenant` alone: the account's own user.
    Account { tenant: &'a str },
}

/// Access key ids: 16 to 40 uppercase letters and digits.
pub fn looks_like_ak(s: &str) -> bool {
    (16..=40).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

pub fn parse_login(username: &str) -> Login<'_> {
    match username.rsplit_once('@') {
        Some((region, ak)) if looks_like_ak(ak) => Login::AccessKey { region, ak },
        Some((user, tenant)) => Login::User { tenant, user },
        None => Login::Account { tenant: username },
    }
}

/// SWR's long-term login password: hex HMAC-SHA256 of the AK keyed by the SK.
pub fn long_term_password(ak: &str, sk: &str) -> String {
    super::signing::hmac_hex(sk.as_bytes(), ak.as_bytes())
}

/// One `scope` of a token request: `repository:<name>:<actions>` or
/// `registry:catalog:*`.
///
/// In a token, each entry also says what its actions rest on (`basis`,
/// Berth's addition to Docker's claim): the registry checks it again on
/// every use, so a token never outlives the facts it was decided on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
    /// Absent in a request's scope, and in tokens of earlier versions
    /// (checked as [`Basis::Own`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<Basis>,
}

/// Parses one `scope` of a token request (Docker's token scope grammar:
/// `type:name:actions`). `repository` scopes must name a valid repository
/// (OCI name grammar, lower case, no encoding or wildcards); `registry`
/// has only `catalog`.
pub fn parse_scope(scope: &str) -> Option<Access> {
    // Names never contain ':', but a registry host in the name could.
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let valid = match kind {
        "repository" => crate::name::is_valid_name(name),
        "registry" => name == "catalog",
        _ => false,
    };
    if !valid {
        return None;
    }
    Some(Access {
        kind: kind.into(),
        name: name.into(),
        actions: actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect(),
        basis: None,
    })
}

/// The Berth action a docker token action stands for.
pub fn action(docker: &str) -> Option<Action> {
    match docker {
        "pull" => Some(Action::Pull),
        "push" => Some(Action::Push),
        "delete" => Some(Action::Delete),
        _ => None,
    }
}

/// The docker actions asked for, with `*` meaning all of them.
pub fn requested(actions: &[String]) -> Vec<&'static str> {
    let all = ["pull", "push", "delete"];
    if actions.iter().any(|a| a == "*") {
        return all.to_vec();
    }
    all.into_iter()
        .filter(|a| actions.iter().any(|x| x == a))
        .collect()
}

/// Claims of a registry token (the host adds `iat`, `exp`, `jti`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryClaims {
    /// `registry` for /v2/ access tokens, `login` for temporary login keys.
    pub kind: String,
    pub tenant: String,
    pub sub: String,
    /// The user's id (`User::id`): a user deleted and re-created under the
    /// same name is another user, whom the token does not name. Empty in
    /// anonymous tokens.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default)]
    pub access: Vec<Access>,
    /// For a temporary login key: the key id of its login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak: Option<String>,
    /// For a temporary login key: the access key that asked for it; the
    /// login is refused once that key is disabled or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl RegistryClaims {
    /// What the token's grant of docker `action` on repository `name`
    /// rests on, if it grants it; the caller must check that it
    /// [`Basis::holds`] before acting.
    pub fn allows(&self, name: &str, action: &str) -> Option<Basis> {
        self.access
            .iter()
            .find(|a| {
                a.kind == "repository" && a.name == name && a.actions.iter().any(|x| x == action)
            })
            .map(|a| a.basis.unwrap_or(Basis::Own))
    }
}

/// The scope a challenge asks for when a request needs docker `action`
/// on repository `name`. As Distribution does, a push asks for pull too
/// (clients keep one token per repository and need both), and a mount
/// (`from`, when a valid other repository) asks for pull on its source, so
/// a client fetching exactly the challenged scopes can mount.
pub fn challenge_scope(name: &str, action: &str, from: Option<&str>) -> String {
    let from = from.filter(|f| *f != name && crate::name::is_valid_name(f));
    match (action, from) {
        ("push", Some(from)) => format!("repository:{name}:pull,push repository:{from}:pull"),
        ("push", None) => format!("repository:{name}:pull,push"),
        _ => format!("repository:{name}:{action}"),
    }
}

/// A token's access entries for one requested scope: the granted actions
/// grouped by what they rest on (usually one entry), or one entry with no
/// actions when nothing was granted (Docker's convention: ungranted
/// actions are left out, not refused).
pub fn grant_entries(asked: &Access, granted: &[(&str, Basis)]) -> Vec<Access> {
    let mut bases: Vec<Basis> = Vec::new();
    for (_, b) in granted {
        if !bases.contains(b) {
            bases.push(*b);
        }
    }
    if bases.is_empty() {
        return vec![Access {
            actions: Vec::new(),
            basis: None,
            ..asked.clone()
        }];
    }
    bases
        .into_iter()
        .map(|basis| Access {
            actions: granted
                .iter()
                .filter(|(_, b)| *b == basis)
                .map(|(a, _)| a.to_string())
                .collect(),
            basis: Some(basis),
            ..asked.clone()
        })
        .collect()
}

/// The `WWW-Authenticate` challenge for a `/v2/` request lacking access.
pub fn challenge(realm: &str, service: &str, scope: Option<&str>) -> String {
    match scope {
        Some(s) => format!(r#"Bearer realm="{realm}",service="{service}",scope="{s}""#),
        None => format!(r#"Bearer realm="{realm}",service="{service}""#),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_round_trip() {
        let h = format!("Basic {}", basic("alice@acme", "pa:ss"));
        assert_eq!(parse_basic(&h), Some(("alice@acme".into(), "pa:ss".into())));
        assert_eq!(parse_basic("Basic !!"), None);
        assert_eq!(parse_basic("Bearer x"), None);
    }

    #[test]
    fn login_forms() {
        assert_eq!(
            parse_login("cn-north-4@ABCDEFGHIJKLMNOP1234"),
            Login::AccessKey {
                region: "cn-north-4",
                ak: "ABCDEFGHIJKLMNOP1234"
            }
        );
        assert_eq!(
            parse_login("alice@acme"),
            Login::User {
                tenant: "acme",
                user: "alice"
            }
        );
        assert_eq!(parse_login("acme"), Login::Account { tenant: "acme" });
    }

    #[test]
    fn scopes() {
        assert_eq!(
            parse_scope("repository:team/app:pull,push"),
            Some(Access {
                kind: "repository".into(),
                name: "team/app".into(),
                actions: vec!["pull".into(), "push".into()],
                basis: None,
            })
        );
        assert_eq!(parse_scope("registry:catalog:*").unwrap().name, "catalog");
        assert_eq!(parse_scope("bogus"), None);
        assert_eq!(parse_scope("user:x:pull"), None);
        // Only names a repository can have.
        for bad in ["ACME/app", "acme%2Fapp", "*", "../..", "a//b", "team/*"] {
            assert_eq!(
                parse_scope(&format!("repository:{bad}:pull")),
                None,
                "{bad}"
            );
        }
        assert_eq!(parse_scope("registry:everything:*"), None);
        assert_eq!(requested(&["*".into()]), ["pull", "push", "delete"]);
        assert_eq!(requested(&["push".into(), "x".into()]), ["push"]);
    }

    #[test]
    fn challenges_and_grants() {
        assert_eq!(challenge_scope("a/b", "pull", None), "repository:a/b:pull");
        assert_eq!(
            challenge_scope("a/b", "push", Some("c/d")),
            "repository:a/b:pull,push repository:c/d:pull"
        );
        assert_eq!(
            challenge_scope("a/b", "push", Some("BAD")),
            "repository:a/b:pull,push"
        );
        let asked = parse_scope("repository:a/b:pull,push,delete").unwrap();
        let mixed = grant_entries(&asked, &[("pull", Basis::Public), ("push", Basis::Own)]);
        assert_eq!(mixed.len(), 2);
        assert_eq!(
            (mixed[0].actions.clone(), mixed[0].basis),
            (vec!["pull".to_string()], Some(Basis::Public))
        );
        assert_eq!(
            (mixed[1].actions.clone(), mixed[1].basis),
            (vec!["push".to_string()], Some(Basis::Own))
        );
        let none = grant_entries(&asked, &[]);
        assert!(none.len() == 1 && none[0].actions.is_empty() && none[0].basis.is_none());
    }

    #[test]
    fn long_term_password_is_hmac_of_ak() {
        // printf AK | openssl dgst -sha256 -hmac SK
        assert_eq!(
            long_term_password("AK", "SK"),
            super::super::signing::hmac_hex(b"SK", b"AK")
        );
        assert_eq!(long_term_password("AK", "SK").len(), 64);
    }
}
